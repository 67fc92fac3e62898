"""Local emulators of the Vast.ai, RunPod (REST v2 + GraphQL) and TensorDock v2 APIs, over an
EmulatedMarket.

They speak the request and response shapes the real adapters
(``subconscious.market.vast.VastProvider``, ``subconscious.market.runpod.RunPodProvider`` and
``subconscious.market.tensordock.TensorDockProvider``) rely on, as recorded in
``tests/fixtures/{vast,runpod,tensordock}``, so those adapters run unchanged end to end on one
machine: point them at ``serve_vast(...).url`` / ``serve_runpod(...).url`` and
``serve_runpod(...).rest_url`` / ``serve_tensordock(...).url`` (RunPod also needs its proxy URL
template pointed at the pod's port: ``http://{ip}:{public_port}``).

Each rented machine is a real placeholder automatic1111 (``infra.local.renderer``) launched
through :meth:`EmulatedMarket.launch`, with the credential the adapter sent (Vast: the
``COMMANDLINE_ARGS`` env entry; RunPod: the ``--api-auth`` of REST's ``args`` or GraphQL's
``dockerArgs``, ``$VAR`` expanded from the pod's ``env``; TensorDock: the env file written by
``cloud_init``), so the renderer enforces it. The credential is parsed and handed to the market
only: it is never stored here, returned by any read or list, or logged.

Offers:

- Vast: the market's offers whose ``provider_name`` is ``"Vast.ai"`` (all of them if the market
  has none: a market built from custom offers). ``dph_total`` is the market's exact price
  (a JSON number written from the Decimal string, so ``0.309`` stays ``0.309``), GPU only:
  the real ``dph_total`` also prices the disk; here the disk is free. Ask ids are integers as
  Vast's are, mapped to market offer ids. As on Vast, each ask is one machine: while an
  instance rented from it lives, it leaves the search and renting it again answers 404
  ``no_such_ask``. Interruptible rentals: an ask in a spot pool (a market built with a
  :class:`~infra.local.spot.SpotMarket`) carries ``min_bid`` while its pool has capacity; a
  ``price`` at or above it rents the instance interruptible at that price, a lower one (or
  one while the pool has none) answers 400 ``invalid_price``. A preempted instance reads
  ``actual_status: "stopped"`` and ``cur_state``/``intended_status``/``next_state``
  ``"stopped"`` (Vast pauses an outbid instance and keeps its disk) until it is destroyed.
  Every row shows ``direct_port_count``, ``cuda_max_good`` and (free) ``inet_*_cost``.
  ``serve_vast`` returns a :class:`VastEmulatorServer`, whose knobs list cheaper hosts
  without a direct port (rented, they never map a ``HostPort``) and make rentals fail to
  start (``"created"`` with an "OCI runtime create failed" ``status_msg``).
- RunPod: REST v2 under ``/v2`` and GraphQL at ``/graphql``, one server, one store of pods, in
  the shapes of runpod/docs ``api-reference-v2/openapi.json`` (``tests/fixtures/runpod``). One
  GPU type per GPU model of the market's RunPod rows (``RunPod Community Cloud`` → ``COMMUNITY``,
  ``RunPod Secure Cloud`` → ``SECURE``; ids ``"NVIDIA <gpu>"``). ``GET /v2/catalog/gpus``:
  ``price.community``/``price.secure`` from those rows (0 and ``community: false`` where a cloud
  has none); with ``include=AVAILABILITY`` (which needs ``product``, as RunPod's does)
  ``availability`` ``HIGH`` in the asked ``cloud`` (SECURE by default) for one GPU on a host
  running ``minCudaVersion``, else ``NONE``. Every host runs CUDA :data:`RUNPOD_CUDA`; a higher
  floor finds none. ``POST /v2/pods`` checks the body as the schema does (an unknown field, a
  missing ``name``/``image``, a bad ``gpu.minCudaVersion``: 422 with ``errors``), places the pod on
  the cheapest offer of ``gpu.id`` in ``cloud`` and answers 201 with the pod; none answers 400
  with RunPod's out-of-stock ``detail``. ``GET /v2/pods``, ``GET``/``DELETE /v2/pods/{id}`` (204;
  404 once gone). A pod reads STARTING with ``runtime`` null while its server starts, RUNNING with
  ``runtime.ports`` (private 7860 → public the renderer's port, ip its host) once it listens,
  EXITED (``cost`` 0) once its process ended (a crash, a preemption); a terminated pod is gone.
  ``env`` echoes only the ``WORKER_*`` settings (RunPod echoes all of it; the credential is never
  kept here). REST wants the Bearer header and refuses with 401 ``{"title": "Unauthorized",
  ...}``; errors are RFC 9457 problems. GraphQL serves what the adapter still sends it:
  ``gpuTypes`` (``lowestPrice`` the lowest of the cloud its ``secureCloud`` input names, over both
  without one; a type with no row there answers ``stockStatus: "None"``, a sold-out market null;
  ``minimumBidPrice`` the lowest ``min_bid`` of those offers whose spot pool has capacity now) and
  ``podRentInterruptable`` (rents at ``bidPerGpu``; under the minimum, a GraphQL error, wording
  assumed; no stock, RunPod's ``SUPPLY_CONSTRAINT`` error). Operations are told apart by their root
  field (no GraphQL parser). A wrong key answers HTTP 200 with an ``UNAUTHENTICATED`` GraphQL
  error, as recorded in ``tests/fixtures/runpod/error_unauthorized.json``. Stock is unlimited
  (many hosts per type). ``serve_runpod`` returns a :class:`RunPodEmulatorServer`, whose
  ``never_start()`` makes new pods read RUNNING for ever without a runtime or a port (the pod a
  host with too old a driver leaves behind, runpod/runpodctl#253).
- TensorDock: the market's offers whose ``provider_name`` is ``"TensorDock"`` if any; the price
  file has none, so otherwise one host per GPU model is built from the other providers' rows
  (not Vast's), cheapest row per model, at most :data:`TENSORDOCK_MAX_HOSTS` hosts, with the GPU
  priced at the source price times :data:`TENSORDOCK_MARKUP` (exact Decimal arithmetic), plus
  TensorDock-style per-vCPU/RAM/storage pricing (:data:`TENSORDOCK_PRICING`), which the adapter
  adds for its bundle. The machine is launched against the source market offer. The
  instance listing answers in each documented shape in turn (``data.instances``,
  ``data.attributes.instances``, bare ``data`` list) and ``portForwards`` as a list or a map,
  in turn; the credential is read from the env file the ``cloud_init`` writes (``write_files``
  or a ``runcmd`` line that decodes base64 into it).

Knobs for tests: ``sell_out()`` takes every offer of one provider off its market;
``fail_launches()`` keeps them listed but refuses every launch with the provider's server
error (Vast: HTTP 500 ``{"success": false, "error": "server_error"}``; RunPod: HTTP 500 with a
problem body over REST, the recorded ``INTERNAL_SERVER_ERROR`` GraphQL error for an interruptible
pod; TensorDock: HTTP 500 ``{"status": 500, "error"}``).

What is simplified: the requested TensorDock ``external_port`` is not honoured (the renderer's
own port is reported in ``portForwards`` instead); Vast search filters are applied only to the
fields an offer row carries; rate limits are not emulated.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.local.http_base import MethodHandler
from infra.local.market import (
    BidTooLow,
    EmulatedMarket,
    MachineNotFound,
    NoSpotCapacity,
    OfferNotFound,
    SpotRefused,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
A1111_PORT = 7860
VAST_PROVIDER_NAME = "Vast.ai"
TENSORDOCK_PROVIDER_NAME = "TensorDock"
VAST_FIRST_ASK_ID = 31_000_001
VAST_FIRST_INSTANCE_ID = 41_000_001
VAST_PAGE_LIMIT = 25
MAX_BID = 1000.0  # $/h per GPU: anything above is a typo, and it keeps inf and nan out
# TensorDock hosts built from other providers' rows: their GPU price times this markup.
TENSORDOCK_MARKUP = Decimal("1.10")
TENSORDOCK_MAX_HOSTS = 8
TENSORDOCK_GPUS_PER_HOST = 4
TENSORDOCK_MIN_STORAGE_GB = 100
# Per-part prices as TensorDock lists them (the fixture's figures).
TENSORDOCK_PRICING = {
    "per_vcpu_hr": Decimal("0.003"),
    "per_gb_ram_hr": Decimal("0.002"),
    "per_gb_storage_hr": Decimal("0.00005"),
}
TENSORDOCK_PORTS = (20010, 20011, 20012)
# The instance listing's shapes, answered in turn: the instance-management docs' and the
# getting-started page's, and the bare list a community client reads too.
TENSORDOCK_LISTING_SHAPES = ("data.instances", "data.attributes.instances", "data")
_RUNCMD_WRITE = re.compile(r"printf %s ([A-Za-z0-9+/=]+) \| base64 -d >")

Route = tuple[int, object]


class _BadRequest(ValueError):
    """The request is not what the route needs."""


def _number(value: object) -> float:
    """A Decimal-string price as a JSON number. float(Decimal(s)) is the nearest double, whose
    repr (what json writes) is the shortest string that round-trips: "0.309" stays 0.309 (any
    price of up to 15 significant digits comes back exact through ``Decimal(str(x))``)."""
    return float(Decimal(str(value)))


def api_auth_from_args(command_line: str) -> str:
    """The ``--api-auth`` value of an automatic1111 command line ("" when absent)."""
    try:
        words = shlex.split(command_line)
    except ValueError as error:
        raise _BadRequest("COMMANDLINE_ARGS is not a valid shell word list") from error
    for index, word in enumerate(words):
        if word == "--api-auth" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--api-auth="):
            return word.partition("=")[2]
    return ""


def _is_json_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _bearer_ok(header: str | None, expected: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


# --------------------------------------------------------------------------- HTTP plumbing


class _Backend:
    """One provider's API: routes a request to (status, JSON payload)."""

    # Every machine of this provider taken: its search lists nothing and renting answers as
    # the provider does for an offer that is gone. A knob for the demo and tests.
    sold_out = False
    # Every launch refused with the provider's own server-error answer while its offers stay
    # listed (a provider whose launches all fail: its API is broken, or our account is).
    launches_fail = False

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        raise NotImplementedError

    def unauthorised(self, raw: bytes) -> Route:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Route:
        raise NotImplementedError

    def bad_request(self, message: str) -> Route:
        return HTTPStatus.BAD_REQUEST, {"error": message}


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: _Backend) -> None:
        self.backend = backend
        super().__init__(address, _Handler)


