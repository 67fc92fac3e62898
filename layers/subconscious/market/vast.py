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
  "API requests too frequent endpoint threshold=..."}`` (each endpoint has its own limit).

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
    ProviderError,
)
from subconscious.market.base import LABEL_PREFIX, worker_environment
from subconscious.market.http import DEFAULT_TIMEOUT, ProviderHttp
from subconscious.models import Machine, MachineStatus, Offer

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
# The rent can take longer than a read; a timeout there costs an adoption round.
RENT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
INSTANCE_PAGE = 25  # the v1 list's page cap
MAX_INSTANCE_PAGES = 400  # 10,000 instances: far beyond us, but a broken token cannot loop

_STATUS = {
    "running": MachineStatus.RUNNING,
    "created": MachineStatus.STARTING,
    "loading": MachineStatus.STARTING,  # pulling the image
    "exited": MachineStatus.EXITED,
    "offline": MachineStatus.EXITED,
    "stopped": MachineStatus.EXITED,  # also how an outbid interruptible instance is paused
    "frozen": MachineStatus.EXITED,
}
# Anything else reads as STARTING: null (provisioning), "rebooting", values added later, and
# "unknown" (no heartbeat). docs.vast.ai warns a booting instance in "unknown" may never reach
# running; but a running one can pass through it, and EXITED would give up a machine that
# may be fine, whereas the run's ready timeout bounds a wait that was in vain.


class VastProvider:
    name = "vast"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = BASE_URL,
        image: str,
        disk_gb: int = 40,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigurationError("vast: no API key configured")
        self._base = base_url.rstrip("/")
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
        self._rent_http = _RentHttp(self.name, client, attempts=1, sleep=sleep, secret=api_key)

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
            "order": [["dph_total", "asc"]],
            "type": "on-demand",
            "limit": SEARCH_LIMIT,
            "allocated_storage": self._disk_gb,  # dph_total then includes our disk
        }

    def list_offers(self) -> list[Offer]:
        body = self._http.json(
            "POST", f"{self._base}/bundles/", json=self.offers_query(), headers=self._headers
        )
        rows = body.get("offers") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise ProviderError("vast: the offer search answered without an offer list")
        offers = [offer for row in rows if (offer := _offer(row)) is not None]
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
            status=_STATUS.get(str(row.get("actual_status")), MachineStatus.STARTING),
            url=_url(row),
            usd_per_hour=_listed_price(row.get("dph_total")),
        )


class _RentHttp(ProviderHttp):
    """The rent's plumbing: Vast's refusal bodies are read before the shared mapping, so a
    404 says "offer gone" (not "machine gone") and a 410 "cannot start now"."""

    def __init__(self, *args: Any, secret: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secret = secret

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        if response.status_code in (400, 404, 410):
            raise _refusal(response.status_code, _json_or_none(response), self._secret)
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
