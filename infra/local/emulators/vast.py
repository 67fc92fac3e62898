"""A local emulator of Vast.ai's REST API over an EmulatedMarket, for
``subconscious.market.vast.VastProvider`` (shapes as recorded in ``tests/fixtures/vast``).

Offers: the market's offers whose ``provider_name`` is ``"Vast.ai"`` (all of them if the market
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

The credential is the ``--api-auth`` of the ``COMMANDLINE_ARGS`` env entry. ``fail_launches()``
answers every rent with HTTP 500 ``{"success": false, "error": "server_error"}``. Search
filters are applied only to the fields an offer row carries; rate limits are not emulated.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from infra.local.emulated_market import EmulatedMarket, MachineNotFound, OfferNotFound, SpotRefused
from infra.local.emulators.common import (
    A1111_PORT,
    MAX_BID,
    VAST_PROVIDER_NAME,
    Backend,
    BadRequest,
    EmulatorServer,
    Route,
    api_auth_from_args,
    bearer_ok,
    epoch,
    is_id,
    is_json_number,
    json_number,
    json_object,
    market_status,
    serve,
)

VAST_FIRST_ASK_ID = 31_000_001
VAST_FIRST_INSTANCE_ID = 41_000_001
VAST_PAGE_LIMIT = 25
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


class _VastBackend(Backend):
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
            found = self._instances.get(int(instance_id)) if is_id(instance_id) else None
        if found is None:
            raise MachineNotFound(instance_id)
        return found[0]

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        if bearer_ok(headers.get("Authorization"), self._api_key):
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
        price = json_number(offer["usd_per_hour"])
        if portless:  # the trap: the cheapest row, on a host whose router opens no port
            price = json_number(Decimal(str(offer["usd_per_hour"])) * VAST_PORTLESS_PRICE_FACTOR)
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
                {"min_bid": json_number(offer["min_bid"])}
                if self._biddable(offer) and not portless
                else {}
            ),
            "reliability": json_number(offer.get("reliability", "0.99")),
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
            query = json_object(raw)
        except BadRequest:
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_args",
                "msg": "Invalid query: must be dict of conditions",
            }
        with self._lock:
            live = {
                ask
                for market_id, ask, _ in self._instances.values()
                if market_status(self._market, market_id) != "terminated"
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
            raise BadRequest("Invalid query: order must be a list of [column, direction]")
        for column, direction in reversed(order):
            rows.sort(key=lambda r: _sort_key(r.get(column)), reverse=direction == "desc")
        limit = query.get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            rows = rows[:limit]
        return HTTPStatus.OK, {"offers": rows}

    # ---- instances

    def _rent(self, ask: str, raw: bytes) -> Route:
        body = json_object(raw)
        ask_id = int(ask) if is_id(ask) else -1
        gone = {
            "success": False,
            "error": "invalid_args",
            "msg": f"error 404/3603: no_such_ask Instance type by id {ask} is not available.",
            "ask_id": ask_id,
        }
        price = body.get("price")
        if price is not None and not (is_json_number(price) and 0 < price < MAX_BID):
            raise BadRequest("price must be a number above 0")
        bid = None if price is None else Decimal(str(price))
        env = body.get("env") or {}
        if not isinstance(env, dict):
            raise BadRequest("env must be an object")
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
                a == ask_id and market_status(self._market, market_id) != "terminated"
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
            "dph_total": json_number(machine["usd_per_hour"]),
            "is_bid": bool(machine["interruptible"]),
            "start_date": epoch(str(machine["launched_at"])),
        }

    def _rows(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted(self._instances)
            rows = [self._row(instance_id) for instance_id in ids]
        return [row for row in rows if row is not None]

    def _row_by_id(self, instance: str) -> dict[str, Any] | None:
        if not (is_id(instance)):
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
                raise BadRequest("limit must be an integer") from error
        after = 0
        if token := query.get("after_token"):
            try:
                after = int(json.loads(base64.urlsafe_b64decode(token[-1].encode()))["id"])
            except (binascii.Error, ValueError, KeyError, TypeError) as error:
                raise BadRequest("after_token is not a token this API gave") from error
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
        if not (is_id(instance)):
            return HTTPStatus.NOT_FOUND, missing
        with self._lock:
            found = self._instances.get(int(instance))
        if found is None or market_status(self._market, found[0]) == "terminated":
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
                raise BadRequest(f"cannot compare {field} with {wanted!r}") from error
    return True


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def serve_vast(market: EmulatedMarket, api_key: str) -> VastEmulatorServer:
    """Vast.ai's REST API on 127.0.0.1; ``.url`` ends in ``/api/v0`` (the adapter's base_url),
    and the v1 list beside it answers too."""
    backend = _VastBackend(market, api_key)
    served = serve(backend, "vast", "/api/v0", backend.market_machine_id)
    return VastEmulatorServer(served, backend)