class EmulatorServer:
    """A provider emulator answering on 127.0.0.1 from a daemon thread."""

    def __init__(
        self,
        httpd: _EmulatorHTTPServer,
        thread: threading.Thread,
        url: str,
        market_machine_id: Callable[[str], str],
    ) -> None:
        self._httpd = httpd
        self._thread = thread
        self.url = url
        self._market_machine_id = market_machine_id

    def market_machine_id(self, provider_machine_id: str) -> str:
        """The EmulatedMarket machine behind a provider instance id (raises MachineNotFound)."""
        return self._market_machine_id(provider_machine_id)

    def sell_out(self, sold_out: bool = True) -> None:
        """Take every offer off this provider's market (or put them back)."""
        self._httpd.backend.sold_out = sold_out

    def fail_launches(self, failing: bool = True) -> None:
        """Refuse every launch with this provider's server error (or stop refusing); its
        offers stay listed, its machines already running are not touched."""
        self._httpd.backend.launches_fail = failing

    def close(self) -> None:
        """Stop answering; the machines keep running (shut the market down for that)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _serve(
    backend: _Backend, name: str, path_prefix: str, market_machine_id: Callable[[str], str]
) -> EmulatorServer:
    httpd = _EmulatorHTTPServer(("127.0.0.1", 0), backend)
    port = int(httpd.server_address[1])
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"{name}-emulator:{port}",
        daemon=True,
    )
    thread.start()
    return EmulatorServer(httpd, thread, f"http://127.0.0.1:{port}{path_prefix}", market_machine_id)


class _Handler(MethodHandler):
    server_version = "provider-emulator"

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        server = self.server
        assert isinstance(server, _EmulatorHTTPServer)
        backend = server.backend
        status: int
        payload: object
        try:
            raw = self._read_body()
            if not backend.authorised(self.headers, query):
                status, payload = backend.unauthorised(raw)
            else:
                status, payload = backend.route(method, path, query, raw)
        except _BadRequest as error:
            status, payload = backend.bad_request(str(error))
        except Exception:
            # Only the class reaches the log: a request body may hold a credential.
            log.exception("emulator %s %s failed", method, path)
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        self._reply_json(status, payload)
        log.debug(
            "emulator %s %s %d %.1fms", method, path, status, (time.monotonic() - started) * 1000
        )

    def _read_body(self) -> bytes:
        body = self._body_or_none(MAX_BODY_BYTES)
        if body is None:
            raise _BadRequest("missing, invalid or oversized Content-Length")
        return body

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged by _handle without query strings or bodies.
        return


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _BadRequest("the body is not valid JSON") from error
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


# --------------------------------------------------------------------------- Vast.ai

VAST_DIRECT_PORTS = 12  # open ports on each host's router (a search row's direct_port_count)
VAST_CUDA_MAX_GOOD = 12.8  # the newest CUDA each host's driver runs (driver 570)
# Hosts without a direct port (VastEmulatorServer.list_portless_hosts): one beside each ask,
# its id this much higher, its price this much lower, so a search by price lists it first.
VAST_PORTLESS_ASK_OFFSET = 1_000_000
VAST_PORTLESS_PRICE_FACTOR = Decimal("0.9")
# What a rental reads while containers fail (VastEmulatorServer.fail_containers): an image built
# for a newer CUDA than the host's driver, in the Docker daemon's words (see
# tests/fixtures/vast/README.md for the status_msg shapes Vast's own CLI and dstack handle).
VAST_OCI_FAILURE = (
    "Error response from daemon: failed to create task for container: failed to create shim "
    "task: OCI runtime create failed: runc create failed: unable to start container process: "
    "error during container init: error running hook #0: error running hook: exit status 1, "
    "stdout: , stderr: Auto-detected mode as 'legacy'\nnvidia-container-cli: requirement "
    "error: unsatisfied condition: cuda>=12.6, please update your driver to a newer version, "
    "or use an earlier cuda container: unknown"
)


class _VastBackend(_Backend):
    def __init__(self, market: EmulatedMarket, api_key: str) -> None:
        if not api_key:
            raise ValueError("the Vast emulator needs an API key to check")
        self._market = market
        self._api_key = api_key
        self._lock = threading.Lock()
        offers = market.offers()
        chosen = [o for o in offers if o.get("provider_name") == VAST_PROVIDER_NAME] or offers
        self._asks: dict[int, dict[str, object]] = {
            VAST_FIRST_ASK_ID + index: offer for index, offer in enumerate(chosen)
        }
        self._next_instance = VAST_FIRST_INSTANCE_ID
        # instance id -> (market machine id, ask id, image)
        self._instances: dict[int, tuple[str, int, str]] = {}
        # Knobs (VastEmulatorServer): a cheaper host without a direct port listed beside every
        # ask; rentals whose container fails to start ("created" + an OCI error, for ever).
        self.portless_hosts = False
        self.containers_fail = False
        self._portless: set[int] = set()  # instances on a host without a direct port
        self._failed: set[int] = set()  # instances whose container never started

    def market_machine_id(self, instance_id: str) -> str:
        with self._lock:
            found = self._instances.get(int(instance_id)) if _is_id(instance_id) else None
        if found is None:
            raise MachineNotFound(instance_id)
        return found[0]

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        if _bearer_ok(headers.get("Authorization"), self._api_key):
            return True
        keys = query.get("api_key") or []  # Vast also takes the key in the query string
        return bool(keys) and hmac.compare_digest(keys[-1].encode(), self._api_key.encode())

    def unauthorised(self, raw: bytes) -> Route:
        return HTTPStatus.UNAUTHORIZED, {
            "success": False,
            "error": "auth_error",
            "msg": "Invalid user key",
        }

    def bad_request(self, message: str) -> Route:
        return HTTPStatus.BAD_REQUEST, {"success": False, "error": "invalid_args", "msg": message}

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Route:
        if path == "/api/v0/bundles" and method == "POST":
            return self._search(raw)
        if (m := re.fullmatch(r"/api/v0/asks/([^/]+)", path)) and method == "PUT":
            return self._rent(m.group(1), raw)
        if path == "/api/v0/instances" and method == "GET":
            rows = self._rows()
            return HTTPStatus.OK, {"instances_found": len(rows), "instances": rows}
        if path == "/api/v1/instances" and method == "GET":
            return self._list_v1(query)
        if m := re.fullmatch(r"/api/v0/instances/([^/]+)", path):
            if method == "GET":
                return HTTPStatus.OK, {"instances": self._row_by_id(m.group(1))}
            if method == "DELETE":
                return self._destroy(m.group(1))
        return HTTPStatus.NOT_FOUND, {"detail": "Not Found"}

    # ---- offers

    def _offer_row(
        self, ask_id: int, offer: dict[str, object], portless: bool = False
    ) -> dict[str, Any]:
        price = _number(offer["usd_per_hour"])
        if portless:  # the trap: the cheapest row, on a host whose router opens no port
            price = _number(Decimal(str(offer["usd_per_hour"])) * VAST_PORTLESS_PRICE_FACTOR)
        return {
            "id": ask_id,
            "ask_contract_id": ask_id,
            "bundle_id": ask_id,
            "machine_id": ask_id - VAST_FIRST_ASK_ID + 1,
            "host_id": ask_id - VAST_FIRST_ASK_ID + 1,
            "gpu_name": offer["gpu"],
            "num_gpus": int(str(offer.get("gpu_count", 1))),
            "gpu_ram": int(str(offer["gpu_memory_gb"])) * 1024,
            "dph_base": price,
            "dph_total": price,
            "is_bid": False,
            **(
                {"min_bid": _number(offer["min_bid"])}
                if self._biddable(offer) and not portless
                else {}
            ),
            "reliability": _number(offer.get("reliability", "0.99")),
            "geolocation": str(offer.get("location") or ""),
            "verification": "verified",
            "verified": True,
            "rentable": True,
            "rented": False,
            "external": False,
            "static_ip": True,
            "direct_port_count": 0 if portless else VAST_DIRECT_PORTS,
            "cuda_max_good": VAST_CUDA_MAX_GOOD,
            # free here, as the disk is; the real ones are $/GB, billed outside dph_total
            "inet_down_cost": 0.0,
            "inet_up_cost": 0.0,
        }

    def _ask(self, ask_id: int) -> tuple[dict[str, object], bool] | None:
        """The offer behind an ask id, and whether it is a host without a direct port."""
        if (offer := self._asks.get(ask_id)) is not None:
            return offer, False
        twin = self._asks.get(ask_id - VAST_PORTLESS_ASK_OFFSET)
        return (twin, True) if twin is not None and self.portless_hosts else None

    def _biddable(self, offer: dict[str, object]) -> bool:
        return "min_bid" in offer and self._market.spot_available(str(offer["offer_id"]))

    def _search(self, raw: bytes) -> Route:
        try:
            query = _json_object(raw)
        except _BadRequest:
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_args",
                "msg": "Invalid query: must be dict of conditions",
            }
        with self._lock:
            live = {
                ask
                for market_id, ask, _ in self._instances.values()
                if self._market_status(market_id) != "terminated"
            }
            rows = [
                self._offer_row(ask_id, offer)
                for ask_id, offer in self._asks.items()
                if ask_id not in live and not self.sold_out
            ]
            if self.portless_hosts and not self.sold_out:
                rows += [
                    self._offer_row(ask_id + VAST_PORTLESS_ASK_OFFSET, offer, portless=True)
                    for ask_id, offer in self._asks.items()
                    if ask_id + VAST_PORTLESS_ASK_OFFSET not in live
                ]
        rows = [row for row in rows if _matches(row, query)]
        order = query.get("order") or [["dph_total", "asc"]]
        if not isinstance(order, list) or not all(
            isinstance(o, list) and len(o) == 2 and all(isinstance(x, str) for x in o)
            for o in order
        ):
            raise _BadRequest("Invalid query: order must be a list of [column, direction]")
        for column, direction in reversed(order):
            rows.sort(key=lambda r: _sort_key(r.get(column)), reverse=direction == "desc")
        limit = query.get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            rows = rows[:limit]
        return HTTPStatus.OK, {"offers": rows}

    # ---- instances

    def _rent(self, ask: str, raw: bytes) -> Route:
        body = _json_object(raw)
        ask_id = int(ask) if _is_id(ask) else -1
        gone = {
            "success": False,
            "error": "invalid_args",
            "msg": f"error 404/3603: no_such_ask Instance type by id {ask} is not available.",
            "ask_id": ask_id,
        }
        price = body.get("price")
        if price is not None and not (_is_json_number(price) and 0 < price < MAX_BID):
            raise _BadRequest("price must be a number above 0")
        bid = None if price is None else Decimal(str(price))
        env = body.get("env") or {}
        if not isinstance(env, dict):
            raise _BadRequest("env must be an object")
        api_auth = api_auth_from_args(str(env.get("COMMANDLINE_ARGS") or ""))
        label = body.get("label")
        label = label if isinstance(label, str) else ""
        if self.launches_fail:
            # Wording assumed; the shape is Vast's {"success": false, "error", "msg"}.
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "success": False,
                "error": "server_error",
                "msg": "error 500: the instance could not be created; try again later",
                "ask_id": ask_id,
            }
        with self._lock:
            found = self._ask(ask_id)
            rented = any(
                a == ask_id and self._market_status(market_id) != "terminated"
                for market_id, a, _ in self._instances.values()
            )
            if found is None or rented or self.sold_out:
                return HTTPStatus.NOT_FOUND, gone
            offer, portless = found
            try:
                machine = self._market.launch(
                    str(offer["offer_id"]), label, api_auth, bid_usd_per_hour=bid
                )
            except OfferNotFound:
                return HTTPStatus.NOT_FOUND, gone
            except SpotRefused:
                # Under the ask's minimum, or no capacity for bids now (the row shows no
                # min_bid then): Vast's refusal of a bid it will not take.
                return HTTPStatus.BAD_REQUEST, {
                    "success": False,
                    "error": "invalid_price",
                    "msg": "error 400/3468: invalid_price bid is below the current minimum",
                    "ask_id": ask_id,
                }
            instance_id = self._next_instance
            self._next_instance += 1
            self._instances[instance_id] = (
                str(machine["machine_id"]),
                ask_id,
                str(body.get("image") or ""),
            )
            if portless:
                self._portless.add(instance_id)
            if self.containers_fail:
                # Rented and billing (its market machine runs), but never serves.
                self._failed.add(instance_id)
        return HTTPStatus.OK, {"success": True, "new_contract": instance_id}

    def _market_status(self, market_id: str) -> str:
        try:
            return str(self._market.machine(market_id)["status"])
        except MachineNotFound:
            return "terminated"

    def _row(self, instance_id: int) -> dict[str, Any] | None:
        """The instance as Vast reads it, or None once it is destroyed."""
        market_id, ask_id, image = self._instances[instance_id]
        try:
            machine = self._market.machine(market_id)
        except MachineNotFound:
            return None
        status = str(machine["status"])
        if status == "terminated":
            return None
        actual = {"running": "running", "exited": "exited"}.get(status, "loading")
        failed = instance_id in self._failed
        if failed:
            actual = "created"  # the container was never created: it stays so, billed
        if machine["preempted"]:
            actual = "stopped"  # an outbid interruptible instance is paused, its disk kept
        port = str(machine["url"]).rpartition(":")[2]
        running = actual == "running"
        on = running or actual in ("loading", "created")
        # Outbid: cur_state == intended_status == next_state == "stopped" (as dstack reads it).
        intended = "stopped" if machine["preempted"] else "running"
        mapped = running and instance_id not in self._portless  # no open port: no HostPort
        return {
            "id": instance_id,
            "machine_id": ask_id - VAST_FIRST_ASK_ID + 1,
            "bundle_id": ask_id,
            "label": machine["label"] or None,
            "actual_status": actual,
            "intended_status": intended,
            "cur_state": "running" if on else "stopped",
            "next_state": "running" if on else "stopped",
            "status_msg": VAST_OCI_FAILURE if failed else "",
            "image_uuid": image,
            "image_runtype": "args",
            "public_ipaddr": "127.0.0.1" if running else None,
            "ports": (
                {f"{A1111_PORT}/tcp": [{"HostIp": "0.0.0.0", "HostPort": port}]}
                if mapped
                else ({} if running else None)
            ),
            "gpu_name": machine["gpu"],
            "num_gpus": 1,
            "dph_total": _number(machine["usd_per_hour"]),
            "is_bid": bool(machine["interruptible"]),
            "start_date": _epoch(str(machine["launched_at"])),
        }

    def _rows(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted(self._instances)
            rows = [self._row(instance_id) for instance_id in ids]
        return [row for row in rows if row is not None]

    def _row_by_id(self, instance: str) -> dict[str, Any] | None:
        if not (_is_id(instance)):
            return None
        with self._lock:
            if int(instance) not in self._instances:
                return None
            return self._row(int(instance))

    def _list_v1(self, query: dict[str, list[str]]) -> Route:
        limit = VAST_PAGE_LIMIT
        if raw_limit := query.get("limit"):
            try:
                limit = max(1, min(VAST_PAGE_LIMIT, int(raw_limit[-1])))
            except ValueError as error:
                raise _BadRequest("limit must be an integer") from error
        after = 0
        if token := query.get("after_token"):
            try:
                after = int(json.loads(base64.urlsafe_b64decode(token[-1].encode()))["id"])
            except (binascii.Error, ValueError, KeyError, TypeError) as error:
                raise _BadRequest("after_token is not a token this API gave") from error
        rows = self._rows()
        page = [row for row in rows if int(row["id"]) > after][:limit]
        more = bool(page) and int(page[-1]["id"]) < int(rows[-1]["id"])
        next_token = (
            base64.urlsafe_b64encode(json.dumps({"id": page[-1]["id"]}).encode()).decode()
            if more
            else None
        )
        counts: dict[str, int] = {}
        for row in rows:
            if row["label"]:
                counts[str(row["label"])] = counts.get(str(row["label"]), 0) + 1
        return HTTPStatus.OK, {
            "instances": page,
            "next_token": next_token,
            "total_instances": len(rows),
            "label_counts": counts,
        }

    def _destroy(self, instance: str) -> Route:
        missing = {
            "success": False,
            "error": "no_such_instance",
            "msg": f"Instance {instance} not found.",
        }
        if not (_is_id(instance)):
            return HTTPStatus.NOT_FOUND, missing
        with self._lock:
            found = self._instances.get(int(instance))
        if found is None or self._market_status(found[0]) == "terminated":
            return HTTPStatus.NOT_FOUND, missing
        try:
            self._market.terminate(found[0])
        except MachineNotFound:
            return HTTPStatus.NOT_FOUND, missing
        return HTTPStatus.OK, {"success": True}


class VastEmulatorServer(EmulatorServer):
    """The Vast.ai emulator, with its own fault knobs beside the shared ones."""

    def __init__(self, served: EmulatorServer, backend: _VastBackend) -> None:
        super().__init__(served._httpd, served._thread, served.url, served._market_machine_id)
        self._vast = backend

    def list_portless_hosts(self, listed: bool = True) -> None:
        """List beside every ask a cheaper host whose router opens no port (``direct_port_count``
        0): rented, it runs but ``-p 7860:7860`` never gets a public ``HostPort``. A search
        asking ``direct_port_count >= 1`` does not list them, as on Vast."""
        self._vast.portless_hosts = listed

    def fail_containers(self, failing: bool = True) -> None:
        """Rentals made while failing never start: they read ``actual_status: "created"`` with
        an "OCI runtime create failed" ``status_msg`` until destroyed (their market machine
        runs, so they bill)."""
        self._vast.containers_fail = failing


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "neq": lambda a, b: bool(a != b),
    "gt": lambda a, b: bool(a > b),
    "gte": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "lte": lambda a, b: bool(a <= b),
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def _matches(row: dict[str, Any], query: dict[str, Any]) -> bool:
    """Vast's search conditions (``{"field": {"op": value}}``) on the fields a row carries."""
    for field, conditions in query.items():
        if not isinstance(conditions, dict) or field not in row:
            continue
        for op, wanted in conditions.items():
            check = _OPS.get(op)
            try:
                if check is not None and not check(row[field], wanted):
                    return False
            except TypeError as error:
                raise _BadRequest(f"cannot compare {field} with {wanted!r}") from error
    return True


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --------------------------------------------------------------------------- TensorDock


