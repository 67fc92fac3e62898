"""Vast.ai, over its REST API (``https://console.vast.ai/api/v0``).

What this relies on, as documented in docs.vast.ai's OpenAPI (vast-ai/docs
``api-reference/openapi.yaml`` and ``api-reference/openapi/yaml/*``) and done by the official
client (vast-ai/vast-cli ``vastai/api/{offers,instances,client}.py``):

- Auth is ``Authorization: Bearer <key>``. The query-string form (``?api_key=``) also works,
  and the official client even sends both; we never do: httpx logs every URL.
- Offers: ``POST /bundles/`` with the raw query object as the body → ``{"offers": [...]}``.
  ``gpu_ram`` is MB in the REST API (the CLI's GB are converted), the reliability field is
  ``reliability`` (the old ``reliability2`` alias is gone from the current client), and
  ``dph_total`` prices the disk given as ``allocated_storage``: we send our disk size so the
  price is what we will pay. Every offer is one machine: renting it twice answers
  ``no_such_ask``.
- Rent: ``PUT /asks/{id}/`` → ``{"success": true, "new_contract": <instance id>}``; refusals
  are ``{"success": false, "error", "msg", "ask_id"}`` with 404 (``no_such_ask``: the offer
  is gone) or 410 (``no_such_ask``: it cannot start now, with ``cancel_unavail``).
  ``env`` is a JSON object whose ``"-p 7860:7860"`` key maps the port to a random public one.
- One instance: ``GET /instances/{id}/`` → ``{"instances": {...}}``, ``{"instances": null}``
  once it is gone. Its address: ``public_ipaddr`` and ``ports["7860/tcp"][0]["HostPort"]``.
- Destroy: ``DELETE /instances/{id}/`` → ``{"success": true}``; 404 ``no_such_instance``.
- The list: ``GET /api/v1/instances/`` in keyset pages of 25 (``next_token`` →
  ``after_token``). The v0 list is deprecated and answers 410 to accounts made after
  2026-06-02; we use it only where no v1 list exists (404: an older API, a local emulator).
- Errors: 401 ``{"success": false, "error": "auth_error", "msg": ...}``; 429 ``{"detail":
  "API requests too frequent endpoint threshold=..."}`` (each endpoint has its own limit). The
  offer search is the exception: its documented answer to an invalid or missing key is 404
  ``{"error", "msg": "Invalid user key"}`` (``openapi/yaml/search_offers.yaml``), so a 404
  there is an auth error, never a machine gone.

What a machine must have to be worth renting, checked in the search and again on every row it
returns (a row that does not show it is skipped: a filter the server ignored must not rent a
machine that never serves). These follow dstack's ``vastai`` backend (``compute.py``
``_make_catalog``) and Vast's own API hello-world (``api-reference/hello-world.mdx``); the
sources are cited in ``tests/fixtures/vast/README.md``:

- ``direct_port_count >= 1``: without an open port on the host's router, ``-p 7860:7860`` never
  gets a public ``HostPort`` and the run would wait its whole ready timeout, billed.
- ``cuda_max_good >= MIN_CUDA`` (the newest CUDA the host's driver runs): an image built on
  ``nvidia/cuda:X`` carries ``NVIDIA_REQUIRE_CUDA=cuda>=X`` and an older driver refuses to start
  it ("OCI runtime create failed ... unsatisfied condition: cuda>=X"). The lean worker image is
  ``nvidia/cuda:12.6.3-base`` (``worker/Dockerfile``), automatic1111 images with torch 2.1+
  ``cu121`` need 12.1: 12.6 serves both (dstack, on a 12.8 image, filters 12.8).
- Bandwidth is billed per byte both ways and is outside ``dph_total`` (docs.vast.ai
  ``guides/reference/billing.mdx``). We pull a multi-GB image and every image we render leaves
  the host as base64 PNG (about 5 GB an hour on an RTX 3090 rendering SD 1.5), so hosts asking
  more than ``MAX_BANDWIDTH_USD_PER_GB`` either way are left out. Not priced into the offer:
  the Offer model has no field for it yet.

Status, beyond the documented ``actual_status`` values: ``exited``, ``unknown`` (no heartbeat)
and ``offline`` "will never reach running" (the API hello-world; SkyPilot fails provisioning on
them at once); an instance its owner or Vast means to stop (``intended_status == "stopped"``:
how an outbid interruptible reads, ``cur_state == intended_status == next_state == "stopped"``
in dstack) is gone for us, we never stop ours; and an instance that has not reached
``running`` while its ``status_msg`` reports an error ("OCI runtime create failed", an image
pull that failed) never will (dstack fails provisioning on the first, Vast's own CLI self-test
on the words below). All of these read EXITED, so the render run gives the machine up at once.

A rent Vast refuses may still have created an instance (dstack: a bid too low leaves a stopped
one, its id in ``new_contract`` of the error body): it is destroyed before the refusal is
raised, so nothing bills for it.

The image contract: ``image`` runs automatic1111 from its entrypoint and passes its arguments
through (``runtype: "args"`` keeps the entrypoint and injects no ssh/jupyter). The API-only
flags ride in ``args``; the per-run credential rides in ``COMMANDLINE_ARGS``, which
automatic1111 appends to its own argv (``modules/paths_internal.py``; SD.Next does the same).
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx

from subconscious.errors import (
    ConfigurationError,
    MachineGone,
    OfferGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderError,
)
from subconscious.market.base import Provider, worker_environment
from subconscious.market.http import DEFAULT_TIMEOUT, ProviderHttp
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.models.labels import LABEL_PREFIX

logger = logging.getLogger(__name__)

BASE_URL = "https://console.vast.ai/api/v0"
A1111_PORT = 7860
# automatic1111 API-only on a fixed port: what the "-p" mapping and the address rely on.
A1111_API_FLAGS = ("--api", "--nowebui", "--listen", "--port", str(A1111_PORT))
# Boot to first image on a stranger's host: image pull (several GB, host bandwidth varies),
# then automatic1111 start (~52 s measured in a container, up to 284 s seen for SD.Next) and
# the checkpoint load. The planner adds this to every quote, so it errs long.
STARTUP_S = 300
MIN_RELIABILITY = 0.95  # a filter, never money: a float is fine on the wire
MIN_GPU_RAM_MB = 8192  # SD 1.5 / SDXL at our sizes need 8 GB
SEARCH_LIMIT = 200
MIN_DIRECT_PORTS = 1  # one open port on the host's router, for -p 7860:7860
MIN_CUDA = Decimal("12.6")  # the lean worker's nvidia/cuda:12.6.3 base; a1111 (cu121) needs 12.1
# $/GB, each way. At this cap the uploads of an SD 1.5 run add about a quarter to a $0.20/h
# RTX 3090 and a 15 GB image pull costs $0.15: dearer hosts are left out, not priced.
MAX_BANDWIDTH_USD_PER_GB = Decimal("0.01")
# The rent can take longer than a read; a timeout there costs an adoption round.
RENT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
INSTANCE_PAGE = 25  # the v1 list's page cap
MAX_INSTANCE_PAGES = 400  # 10,000 instances: far beyond us, but a broken token cannot loop

_STATUS = {
    "running": MachineStatus.RUNNING,
    "created": MachineStatus.STARTING,
    "loading": MachineStatus.STARTING,  # pulling the image
    "exited": MachineStatus.EXITED,
    "unknown": MachineStatus.EXITED,  # no heartbeat from the host: "will never reach running"
    "offline": MachineStatus.EXITED,  # the host is disconnected from Vast
    "stopped": MachineStatus.EXITED,  # also how an outbid interruptible instance is paused
    "frozen": MachineStatus.EXITED,
}
# Anything else reads as STARTING: null (provisioning), "rebooting" and values added later;
# the run's ready timeout bounds that wait.
# Words of a status_msg that reports a failed start (vast-cli's self-test, which destroys the
# instance on them): "OCI runtime create failed", a failed image pull, and the like.
_FAILED_START_WORDS = (
    "error",
    "failed",
    "failure",
    "exception",
    "traceback",
    "oci runtime",
    "permission denied",
)


class VastProvider(Provider):
    name = "vast"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = BASE_URL,
        image: str,
        disk_gb: int = 40,
        min_cuda: Decimal = MIN_CUDA,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigurationError("vast: no API key configured")
        self._base = base_url.rstrip("/")
        self._min_cuda = min_cuda  # the CUDA the image needs (an image for 12.1 may lower it)
        # The v1 list lives beside v0 (".../api/v1"); with any other base it simply 404s and
        # the v0 list is used.
        self._v1_instances = f"{self._base.removesuffix('/v0')}/v1/instances/"
        self._image = image
        self._disk_gb = disk_gb
        self._secret = api_key
        # The key goes in this header and nowhere else (never a URL: httpx logs URLs).
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        client = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._http = ProviderHttp(self.name, client, sleep=sleep)
        # The rent gets one attempt, no retries of any kind: a timeout or a 5xx (a gateway
        # timing out) may come after the machine was rented, and a second PUT would then
        # answer "no_such_ask" for our own machine. Provision adopts it by label instead.
        self._rent_http = _RentHttp(
            self.name,
            client,
            attempts=1,
            sleep=sleep,
            secret=api_key,
            on_refused=self._destroy_refused_contract,
        )

    # --- offers ---
    def offers_query(self) -> dict[str, Any]:
        """The search body: single-GPU machines we would trust with a run, cheapest first."""
        return {
            "verified": {"eq": True},
            "external": {"eq": False},
            "rentable": {"eq": True},
            "rented": {"eq": False},  # not machines our own stopped instances hold
            "num_gpus": {"eq": 1},
            "reliability": {"gte": MIN_RELIABILITY},
            "gpu_ram": {"gte": MIN_GPU_RAM_MB},
            "direct_port_count": {"gte": MIN_DIRECT_PORTS},
            # JSON numbers, as dstack sends them; float() only to write them, no arithmetic
            "cuda_max_good": {"gte": float(self._min_cuda)},
            "inet_down_cost": {"lte": float(MAX_BANDWIDTH_USD_PER_GB)},
            "inet_up_cost": {"lte": float(MAX_BANDWIDTH_USD_PER_GB)},
            "order": [["dph_total", "asc"]],
            "type": "on-demand",
            "limit": SEARCH_LIMIT,
            "allocated_storage": self._disk_gb,  # dph_total then includes our disk
        }

    def list_offers(self) -> list[Offer]:
        try:
            body = self._http.json(
                "POST", f"{self._base}/bundles/", json=self.offers_query(), headers=self._headers
            )
        except MachineGone as error:  # no machine is named here: a 404 is the key refused
            raise ProviderAuthError(
                "vast: the offer search answered 404, Vast's answer to an invalid or missing "
                "API key (check the API key)"
            ) from error
        rows = body.get("offers") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise ProviderError("vast: the offer search answered without an offer list")
        offers: list[Offer] = []
        unfit: dict[str, int] = {}
        for row in rows:
            reason = _unfit(row, self._min_cuda) if isinstance(row, dict) else None
            if reason is not None:
                unfit[reason] = unfit.get(reason, 0) + 1
            elif (offer := _offer(row)) is not None:
                offers.append(offer)
        if unfit:
            logger.warning("vast: skipped offers the search should have left out: %s", unfit)
        return offers

    # --- machines ---
    def launch(
        self,
        offer: Offer,
        *,
        label: str,
        api_auth: str,
        bid_usd_per_hour: Decimal | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> Machine:
        if not _is_id(offer.offer_id):  # it goes into the path; Vast's ids are integers
            raise OfferGone(f"vast: no offer {offer.offer_id!r}")
        body: dict[str, Any] = {
            "client_id": "me",
            "image": self._image,
            "disk": self._disk_gb,
            "label": label,  # our run label only: never the credential (labels are listed)
            "runtype": "args",
            "args": list(A1111_API_FLAGS),
            # The credential rides in env rather than args: the flags are not secret, and
            # this keeps it out of the args the image's command line shows. (Vast returns
            # env as extra_env in instance reads, so it is never logged from there either.)
            "env": {
                f"-p {A1111_PORT}:{A1111_PORT}": "1",
                "COMMANDLINE_ARGS": f"--api-auth {shlex.quote(api_auth)}",
                **worker_environment(worker_env),
            },
            # Refuse rather than create a stopped instance when the machine cannot start now
            # (the default for on-demand only; interruptibles default to queueing).
            "cancel_unavail": True,
        }
        if bid_usd_per_hour is not None:
            # Interruptible at this bid. float() only to write a JSON number: no arithmetic,
            # and a float's repr round-trips any price of up to 15 significant digits.
            body["price"] = float(bid_usd_per_hour)
        answer = self._rent_http.json(
            "PUT",
            f"{self._base}/asks/{offer.offer_id}/",
            json=body,
            headers=self._headers,
            timeout=RENT_TIMEOUT,
            retry_timeouts=False,
        )
        if not isinstance(answer, dict):
            raise ProviderError("vast: the rent answered an unexpected shape")
        if answer.get("success") is not True:
            self._destroy_refused_contract(answer)
            raise _refusal(200, answer, self._secret)
        instance_id = answer.get("new_contract")
        if not isinstance(instance_id, int) or isinstance(instance_id, bool):
            # A rent may have happened: the run fails and Teardown gives back its label.
            raise ProviderError("vast: the rent answered success without an instance id")
        return Machine(
            provider=self.name,
            machine_id=str(instance_id),
            offer_id=offer.offer_id,
            label=label,
            status=MachineStatus.STARTING,
            url=None,
            usd_per_hour=bid_usd_per_hour if bid_usd_per_hour is not None else offer.usd_per_hour,
        )

    def status(self, machine_id: str) -> Machine:
        if not _is_id(machine_id):  # no such instance can exist; keeps the path clean
            raise MachineGone(f"vast: no instance {machine_id!r}")
        body = self._http.json(
            "GET",
            f"{self._base}/instances/{machine_id}/",
            params={"owner": "me"},
            headers=self._headers,
        )
        if not isinstance(body, dict):
            raise ProviderError("vast: the instance read answered an unexpected shape")
        row = body.get("instances")
        if row is None:  # how Vast answers for an instance that is gone
            raise MachineGone(f"vast: instance {machine_id} is gone")
        if not isinstance(row, dict):
            raise ProviderError("vast: the instance read answered an unexpected shape")
        return self._machine(row)

    def terminate(self, machine_id: str) -> None:
        if not _is_id(machine_id):
            return  # no such instance can exist
        try:
            # Idempotent, so ProviderHttp may retry it, timeouts included.
            response = self._http.request(
                "DELETE", f"{self._base}/instances/{machine_id}/", headers=self._headers
            )
        except MachineGone:  # 404 no_such_instance: given back already
            return
        body = _json_or_none(response)
        if isinstance(body, dict) and body.get("success") is False:
            if "no_such_instance" in _reason(body):
                return
            # The machine may still be alive: Teardown must hear that it failed.
            raise ProviderError(f"vast: destroy refused ({_describe(body, self._secret)})")

    def machines(self, label: str | None = None) -> list[Machine]:
        rows = self._instance_rows()
        # Filter before parsing: another tool's odd instance must not break our teardown.
        ours = [row for row in rows if isinstance(row, dict) and _is_ours(row, label)]
        return [self._machine(row) for row in ours]

    # --- internals ---
    def _destroy_refused_contract(self, body: Any) -> None:
        """Destroy the instance a refused rent created anyway (its id in ``new_contract``),
        as dstack does: a bid too low can leave a stopped instance that bills for its disk."""
        contract = body.get("new_contract") if isinstance(body, dict) else None
        if isinstance(contract, bool) or not isinstance(contract, int | str):
            return
        instance_id = str(contract)
        if not _is_id(instance_id):
            return
        try:
            self.terminate(instance_id)  # retried on 429, 5xx and timeouts
        except ProviderError as error:
            # It carries our label: Teardown and the reaper destroy it by that.
            logger.error(
                "vast: could not destroy instance %s that a refused rent created (%s)",
                instance_id,
                type(error).__name__,
            )
        else:
            logger.warning("vast: destroyed instance %s that a refused rent created", instance_id)

    def _instance_rows(self) -> list[Any]:
        try:
            return self._instance_rows_v1()
        except MachineGone:  # 404: no v1 list at this base URL
            body = self._http.json(
                "GET", f"{self._base}/instances/", params={"owner": "me"}, headers=self._headers
            )
            return _instances_of(body)

    def _instance_rows_v1(self) -> list[Any]:
        params = {
            "select_filters": "{}",
            "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
            "limit": str(INSTANCE_PAGE),
        }
        rows: list[Any] = []
        for _ in range(MAX_INSTANCE_PAGES):
            body = self._http.json("GET", self._v1_instances, params=params, headers=self._headers)
            rows += _instances_of(body)
            token = body.get("next_token")
            if not token:
                return rows
            params["after_token"] = str(token)
        raise ProviderError(f"vast: the instance list ran past {MAX_INSTANCE_PAGES} pages")

    def _machine(self, row: dict[str, Any]) -> Machine:
        try:
            instance_id = int(row["id"])
        except (KeyError, TypeError, ValueError) as error:
            raise ProviderError("vast: an instance without an id") from error
        bundle = row.get("bundle_id")
        return Machine(
            provider=self.name,
            machine_id=str(instance_id),
            offer_id="" if bundle is None else str(bundle),
            label=str(row.get("label") or ""),
            status=_status(row),
            url=_url(row),
            usd_per_hour=_listed_price(row.get("dph_total")),
        )


class _RentHttp(ProviderHttp):
    """The rent's plumbing: Vast's refusal bodies are read before the shared mapping, so a
    404 says "offer gone" (not "machine gone") and a 410 "cannot start now"."""

    def __init__(
        self, *args: Any, secret: str, on_refused: Callable[[Any], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._secret = secret
        self._on_refused = on_refused  # given every error body: it may name an instance

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            body = _json_or_none(response)
            self._on_refused(body)
            if response.status_code in (400, 404, 410):
                raise _refusal(response.status_code, body, self._secret)
        return super()._check(method, response)


def _refusal(status: int, body: Any, secret: str) -> ProviderError:
    """The typed error for a rent Vast refused (an HTTP error or ``{"success": false}``)."""
    reason = _reason(body)
    text = f"vast: the rent was refused ({status}: {_describe(body, secret)})"
    if "insufficient_credit" in reason:
        return ProviderError(text)  # an account problem: no other offer will do better
    if status == 410:  # documented: cannot start now (we send cancel_unavail)
        return OutOfCapacity(text)
    if status == 404 or "no_such_ask" in reason or "not available" in reason:
        return OfferGone(text)
    if "invalid_price" in reason:  # the bid is under today's minimum
        return OutOfCapacity(text)
    if status == 200:  # refused without saying why: it cannot be had now
        return OutOfCapacity(text)
    return ProviderError(text)


def _offer(row: Any) -> Offer | None:
    """One search row as an Offer; a row we cannot price exactly is skipped, not guessed."""
    try:
        price = _decimal(row["dph_total"])
        min_bid = _decimal(row.get("min_bid"))
        reliability = _decimal(row.get("reliability", row.get("reliability2")))
        if price is None or reliability is None:
            raise ValueError("no price or reliability")
        offer = Offer(
            provider=VastProvider.name,
            offer_id=str(int(row["id"])),
            gpu=str(row["gpu_name"]),  # the provider's name; canonical_gpu is the planner's
            gpu_count=int(row.get("num_gpus") or 1),
            # MB to whole GB, to the nearest: a 24 GB card reports 24564 MB
            gpu_memory_gb=(int(row["gpu_ram"]) + 512) // 1024,
            usd_per_hour=price,
            interruptible=min_bid is not None,
            min_bid_usd_per_hour=min_bid,
            reliability=reliability,
            location=str(row.get("geolocation") or ""),
            startup_s=STARTUP_S,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        offer_id = row.get("id") if isinstance(row, dict) else None
        logger.warning("vast: skipped an offer without a usable price or shape: %s", offer_id)
        return None
    return offer


def _unfit(row: dict[str, Any], min_cuda: Decimal) -> str | None:
    """Why a search row must not be rented, or None. Ports and CUDA must be shown; a
    bandwidth price only has to be under the cap when it is given."""
    if not _at_least(row.get("direct_port_count"), Decimal(MIN_DIRECT_PORTS)):
        return "no direct port"
    if not _at_least(row.get("cuda_max_good"), min_cuda):
        return f"CUDA under {min_cuda}"
    for field in ("inet_down_cost", "inet_up_cost"):
        cost = row.get(field)
        if cost is not None and not _at_most(cost, MAX_BANDWIDTH_USD_PER_GB):
            return f"bandwidth over ${MAX_BANDWIDTH_USD_PER_GB}/GB"
    return None


def _finite(value: Any) -> Decimal | None:
    """A JSON number as an exact, finite Decimal (None for anything else, booleans too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    amount = Decimal(str(value))
    return amount if amount.is_finite() else None


def _at_least(value: Any, minimum: Decimal) -> bool:
    amount = _finite(value)
    return amount is not None and amount >= minimum


def _at_most(value: Any, maximum: Decimal) -> bool:
    amount = _finite(value)
    return amount is not None and 0 <= amount <= maximum


def _status(row: dict[str, Any]) -> MachineStatus:
    """The instance's status, with the early failures (see the module's docstring) as EXITED."""
    status = _STATUS.get(str(row.get("actual_status")), MachineStatus.STARTING)
    if row.get("intended_status") in ("stopped", "exited"):
        return MachineStatus.EXITED  # outbid, or stopped by its host: we never stop ours
    message = row.get("status_msg")
    if status is MachineStatus.STARTING and isinstance(message, str):
        words = message.lower()
        if any(word in words for word in _FAILED_START_WORDS):
            return MachineStatus.EXITED  # the container failed to start: it never will
    return status


def _decimal(value: Any) -> Decimal | None:
    """A JSON number (a price, a reliability) as Decimal via str(), never through float
    arithmetic; None if absent. Raises ValueError for NaN, infinities and negatives (Python's
    JSON parser accepts NaN and Infinity)."""
    if value is None:
        return None
    amount = Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a price: {value!r}")
    return amount


def _listed_price(value: Any) -> Decimal:
    """An instance's price. Informational (spend is costed from the run's offer), so a read
    without a usable one gives 0 rather than hide the machine from Teardown or the reaper."""
    try:
        return _decimal(value) or Decimal(0)
    except (TypeError, ValueError, ArithmeticError):
        return Decimal(0)


def _url(row: dict[str, Any]) -> str | None:
    """``http://ip:port`` once Vast has published both the address and the port mapping."""
    ip = str(row.get("public_ipaddr") or "").strip()
    ports = row.get("ports")
    bindings = ports.get(f"{A1111_PORT}/tcp") if isinstance(ports, dict) else None
    if not ip or not isinstance(bindings, list) or not bindings:
        return None
    first = bindings[0]
    host_port = str(first.get("HostPort") or "") if isinstance(first, dict) else ""
    if not _is_id(host_port):
        return None
    host = f"[{ip}]" if ":" in ip else ip  # an IPv6 address needs brackets in a URL
    return f"http://{host}:{host_port}"


def _is_id(value: str) -> bool:
    """Vast's ids are decimal integers (str.isdigit alone also takes "²" and other digits)."""
    return value.isascii() and value.isdigit()


def _is_ours(row: dict[str, Any], label: str | None) -> bool:
    found = row.get("label")
    if not isinstance(found, str):
        return False
    return found == label if label is not None else found.startswith(LABEL_PREFIX)


def _instances_of(body: Any) -> list[Any]:
    rows = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise ProviderError("vast: the instance list answered without an instance list")
    return rows


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reason(body: Any) -> str:
    """Vast's machine-readable reason: ``error`` and ``msg`` of an error body, lower-cased."""
    if not isinstance(body, dict):
        return ""
    return f"{body.get('error') or ''} {body.get('msg') or ''}".lower()


def _describe(body: Any, secret: str) -> str:
    """Vast's words for a message: short, and never the key (should Vast ever echo it)."""
    if isinstance(body, dict):
        words = " ".join(str(body[k]) for k in ("error", "msg") if body.get(k))
    else:
        words = "no JSON body"
    return (words or "no reason given").replace(secret, "***")[:200]