def _v0_name(gpu: str, memory_gb: int) -> str:
    """A TensorDock-style GPU model name ending in ``-<memory>gb`` (what the adapter reads)."""
    model = re.sub(r"\d+\s*GB", "", gpu, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]", "", model.lower()) or "gpu"
    return f"{slug}-pcie-{memory_gb}gb"


class _TensorDockBackend(_Backend):
    def __init__(self, market: EmulatedMarket, api_token: str) -> None:
        if not api_token:
            raise ValueError("the TensorDock emulator needs an API token to check")
        self._market = market
        self._api_token = api_token
        self._lock = threading.Lock()
        # host id -> (market offer, v0Name, GPU price per hour)
        self._hosts: dict[str, tuple[dict[str, object], str, Decimal]] = {}
        for offer, price in _tensordock_sources(market.offers()):
            host_id = str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"tensordock-emulator/{offer['offer_id']}")
            )
            name = _v0_name(str(offer["gpu"]), int(str(offer["gpu_memory_gb"])))
            self._hosts[host_id] = (offer, name, price)
        # instance id -> (market machine id, host id, hourly rate)
        self._instances: dict[str, tuple[str, str, Decimal]] = {}
        # Reads answer in each documented shape in turn (listings: TENSORDOCK_LISTING_SHAPES;
        # an instance's portForwards: a list, then a map), so a longer run meets all of them.
        self._reads = 0
        self._detail_reads = 0

    def market_machine_id(self, instance_id: str) -> str:
        with self._lock:
            found = self._instances.get(instance_id)
        if found is None:
            raise MachineNotFound(instance_id)
        return found[0]

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        return _bearer_ok(headers.get("Authorization"), self._api_token)

    def unauthorised(self, raw: bytes) -> Route:
        return HTTPStatus.UNAUTHORIZED, {"status": 401, "error": "Unauthorized: invalid API token"}

    def bad_request(self, message: str) -> Route:
        return HTTPStatus.BAD_REQUEST, {"status": 400, "error": message}

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Route:
        if path == "/api/v2/hostnodes" and method == "GET":
            return HTTPStatus.OK, {"data": {"hostnodes": self._hostnodes()}}
        if path == "/api/v2/instances" and method == "POST":
            return self._create(raw)
        if path == "/api/v2/instances" and method == "GET":
            return HTTPStatus.OK, self._listing_body()
        if m := re.fullmatch(r"/api/v2/instances/([^/]+)", path):
            if method == "GET":
                return self._read(m.group(1))
            if method == "DELETE":
                return self._delete(m.group(1))
        return HTTPStatus.NOT_FOUND, {"status": 404, "error": "Route not found"}

    # ---- hosts

    def _used_on(self, host_id: str) -> int:
        return sum(
            1
            for market_id, host, _ in self._instances.values()
            if host == host_id and self._market_status(market_id) not in ("terminated", "exited")
        )

    def _hostnodes(self) -> list[dict[str, Any]]:
        if self.sold_out:
            return []
        with self._lock:
            used = {host_id: self._used_on(host_id) for host_id in self._hosts}
        hosts = []
        for host_id, (offer, name, price) in self._hosts.items():
            reliability = Decimal(str(offer.get("reliability", "0.99"))) * 100
            hosts.append(
                {
                    "id": host_id,
                    "location_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"loc/{host_id}")),
                    "engine": "emulated",
                    "uptime_percentage": _number(str(reliability)),
                    "available_resources": {
                        "gpus": [
                            {
                                "v0Name": name,
                                "availableCount": max(0, TENSORDOCK_GPUS_PER_HOST - used[host_id]),
                                "price_per_hr": _number(str(price)),
                            }
                        ],
                        "vcpu_count": 32,
                        "ram_gb": 128,
                        "storage_gb": 2000,
                        "available_ports": list(TENSORDOCK_PORTS),
                        "has_public_ip_available": False,
                    },
                    "pricing": {k: _number(str(v)) for k, v in TENSORDOCK_PRICING.items()},
                    "location": {
                        "city": "",
                        "stateprovince": "",
                        "country": str(offer.get("location") or ""),
                    },
                }
            )
        return hosts

    # ---- instances

    def _create(self, raw: bytes) -> Route:
        data = _json_object(raw).get("data")
        attributes = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attributes, dict):
            raise _BadRequest("data.attributes is required")
        name = attributes.get("name")
        if not isinstance(name, str) or not name:
            raise _BadRequest("name is required")
        if not attributes.get("ssh_key"):
            raise _BadRequest("An SSH key is required")
        resources = attributes.get("resources")
        if not isinstance(resources, dict):
            raise _BadRequest("resources are required")
        try:
            vcpus = int(resources.get("vcpu_count") or 0)
            ram_gb = int(resources.get("ram_gb") or 0)
            storage_gb = int(resources.get("storage_gb") or 0)
        except (TypeError, ValueError) as error:
            raise _BadRequest("resources must be integers") from error
        if storage_gb < TENSORDOCK_MIN_STORAGE_GB:
            raise _BadRequest(f"storage_gb must be at least {TENSORDOCK_MIN_STORAGE_GB}")
        gpus = resources.get("gpus")
        if not isinstance(gpus, dict) or len(gpus) != 1:
            raise _BadRequest("exactly one GPU model is required")
        ((model, wanted),) = gpus.items()
        count = wanted.get("count") if isinstance(wanted, dict) else None
        if count != 1:
            raise _BadRequest("this emulator rents one GPU per instance")
        api_auth = _api_auth_from_cloud_init(attributes.get("cloud_init"))
        host_id = str(attributes.get("hostnode_id") or "")
        if self.launches_fail:
            # TensorDock v2's error shape (tests/fixtures/tensordock/error_status_in_body.json),
            # wording assumed.
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "status": 500,
                "error": "Internal server error while creating the virtual machine",
            }
        with self._lock:
            host = self._hosts.get(host_id)
            if host is None:
                return HTTPStatus.NOT_FOUND, {
                    "errors": [
                        {"status": "404", "title": "Not Found", "detail": "Hostnode not found"}
                    ]
                }
            offer, gpu_name, gpu_price = host
            if model != gpu_name or self._used_on(host_id) >= TENSORDOCK_GPUS_PER_HOST:
                return HTTPStatus.OK, {
                    "status": 400,
                    "error": "Not enough GPUs available on this hostnode",
                }
            rate = (
                gpu_price
                + vcpus * TENSORDOCK_PRICING["per_vcpu_hr"]
                + ram_gb * TENSORDOCK_PRICING["per_gb_ram_hr"]
                + storage_gb * TENSORDOCK_PRICING["per_gb_storage_hr"]
            )
            machine = self._market.launch(str(offer["offer_id"]), name, api_auth)
            instance_id = str(uuid.uuid4())
            self._instances[instance_id] = (str(machine["machine_id"]), host_id, rate)
            status = self._status_word(str(machine["status"]))
        return HTTPStatus.OK, {
            "data": {"type": "virtualmachine", "id": instance_id, "name": name, "status": status}
        }

    def _market_status(self, market_id: str) -> str:
        try:
            return str(self._market.machine(market_id)["status"])
        except MachineNotFound:
            return "terminated"

    @staticmethod
    def _status_word(market_status: str) -> str:
        return {"running": "running", "exited": "stopped", "terminated": "deleted"}.get(
            market_status, "starting"
        )

    def _details(self, instance_id: str, forwards_as_map: bool = False) -> dict[str, Any] | None:
        found = self._instances.get(instance_id)
        if found is None:
            return None
        market_id, host_id, rate = found
        try:
            machine = self._market.machine(market_id)
        except MachineNotFound:
            return None
        if machine["status"] == "terminated":
            return None
        status = self._status_word(str(machine["status"]))
        running = status == "running"
        port = int(str(machine["url"]).rpartition(":")[2])
        return {
            "type": "virtualmachine",
            "id": instance_id,
            "name": machine["label"],
            "status": status,
            "ipAddress": "127.0.0.1" if running else None,
            # a list, or a map of internal to external port (both are documented)
            "portForwards": (
                ({str(A1111_PORT): port} if running else {})
                if forwards_as_map
                else ([{"internal_port": A1111_PORT, "external_port": port}] if running else [])
            ),
            "resources": {
                "vcpu_count": 4,
                "ram_gb": 16,
                "storage_gb": TENSORDOCK_MIN_STORAGE_GB,
                "gpus": {self._hosts[host_id][1]: {"count": 1}},
            },
            "rateHourly": _number(str(rate)),
        }

    def _read(self, instance_id: str) -> Route:
        with self._lock:
            details = self._details(instance_id, forwards_as_map=self._detail_reads % 2 == 1)
            self._detail_reads += 1
        if details is None:
            return HTTPStatus.NOT_FOUND, {"status": 404, "error": "Instance not found"}
        return HTTPStatus.OK, details

    def _listing(self) -> list[dict[str, Any]]:
        with self._lock:
            found = [self._details(instance_id) for instance_id in self._instances]
        listed = []
        for details in found:
            if details is None:
                continue
            attributes = {k: v for k, v in details.items() if k not in ("type", "id")}
            listed.append({"type": "VM", "id": details["id"], "attributes": attributes})
        return listed

    def _listing_body(self) -> dict[str, Any]:
        """The listing in the next of TensorDock's shapes (tests/fixtures/tensordock/README.md)."""
        listed = self._listing()
        with self._lock:
            shape = TENSORDOCK_LISTING_SHAPES[self._reads % len(TENSORDOCK_LISTING_SHAPES)]
            self._reads += 1
        if shape == "data.attributes.instances":
            return {
                "data": {"type": "list", "id": "instances", "attributes": {"instances": listed}}
            }
        if shape == "data":
            return {"data": listed}
        return {"data": {"instances": listed}}

    def _delete(self, instance_id: str) -> Route:
        missing: Route = HTTPStatus.NOT_FOUND, {"status": 404, "error": "Instance not found"}
        with self._lock:
            found = self._instances.get(instance_id)
        if found is None or self._market_status(found[0]) == "terminated":
            return missing
        try:
            self._market.terminate(found[0])
        except MachineNotFound:
            return missing
        return HTTPStatus.OK, {
            "data": {"type": "success", "attributes": {"message": "Instance deleted successfully"}}
        }


def _tensordock_sources(offers: list[dict[str, object]]) -> list[tuple[dict[str, object], Decimal]]:
    """The market offers TensorDock hosts stand for, each with its host's GPU price."""
    own = [o for o in offers if o.get("provider_name") == TENSORDOCK_PROVIDER_NAME]
    if own:
        return [(o, Decimal(str(o["usd_per_hour"]))) for o in own]
    others = [o for o in offers if o.get("provider_name") != VAST_PROVIDER_NAME] or offers
    cheapest: dict[str, dict[str, object]] = {}
    for offer in sorted(others, key=lambda o: Decimal(str(o["usd_per_hour"]))):
        cheapest.setdefault(str(offer["gpu"]), offer)
    chosen = list(cheapest.values())[:TENSORDOCK_MAX_HOSTS]
    return [(o, Decimal(str(o["usd_per_hour"])) * TENSORDOCK_MARKUP) for o in chosen]


def _files_from_cloud_init(cloud_init: object) -> list[str]:
    """The contents of the files a ``cloud_init`` writes: ``write_files`` entries, and
    ``runcmd`` lines that decode base64 into a file (``printf %s B64 | base64 -d > PATH``)."""
    if not isinstance(cloud_init, dict):
        return []
    contents = []
    files = cloud_init.get("write_files")
    for entry in files if isinstance(files, list) else []:
        content = entry.get("content") if isinstance(entry, dict) else None
        if isinstance(content, str):
            contents.append(content)
    commands = cloud_init.get("runcmd")
    for command in commands if isinstance(commands, list) else []:
        for encoded in _RUNCMD_WRITE.findall(command if isinstance(command, str) else ""):
            try:
                contents.append(base64.b64decode(encoded, validate=True).decode())
            except (binascii.Error, UnicodeDecodeError):
                continue
    return contents


def _api_auth_from_cloud_init(cloud_init: object) -> str:
    """The ``--api-auth`` value in the ``COMMANDLINE_ARGS=`` line of a file cloud-init writes."""
    for content in _files_from_cloud_init(cloud_init):
        for line in content.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().removeprefix("export ") == "COMMANDLINE_ARGS":
                return api_auth_from_args(value)
    return ""


# --------------------------------------------------------------------------- RunPod


RUNPOD_CLOUDS = {
    "RunPod Community Cloud": "COMMUNITY",
    "RunPod Secure Cloud": "SECURE",
    "RunPod": "COMMUNITY",  # the price file's "cheapest of community/secure" rows
}
# What the adapter still sends over GraphQL: interruptible pods and their minimum bids.
RUNPOD_QUERIES = frozenset({"gpuTypes"})
RUNPOD_MUTATIONS = frozenset({"podRentInterruptable"})
RUNPOD_OUT_OF_STOCK = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
RUNPOD_INTERNAL_ERROR = "Something went wrong. Please try again later or contact support."
RUNPOD_CUDA = "12.8"  # what every emulated host's driver runs
RUNPOD_DATA_CENTER = {"id": "EMU-LOCAL-1", "name": "Emulated local 1"}
# REST v2's CreatePodRequest (additionalProperties false) and its CreateGpuConfig.
_RUNPOD_CREATE_FIELDS = frozenset(
    {
        "name", "image", "cloud", "gpu", "cpu", "dataCenterIds", "globalNetworking", "mounts",
        "startJupyter", "startSsh", "templateId", "args", "disk", "env", "ports", "registry",
    }
)  # fmt: skip
_RUNPOD_GPU_FIELDS = frozenset({"id", "count", "allowedCudaVersions", "minCudaVersion"})
_RUNPOD_ACTIONS = {
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
}
# The root field of a query or mutation: the first name inside the operation's braces.
_ROOT_FIELD = re.compile(r"^\s*(?:(query|mutation)\b)?[^{]*\{\s*([_A-Za-z]\w*)")
_SHELL_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_CUDA_VERSION = re.compile(r"\d+\.\d+")
_CUDA_FILTER = re.compile(r"\d+(\.\d+)?")


class _GraphQLError(Exception):
    """One GraphQL error, answered as ``{"errors": [...], "data": ...}``."""

    def __init__(
        self, message: str, *, code: str | None = None, status: int = HTTPStatus.OK
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class _Problem(Exception):
    """One REST v2 error, answered as RFC 9457 ``{"title", "status", "detail", "errors"?}``."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def route(self) -> Route:
        body: dict[str, object] = {
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return self.status, body


def _invalid(*errors: str) -> _Problem:
    return _Problem(HTTPStatus.UNPROCESSABLE_ENTITY, "Request validation failed.", list(errors))


def _graphql_error(
    message: str, field: str | None, code: str | None = None, data: object = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if field is not None:
        error["path"] = [field]
    if code is not None:
        error["extensions"] = {"code": code}
    return {"errors": [error], "data": data}


def _root_field(raw: bytes) -> tuple[str, str, dict[str, Any]]:
    """(operation type, root field, variables) of a GraphQL request body."""
    body = _json_object(raw)
    query = body.get("query")
    if not isinstance(query, str):
        raise _GraphQLError("Must provide query string.", status=HTTPStatus.BAD_REQUEST)
    found = _ROOT_FIELD.match(query)
    if found is None:
        raise _GraphQLError(
            "Syntax Error: Unexpected <EOF>.",
            code="GRAPHQL_PARSE_FAILED",
            status=HTTPStatus.BAD_REQUEST,
        )
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        raise _GraphQLError("Variables must be an object.", status=HTTPStatus.BAD_REQUEST)
    return found.group(1) or "query", found.group(2), variables


def _pod_input(variables: dict[str, Any], type_name: str) -> dict[str, Any]:
    value = variables.get("input")
    if not isinstance(value, dict):
        raise _GraphQLError(
            f'Variable "$input" of required type "{type_name}!" was not provided.',
            code="BAD_USER_INPUT",
            status=HTTPStatus.BAD_REQUEST,
        )
    return value


def _lowest_price_input(variables: dict[str, Any]) -> dict[str, Any]:
    """The GpuLowestPriceInput among a gpuTypes query's variables (the one with a gpuCount),
    whatever the client named it; empty when the query spells its input inline."""
    found = (v for v in variables.values() if isinstance(v, dict) and "gpuCount" in v)
    return next(found, {})


def _cuda(version: str) -> tuple[int, ...]:
    """A CUDA version compared numerically (12.11 above 12.2), as RunPod compares them."""
    return tuple(int(part) for part in version.split("."))


def _pod_env(spec: dict[str, Any]) -> dict[str, str]:
    """A pod's environment, from GraphQL's ``[{key, value}]`` or REST's ``{key: value}``."""
    env = spec.get("env") or {}
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    return {
        entry["key"]: str(entry.get("value") or "")
        for entry in env
        if isinstance(entry, dict) and isinstance(entry.get("key"), str)
    }


def _api_auth_from_pod(command: object, env: dict[str, str]) -> str:
    """The ``--api-auth`` value a pod's automatic1111 gets: from its start command (GraphQL's
    ``dockerArgs``, REST's ``args``; ``bash -c '...'`` unwrapped, ``$VAR`` expanded from the
    pod's env), else from a ``COMMANDLINE_ARGS`` env entry, as automatic1111 reads it."""
    command_line = command if isinstance(command, str) else ""
    try:
        words = shlex.split(command_line)
    except ValueError as error:
        raise _BadRequest("the start command is not a valid shell word list") from error
    if len(words) >= 3 and words[0] in ("bash", "sh") and words[1] == "-c":
        command_line = words[2]
    api_auth = api_auth_from_args(command_line) or api_auth_from_args(
        env.get("COMMANDLINE_ARGS", "")
    )
    return _SHELL_VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), api_auth)


@dataclass
class _RunPodPod:
    """What the emulator keeps of a pod: never its credential (``env`` holds only the plain
    ``WORKER_*`` settings)."""

    market_id: str
    type_id: str
    cloud: str
    image: str
    args: str
    disk: int
    ports: list[str]
    env: dict[str, str]
    never_starts: bool = False


class _RunPodBackend(_Backend):
    # Pods rented while set run (and bill) but never get a runtime or a port mapping: the pod
    # a host whose driver is too old for the image leaves behind (runpod/runpodctl#253).
    never_start = False

    def __init__(self, market: EmulatedMarket, api_key: str) -> None:
        if not api_key:
            raise ValueError("the RunPod emulator needs an API key to check")
        self._market = market
        self._api_key = api_key
        self._lock = threading.Lock()
        # GPU type id -> cloud type -> market offer
        self._types: dict[str, dict[str, dict[str, object]]] = {}
        for offer in market.offers():
            cloud = RUNPOD_CLOUDS.get(str(offer.get("provider_name")))
            if cloud is not None:
                clouds = self._types.setdefault(f"NVIDIA {offer['gpu']}", {})
                clouds.setdefault(cloud, offer)
        self._pods: dict[str, _RunPodPod] = {}
        # Which API the request in this thread speaks (set by _RunPodHandler), and its auth
        # header: REST and GraphQL answer a refusal each in its own shape.
        self._request = threading.local()

    def market_machine_id(self, pod_id: str) -> str:
        with self._lock:
            found = self._pods.get(pod_id)
        if found is None:
            raise MachineNotFound(pod_id)
        return found.market_id

    # ---- dialect and auth

    def begin(self, path: str) -> None:
        self._request.rest = path == "/v2" or path.startswith("/v2/")

    def _rest_request(self) -> bool:
        return bool(getattr(self._request, "rest", False))

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        header = headers.get("Authorization")
        self._request.has_header = bool(header)
        if _bearer_ok(header, self._api_key):
            return True
        if self._rest_request():  # REST v2 takes the header only
            return False
        keys = query.get("api_key") or []  # GraphQL's older documented form
        return bool(keys) and hmac.compare_digest(keys[-1].encode(), self._api_key.encode())

    def unauthorised(self, raw: bytes) -> Route:
        if self._rest_request():
            missing = not getattr(self._request, "has_header", False)
            detail = "missing bearer token" if missing else "invalid bearer token"
            return _Problem(HTTPStatus.UNAUTHORIZED, detail).route()
        try:
            field: str | None = _root_field(raw)[1]
        except (_BadRequest, _GraphQLError):
            field = None
        return HTTPStatus.OK, _graphql_error("Unauthorized", field, "UNAUTHENTICATED")

    def bad_request(self, message: str) -> Route:
        if self._rest_request():
            return _Problem(HTTPStatus.BAD_REQUEST, message).route()
        return HTTPStatus.BAD_REQUEST, _graphql_error(message, None, "BAD_REQUEST")

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Route:
        if self._rest_request():
            try:
                return self._rest(method, path.split("/")[2:], query, raw)
            except _Problem as problem:
                return problem.route()
        if path != "/graphql" or method != "POST":
            return HTTPStatus.NOT_FOUND, _graphql_error(f"Cannot {method} {path}", None)
        field: str | None = None
        try:
            kind, field, variables = _root_field(raw)
            known = RUNPOD_MUTATIONS if kind == "mutation" else RUNPOD_QUERIES
            if field not in known:
                type_name = "Mutation" if kind == "mutation" else "Query"
                raise _GraphQLError(
                    f'Cannot query field "{field}" on type "{type_name}".',
                    code="GRAPHQL_VALIDATION_FAILED",
                    status=HTTPStatus.BAD_REQUEST,
                )
            return HTTPStatus.OK, {"data": {field: self._resolve(field, variables)}}
        except _GraphQLError as error:
            data = {field: None} if field in RUNPOD_MUTATIONS else None
            return error.status, _graphql_error(error.message, field, error.code, data)

    # ---- REST v2

    def _rest(
        self, method: str, parts: list[str], query: dict[str, list[str]], raw: bytes
    ) -> Route:
        if parts == ["pods"] and method == "GET":
            with self._lock:
                pods = [self._rest_pod(pod_id) for pod_id in self._pods]
            return HTTPStatus.OK, {"pods": [p for p in pods if p is not None]}
        if parts == ["pods"] and method == "POST":
            return HTTPStatus.CREATED, self._create(_json_object(raw))
        if len(parts) == 2 and parts[0] == "pods" and method in ("GET", "DELETE"):
            with self._lock:
                pod = self._rest_pod(parts[1])
            if pod is None:
                raise _Problem(HTTPStatus.NOT_FOUND, "pod not found")
            if method == "GET":
                return HTTPStatus.OK, pod
            self._market.terminate(self._pods[parts[1]].market_id)
            return HTTPStatus.NO_CONTENT, None
        if parts == ["catalog", "gpus"] and method == "GET":
            return HTTPStatus.OK, {"gpus": self._catalog(query)}
        if parts in (["pods"], ["catalog", "gpus"]) or (len(parts) == 2 and parts[0] == "pods"):
            raise _Problem(
                HTTPStatus.METHOD_NOT_ALLOWED, "The requested method is not allowed for this path."
            )
        raise _Problem(HTTPStatus.NOT_FOUND, "resource not found")

    def _catalog(self, query: dict[str, list[str]]) -> list[dict[str, object]]:
        """``GET /v2/catalog/gpus``: list prices per cloud; with ``include=AVAILABILITY``
        (which needs ``product``) the stock in ``cloud`` (SECURE by default) for ``count``
        GPUs on a host running ``minCudaVersion``."""

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        include, product = one("include"), one("product")
        if include is not None and include != "AVAILABILITY":
            raise _invalid(f"include: value must be one of 'AVAILABILITY', got {include!r}")
        if (include is None) != (product is None):
            raise _Problem(HTTPStatus.BAD_REQUEST, "product is required with include=AVAILABILITY")
        scoped = [name for name in ("cloud", "count", "minCudaVersion") if one(name) is not None]
        if include is None and scoped:
            raise _Problem(HTTPStatus.BAD_REQUEST, f"{scoped[0]} is valid only with include")
        cloud = one("cloud") or "SECURE"
        if cloud not in ("SECURE", "COMMUNITY"):
            raise _invalid(f"cloud: value must be one of 'SECURE', 'COMMUNITY', got {cloud!r}")
        count_text = one("count") or "1"
        if not _is_id(count_text) or int(count_text) < 1:
            raise _invalid("count: must be an integer of at least 1")
        floor = one("minCudaVersion") or "0"
        if not _CUDA_FILTER.fullmatch(floor):
            raise _invalid("minCudaVersion: does not match pattern")
        runs = _cuda(RUNPOD_CUDA)[: len(_cuda(floor))] >= _cuda(floor)
        gpus: list[dict[str, object]] = []
        for type_id, clouds in self._types.items():
            offer = next(iter(clouds.values()))
            community, secure = clouds.get("COMMUNITY"), clouds.get("SECURE")
            gpu: dict[str, object] = {
                "id": type_id,
                "name": offer["gpu"],
                "pool": None,
                "manufacturer": "NVIDIA",
                "memory": int(str(offer["gpu_memory_gb"])),
                "secure": secure is not None,
                "community": community is not None,
                "price": {
                    "secure": _number(secure["usd_per_hour"]) if secure else 0,
                    "community": _number(community["usd_per_hour"]) if community else 0,
                },
                "maxCount": {"secure": int(secure is not None), "community": int(bool(community))},
            }
            if include is not None:
                free = (
                    cloud in clouds and int(count_text) == 1 and runs and not self.sold_out
                )  # many hosts per type, one GPU each
                gpu["availability"] = "HIGH" if free else "NONE"
                if free:
                    gpu["dataCenters"] = [{**RUNPOD_DATA_CENTER, "availability": "HIGH"}]
                gpu["cudaVersions"] = [{"version": RUNPOD_CUDA, "available": free}]
            gpus.append(gpu)
        return gpus

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/pods``: the body checked as the schema does (a 422 names each field),
        then placed on the cheapest offer of the GPU type in ``cloud`` (a 400 when none)."""
        unknown = sorted(set(body) - _RUNPOD_CREATE_FIELDS)
        if unknown:
            names = ", ".join(f"'{name}'" for name in unknown)
            raise _invalid(f"$: additional properties {names} not allowed")
        for name in ("name", "image"):
            if name not in body:
                raise _invalid(f"$: missing property '{name}'")
            if not isinstance(body[name], str) or not body[name]:
                raise _invalid(f"$.{name}: expected a non-empty string")
        gpu = body.get("gpu")
        if not isinstance(gpu, dict) or not isinstance(gpu.get("id"), str):
            raise _Problem(HTTPStatus.BAD_REQUEST, "exactly one of gpu or cpu must be set")
        extra = sorted(set(gpu) - _RUNPOD_GPU_FIELDS)
        if extra:
            raise _invalid(f"$.gpu: additional properties '{extra[0]}' not allowed")
        floor = gpu.get("minCudaVersion")
        if floor is not None and not (isinstance(floor, str) and _CUDA_VERSION.fullmatch(floor)):
            raise _invalid("$.gpu.minCudaVersion: does not match pattern '^\\d+\\.\\d+$'")
        if floor is not None and gpu.get("allowedCudaVersions"):
            raise _Problem(
                HTTPStatus.BAD_REQUEST,
                "allowedCudaVersions and minCudaVersion are mutually exclusive",
            )
        if gpu.get("count", 1) != 1:
            raise _Problem(HTTPStatus.BAD_REQUEST, "This emulator rents one GPU per pod.")
        cloud = body.get("cloud", "SECURE")
        if cloud not in ("SECURE", "COMMUNITY"):
            raise _invalid("$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
        env = body.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise _invalid("$.env: expected an object of strings")
        ports = body.get("ports", [])
        if not isinstance(ports, list) or not all(isinstance(p, str) for p in ports):
            raise _invalid("$.ports: expected an array of strings")
        args, disk = body.get("args", ""), body.get("disk", 50)
        if not isinstance(args, str):
            raise _invalid("$.args: expected a string")
        if not _is_json_number(disk) or isinstance(disk, float) or disk < 1:
            raise _invalid("$.disk: expected an integer of at least 1")
        offer = self._place(gpu["id"], (cloud,), floor, interruptible=False)
        pod = _RunPodPod(
            market_id="",
            type_id=gpu["id"],
            cloud=cloud,
            image=body["image"],
            args=args,
            disk=disk,
            ports=ports,
            env=_worker_env(env),
        )
        if self.launches_fail:  # a 5xx, which the docs call transient
            raise _Problem(HTTPStatus.INTERNAL_SERVER_ERROR, RUNPOD_INTERNAL_ERROR)
        api_auth = _api_auth_from_pod(args, env)
        try:
            pod_id = self._launch(offer, pod, body["name"], api_auth, bid=None)
        except OfferNotFound as error:
            raise _Problem(HTTPStatus.BAD_REQUEST, RUNPOD_OUT_OF_STOCK) from error
        with self._lock:
            created = self._rest_pod(pod_id)
        assert created is not None
        return created

    def _place(
        self, type_id: str, clouds: tuple[str, ...], floor: object, *, interruptible: bool
    ) -> dict[str, object]:
        """The cheapest offer of the type in one of ``clouds`` a host can take now."""
        candidates = [o for c, o in self._types.get(type_id, {}).items() if c in clouds]
        if interruptible:
            candidates = [o for o in candidates if self._market.spot_available(str(o["offer_id"]))]
        if isinstance(floor, str) and _cuda(floor) > _cuda(RUNPOD_CUDA):
            candidates = []  # no host's driver runs that CUDA
        if not candidates or self.sold_out:
            if interruptible:
                raise _GraphQLError(RUNPOD_OUT_OF_STOCK, code="SUPPLY_CONSTRAINT")
            raise _Problem(HTTPStatus.BAD_REQUEST, RUNPOD_OUT_OF_STOCK)
        return min(candidates, key=lambda o: Decimal(str(o["usd_per_hour"])))

    def _launch(
        self,
        offer: dict[str, object],
        pod: _RunPodPod,
        label: str,
        api_auth: str,
        bid: Decimal | None,
    ) -> str:
        """Start the pod's machine on the market; its id. The credential goes to the market
        alone."""
        with self._lock:
            machine = self._market.launch(
                str(offer["offer_id"]), label, api_auth, bid_usd_per_hour=bid
            )
            pod.market_id = str(machine["machine_id"])
            pod.never_starts = self.never_start
            pod_id = secrets.token_hex(7)
            self._pods[pod_id] = pod
        return pod_id

    def _rest_pod(self, pod_id: str) -> dict[str, Any] | None:
        """The pod as REST v2 reads it, or None once it is terminated (it is deleted)."""
        pod = self._pods.get(pod_id)
        if pod is None:
            return None
        try:
            machine = self._market.machine(pod.market_id)
        except MachineNotFound:
            return None
        state = str(machine["status"])
        if state == "terminated":
            return None
        serving = state == "running" and not pod.never_starts
        # A pod that never starts reads RUNNING at once and for ever, with no runtime; one whose
        # container ended on its own (a crash, a reclaimed spot host) is EXITED and costs 0.
        if state == "exited":
            status = "EXITED"
        elif serving or pod.never_starts:
            status = "RUNNING"
        else:
            status = "STARTING"
        url = urlsplit(str(machine["url"]))
        runtime = (
            {
                "uptime": max(0, int(time.time() - _epoch(str(machine["launched_at"])))),
                "ports": [
                    {"private": A1111_PORT, "public": url.port, "type": "http", "ip": url.hostname}
                ],
            }
            if serving
            else None
        )
        return {
            "id": pod_id,
            "name": machine["label"],
            "image": pod.image,
            "args": pod.args,
            "disk": pod.disk,
            "ports": pod.ports,
            # RunPod echoes the whole env; the credential is never kept here to echo
            "env": dict(pod.env),
            "registry": None,
            "status": status,
            "actions": _RUNPOD_ACTIONS[status],
            "mounts": {},
            "gpu": {"id": pod.type_id, "count": 1},
            "cloud": pod.cloud,
            "dataCenterId": RUNPOD_DATA_CENTER["id"],
            "cudaVersion": RUNPOD_CUDA,
            "ssh": {"proxy": None, "direct": None},
            "template": None,
            "cost": 0 if status == "EXITED" else _number(machine["usd_per_hour"]),
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": runtime,
            "createdAt": machine["launched_at"],
            "startedAt": machine["launched_at"] if serving else None,
        }

    # ---- GraphQL: minimum bids and interruptible pods

    def _resolve(self, field: str, variables: dict[str, Any]) -> object:
        if field == "gpuTypes":
            return self._gpu_types(_lowest_price_input(variables))
        return self._rent_interruptable(_pod_input(variables, "PodRentInterruptableInput"))

    def _gpu_types(self, lowest_input: dict[str, Any]) -> list[dict[str, Any]]:
        # lowestPrice of one cloud when asked with secureCloud (as RunPod scopes it), else the
        # lowest over both; a type with no host in the asked cloud answers stockStatus "None"
        secure_cloud = lowest_input.get("secureCloud")
        wanted = None
        if isinstance(secure_cloud, bool):
            wanted = "SECURE" if secure_cloud else "COMMUNITY"
        floor = lowest_input.get("minCudaVersion")
        runs = not (
            isinstance(floor, str)
            and _CUDA_VERSION.fullmatch(floor)
            and _cuda(floor) > _cuda(RUNPOD_CUDA)
        )
        answer = []
        for type_id, clouds in self._types.items():
            offer = next(iter(clouds.values()))
            scoped = [o for c, o in clouds.items() if wanted in (None, c)]
            prices = [Decimal(str(o["usd_per_hour"])) for o in scoped]
            bids = [
                Decimal(str(o["min_bid"]))
                for o in scoped
                if "min_bid" in o and self._market.spot_available(str(o["offer_id"]))
            ]
            community, secure = clouds.get("COMMUNITY"), clouds.get("SECURE")
            in_stock = not self.sold_out and bool(scoped) and runs
            answer.append(
                {
                    "id": type_id,
                    "displayName": offer["gpu"],
                    "memoryInGb": int(str(offer["gpu_memory_gb"])),
                    "communityPrice": _number(community["usd_per_hour"]) if community else None,
                    "securePrice": _number(secure["usd_per_hour"]) if secure else None,
                    "lowestPrice": {
                        "minimumBidPrice": _number(min(bids)) if bids and in_stock else None,
                        "uninterruptablePrice": _number(min(prices)) if in_stock else None,
                        "stockStatus": "High" if in_stock else (None if self.sold_out else "None"),
                    },
                }
            )
        return answer

    def _rent_interruptable(self, spec: dict[str, Any]) -> dict[str, Any]:
        for name in ("gpuTypeId", "imageName"):
            if not isinstance(spec.get(name), str) or not spec[name]:
                raise _GraphQLError(
                    f'Field "{name}" of required type "String!" was not provided.',
                    code="BAD_USER_INPUT",
                    status=HTTPStatus.BAD_REQUEST,
                )
        if spec.get("gpuCount", 1) != 1:
            raise _GraphQLError("This emulator rents one GPU per pod.")
        cloud = spec.get("cloudType", "ALL")
        if cloud not in ("COMMUNITY", "SECURE", "ALL"):
            raise _GraphQLError(
                f'Value "{cloud}" does not exist in "CloudTypeEnum" enum.',
                code="BAD_USER_INPUT",
                status=HTTPStatus.BAD_REQUEST,
            )
        raw_bid = spec.get("bidPerGpu")
        if not (isinstance(raw_bid, int | float) and _is_json_number(raw_bid)) or not (
            0 < raw_bid < MAX_BID
        ):
            raise _GraphQLError(
                'Field "bidPerGpu" of required type "Float!" must be a price above 0.',
                code="BAD_USER_INPUT",
                status=HTTPStatus.BAD_REQUEST,
            )
        bid = Decimal(str(raw_bid))
        env = _pod_env(spec)
        docker_args = spec.get("dockerArgs") if isinstance(spec.get("dockerArgs"), str) else ""
        try:
            api_auth = _api_auth_from_pod(docker_args, env)
        except _BadRequest as error:
            raise _GraphQLError("dockerArgs is not a valid shell word list") from error
        clouds = ("COMMUNITY", "SECURE") if cloud == "ALL" else (cloud,)
        offer = self._place(
            spec["gpuTypeId"], clouds, spec.get("minCudaVersion"), interruptible=True
        )
        if self.launches_fail:  # as recorded: tests/fixtures/runpod/error_other.json
            raise _GraphQLError(RUNPOD_INTERNAL_ERROR, code="INTERNAL_SERVER_ERROR")
        ports = spec.get("ports") if isinstance(spec.get("ports"), str) else ""
        disk = spec.get("containerDiskInGb")
        pod = _RunPodPod(
            market_id="",
            type_id=spec["gpuTypeId"],
            cloud=next(c for c, o in self._types[spec["gpuTypeId"]].items() if o is offer),
            image=spec["imageName"],
            args=str(docker_args),
            disk=disk if isinstance(disk, int) else 50,
            ports=[p for p in str(ports).split(",") if p],
            env=_worker_env(env),
        )
        label = spec.get("name") if isinstance(spec.get("name"), str) else ""
        try:
            pod_id = self._launch(offer, pod, str(label), api_auth, bid=bid)
        except (NoSpotCapacity, OfferNotFound) as error:
            raise _GraphQLError(RUNPOD_OUT_OF_STOCK, code="SUPPLY_CONSTRAINT") from error
        except BidTooLow as error:
            raise _GraphQLError(
                f"Your bid of ${bid}/hr is below the minimum bid of ${error.min_bid}/hr "
                "for this GPU type."
            ) from error
        return {"id": pod_id, "desiredStatus": "RUNNING", "costPerHr": _number(bid)}


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    """The env entries the emulator keeps (and echoes): the lean worker's plain settings."""
    return {k: v for k, v in env.items() if k.startswith("WORKER_")}


class _RunPodHandler(_Handler):
    """Tells the backend which API a request speaks before it is authorised, and answers a
    204 without a body (REST v2's DELETE)."""

    def _handle(self, method: str) -> None:
        server = self.server
        assert isinstance(server, _EmulatorHTTPServer)
        backend = server.backend
        assert isinstance(backend, _RunPodBackend)
        backend.begin(urlsplit(self.path).path.rstrip("/") or "/")
        super()._handle(method)

    def _reply_json(self, status: int, payload: Any) -> None:
        if status == HTTPStatus.NO_CONTENT:
            self.send_response(int(status))
            self.end_headers()
            return
        super()._reply_json(status, payload)


class _RunPodHTTPServer(_EmulatorHTTPServer):
    def __init__(self, address: tuple[str, int], backend: _Backend) -> None:
        self.backend = backend
        ThreadingHTTPServer.__init__(self, address, _RunPodHandler)


class RunPodEmulatorServer(EmulatorServer):
    """RunPod's REST v2 and GraphQL APIs on one port: ``url`` is GraphQL's endpoint
    (``.../graphql``), ``rest_url`` REST's root (``.../v2``)."""

    def __init__(
        self, httpd: _RunPodHTTPServer, thread: threading.Thread, base: str, backend: _RunPodBackend
    ) -> None:
        super().__init__(httpd, thread, f"{base}/graphql", backend.market_machine_id)
        self.rest_url = f"{base}/v2"
        self._runpod = backend

    def never_start(self, on: bool = True) -> None:
        """Pods rented while on read RUNNING at once but never get a runtime or a port mapping
        (their renderer runs and bills, unreachable): a host whose driver is older than the
        image's CUDA ("unsatisfied condition: cuda>=12.6", runpod/runpodctl#253). Pods rented
        before keep starting as usual."""
        self._runpod.never_start = on


# --------------------------------------------------------------------------- entry points


def serve_vast(market: EmulatedMarket, api_key: str) -> VastEmulatorServer:
    """Vast.ai's REST API on 127.0.0.1; ``.url`` ends in ``/api/v0`` (the adapter's base_url),
    and the v1 list beside it answers too."""
    backend = _VastBackend(market, api_key)
    served = _serve(backend, "vast", "/api/v0", backend.market_machine_id)
    return VastEmulatorServer(served, backend)


def serve_tensordock(market: EmulatedMarket, api_token: str) -> EmulatorServer:
    """TensorDock's v2 API on 127.0.0.1; ``.url`` ends in ``/api/v2`` (the adapter's base_url)."""
    backend = _TensorDockBackend(market, api_token)
    return _serve(backend, "tensordock", "/api/v2", backend.market_machine_id)


def serve_runpod(market: EmulatedMarket, api_key: str) -> RunPodEmulatorServer:
    """RunPod's REST v2 and GraphQL APIs on 127.0.0.1, one port: ``.url`` ends in ``/graphql``
    (the adapter's ``url``), ``.rest_url`` in ``/v2`` (its ``rest_url``)."""
    backend = _RunPodBackend(market, api_key)
    httpd = _RunPodHTTPServer(("127.0.0.1", 0), backend)
    port = int(httpd.server_address[1])
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"runpod-emulator:{port}",
        daemon=True,
    )
    thread.start()
    return RunPodEmulatorServer(httpd, thread, f"http://127.0.0.1:{port}", backend)
