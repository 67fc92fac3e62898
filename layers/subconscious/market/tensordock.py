"""TensorDock marketplace adapter, over TensorDock's v2 API (``dashboard.tensordock.com/api/v2``).

Why v2: TensorDock's documentation is v2 only (``dashboard.tensordock.com/api/docs``, "Version
2.0"); the v0 marketplace API (``marketplace.tensordock.com/api/v0``, form fields ``api_key`` +
``api_token``) is no longer maintained, and the clients built on it were retired (dstack dropped
its v0-based TensorDock backend in 2025). v2 authenticates with one Bearer token and speaks
JSON:API-style bodies.

What this module relies on (docs pages ``fetch-hostnodes``, ``instance-creation``,
``instance-management``; field names cross-checked against public v2 clients):

- ``GET /hostnodes`` → ``{"data": {"hostnodes": [{id, location_id, uptime_percentage,
  available_resources{gpus[{v0Name, availableCount, price_per_hr}], vcpu_count, ram_gb,
  storage_gb, available_ports[]}, pricing{per_vcpu_hr, per_gb_ram_hr, per_gb_storage_hr},
  location{city, stateprovince, country}}]}}``.
- ``POST /instances`` with ``{"data": {"type": "virtualmachine", "attributes": {name, type,
  image, hostnode_id, resources{vcpu_count, ram_gb, storage_gb, gpus{<v0Name>: {count}}},
  port_forwards[{internal_port, external_port}], ssh_key, cloud_init{runcmd}}}}``
  → ``{"data": {"type": "virtualmachine", "id", "name", "status"}}``. Storage is at least
  100 GB and an SSH key is required. ``cloud_init`` is documented with ``runcmd``,
  ``packages``, ``package_update`` and ``package_upgrade`` only, so files are written by
  ``runcmd`` lines, never by cloud-init's ``write_files``.
- ``GET /instances/{id}`` → ``{id, name, status, ipAddress, portForwards, rateHourly}``
  (flat in the docs; some answers wrap it in ``data``/``attributes``, both are read).
  ``portForwards`` is a list of ``{internal_port, external_port}`` or a map of one port to
  the other; both are read.
- ``GET /instances``: two documented shapes, ``{"data": {"instances": [...]}}`` and
  ``{"data": {"type": "list", "attributes": {"instances": [...]}}}`` (the getting-started
  page), plus ``{"data": [...]}``, which a community client reads as well; all three are read
  (``tests/fixtures/tensordock/README.md``).
- ``DELETE /instances/{id}`` → ``{"data": {"type": "success", ...}}``; 404 once it is gone.
- At most 100 requests per minute per organization, then 429 (``ProviderHttp`` waits; the
  create alone is sent once and never retried, see ``TensorDockProvider.__init__``).
- Errors carry free text, no codes: ``{"error": ...}`` (also in 2xx answers, with a
  ``status`` >= 400), ``{"errors": [{"detail": ...}]}`` or v0's ``{"success": false,
  "error": ...}``; ``_refined`` reads them in one place.

The credential of the rented machine (automatic1111 ``--api-auth user:password``) travels
only inside the create request's ``cloud_init`` (HTTPS to TensorDock, then a ``runcmd`` line on
the VM decodes it into a root-only file that ``docker run --env-file`` reads). TensorDock's instance
listing and details show name, status, address and ports, never ``cloud_init``; the VM's name
is the run's label and carries no secret. The API token is sent only as the Bearer header.
"""

from __future__ import annotations

import base64
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from subconscious.errors import (
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
from subconscious.observability import logger

API_BASE = "https://dashboard.tensordock.com/api/v2"

# The smallest machine that runs automatic1111 comfortably next to one GPU. TensorDock bills
# each part per hour, so the offer's price is the GPU plus exactly this bundle. Storage is
# 100 GB, not less: v2 refuses a create below 100 GB.
VCPUS = 4
RAM_GB = 16
STORAGE_GB = 100
A1111_PORT = 7860
# VM boot (~1-2 min on a marketplace host) + Docker (and NVIDIA toolkit) install when the image
# lacks them + image pull + checkpoint load: what the planner must pay before the first image.
STARTUP_S = 420
# TensorDock's "ML" Ubuntu image: NVIDIA driver and CUDA preinstalled. The startup script
# adds Docker and the NVIDIA container toolkit only if they are missing.
OS_IMAGE = "ubuntu2404_ml_everything"
# Any image that starts automatic1111's launcher, which appends $COMMANDLINE_ARGS to its own
# arguments, and listens on 7860. Pin a digest in production.
A1111_IMAGE = "universonic/stable-diffusion-webui:latest"
# A create can take longer than a read; its answer must not be given up on too early,
# because it is never retried (the machine may exist already).
CREATE_TIMEOUT = httpx.Timeout(60.0, connect=5.0)

_CONFIG_DIR = "/etc/subc"
_ENV_FILE = f"{_CONFIG_DIR}/a1111.env"
_START_SCRIPT = f"{_CONFIG_DIR}/start-a1111.sh"
# automatic1111 splits --api-auth on "," and ":", and its launcher splits COMMANDLINE_ARGS
# like a shell: a credential outside this alphabet would silently change meaning.
_API_AUTH = re.compile(r"[A-Za-z0-9._~-]+:[A-Za-z0-9._~-]+")
_GPU_MEMORY = re.compile(r"-(\d+)gb$")
_ERROR_TEXT_LIMIT = 200

_RUNNING = frozenset({"running"})
_STARTING = frozenset(
    {"starting", "pending", "provisioning", "creating", "deploying", "booting", "restarting"}
)
# We never stop a VM: a stopped one was stopped under us (host reclaimed, "StoppedDisassociated"
# = its GPU given to someone else), so it counts as exited, like a deleted or failed one.
_EXITED = frozenset(
    {
        "stopping",
        "stopped",
        "stoppeddisassociated",
        "deleting",
        "deleted",
        "terminated",
        "error",
        "failed",
    }
)
_GONE = frozenset({"deleted", "terminated"})

# TensorDock's errors are free text without codes, so they are classified here, once, by
# their words (auth first: a refused token says nothing about stock).
_AUTH_WORDS = re.compile(r"unauthori[sz]ed|forbidden|invalid (api )?(token|key)|authenticat", re.I)
_BALANCE_WORDS = re.compile(r"balance|funds|need at least", re.I)
_HOST_GONE_WORDS = re.compile(
    r"hostnode.*(not found|does not exist|unknown|invalid|offline)"
    r"|(no|unknown|invalid) hostnode",
    re.I,
)
_CAPACITY_WORDS = re.compile(
    r"stock|capacity|not enough|insufficient|no longer available|not available|unavailable"
    r"|port.*(in use|taken)",
    re.I,
)
_NOT_FOUND_WORDS = re.compile(r"not found|does not exist|already deleted", re.I)


def _refined(detail: str) -> type[ProviderError] | None:
    """The error class TensorDock's words point to, or None when they name no known case."""
    if _AUTH_WORDS.search(detail):
        return ProviderAuthError
    if _BALANCE_WORDS.search(detail):  # an account problem: no other offer here would do
        return ProviderError
    if _HOST_GONE_WORDS.search(detail):
        return OfferGone
    if _CAPACITY_WORDS.search(detail):
        return OutOfCapacity
    if _NOT_FOUND_WORDS.search(detail):
        return MachineGone
    return None


def _error_text(body: Any) -> str | None:
    """The message of an error body, in any of the shapes TensorDock uses: ``{"error": ...}``
    (v2 answers, also v0's ``{"success": false, "error": ...}``), ``{"message": ...}``, or
    ``{"errors": [{"detail"|"title": ...}]}``."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail")
    if error:
        return str(error)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("detail") or first.get("title") or "request refused")
    message = body.get("message")
    return str(message) if message else None


def _body_error(body: Any) -> str | None:
    """An error carried by a 2xx answer (seen from v2: ``{"status": 400, "error": ...}``)."""
    if not isinstance(body, dict) or "data" in body:
        return None
    refused = body.get("success") is False
    status = body.get("status")
    refused = refused or (isinstance(status, int) and status >= 400)
    refused = refused or bool(body.get("error")) or bool(body.get("errors"))
    if not refused:
        return None
    return _error_text(body) or "request refused"


class _TensorDockHttp(ProviderHttp):
    """``ProviderHttp`` that reads TensorDock's error text before the shared status mapping, so
    a refused create can say *why* (no stock, unknown host) instead of a bare "400"."""

    def __init__(
        self,
        client: httpx.Client,
        sleep: Callable[[float], None],
        secrets: set[str],
        attempts: int = 4,
    ) -> None:
        super().__init__("tensordock", client, attempts=attempts, sleep=sleep)
        # Values that must never reach an error message, even if TensorDock echoes them.
        self.secrets = secrets

    def redact(self, text: str) -> str:
        # Replace before cutting: a cut through a secret would leave its first part behind.
        for secret in sorted(filter(None, self.secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return " ".join(text.split())[:_ERROR_TEXT_LIMIT]

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        try:
            return super()._check(method, response)
        except ProviderError as error:
            status = response.status_code
            # 401/403/429/5xx mean the same whatever the text says: the shared mapping stands.
            detail = _error_text(_json_or_none(response)) if 400 <= status < 500 else None
            if detail is None or status in (401, 403, 429):
                raise
            refined = _refined(detail) or type(error)
            raise refined(f"{error.message}: {self.redact(detail)}") from error


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class TensorDockProvider(Provider):
    name = "tensordock"
    # "running" is the VM; cloud-init then installs Docker, pulls the image and starts it, so
    # the render run's serve deadline counts the offer's start-up on top (logic/render_run.py)
    running_before_pull = True

    def __init__(
        self,
        api_token: str,
        *,
        ssh_public_key: str,
        base_url: str = API_BASE,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        os_image: str = OS_IMAGE,
        a1111_image: str = A1111_IMAGE,
    ) -> None:
        """``ssh_public_key``: v2 refuses a create without one. No port 22 is forwarded, so it
        opens nothing from outside; use a key whose private half is kept offline.
        ``base_url``: the API root (a local emulator's, in tests); ignored when ``http`` is
        given, whose own base URL is used."""
        client = http or httpx.Client(base_url=base_url, timeout=DEFAULT_TIMEOUT)
        secrets = {api_token}
        self._http = _TensorDockHttp(client, sleep, secrets)
        # The create is sent exactly once, whatever comes back: a timeout or a 5xx may follow a
        # VM that exists already, and a second create would rent a second machine, billed until
        # the run's teardown. Provision adopts a machine whose answer was lost, by its label.
        self._create_http = _TensorDockHttp(client, sleep, secrets, attempts=1)
        # A header, never a query parameter: URLs end up in access logs and in httpx's log.
        self._headers = {"Authorization": f"Bearer {api_token}", "Accept": "application/json"}
        self._ssh_public_key = ssh_public_key
        self._os_image = os_image
        self._a1111_image = a1111_image
        # What a launch knew, for status() in the same process (TensorDock's instance details
        # name neither the host nor always the price).
        self._launched: dict[str, tuple[str, Decimal]] = {}

    # --- offers ---
    def list_offers(self) -> list[Offer]:
        offers: list[Offer] = []
        for host in _hostnodes(self._call("GET", "/hostnodes")):
            for gpu in _stocked_gpus(host):
                offer = _offer(host, gpu)
                if offer is not None:
                    offers.append(offer)
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
        if bid_usd_per_hour is not None:
            raise ProviderError("tensordock has no interruptible machines to bid on")
        if not label.startswith(LABEL_PREFIX):
            # The reaper finds our machines by this prefix; one without it would never be reaped.
            raise ValueError(f"label must start with {LABEL_PREFIX!r}")
        if not _API_AUTH.fullmatch(api_auth):
            raise ValueError("api_auth must be user:password in [A-Za-z0-9._~-]")
        host_id, _, gpu_model = offer.offer_id.partition(":")
        host = next(
            (h for h in _hostnodes(self._call("GET", "/hostnodes")) if h.get("id") == host_id),
            None,
        )
        if host is None or not gpu_model:
            raise OfferGone(f"tensordock: no host {offer.offer_id!r} on the market")
        if gpu_model not in {g["v0Name"] for g in _stocked_gpus(host)}:
            raise OutOfCapacity(f"tensordock: {offer.offer_id} has no room for 1 GPU + the bundle")
        port = _free_port(host)
        if port is None:
            raise OutOfCapacity(f"tensordock: {offer.offer_id} has no free port for the API")
        attributes = {
            "name": label,
            "type": "virtualmachine",
            "image": self._os_image,
            "hostnode_id": host_id,
            "resources": {
                "vcpu_count": VCPUS,
                "ram_gb": RAM_GB,
                "storage_gb": STORAGE_GB,
                "gpus": {gpu_model: {"count": 1}},
            },
            "port_forwards": [{"internal_port": A1111_PORT, "external_port": port}],
            "ssh_key": self._ssh_public_key,
            "cloud_init": self._cloud_init(api_auth, worker_environment(worker_env)),
        }
        body = {"data": {"type": "virtualmachine", "attributes": attributes}}
        # Redacted from any error text for the length of this call (and its password alone,
        # in case only that part is echoed).
        secrets = {api_auth, api_auth.partition(":")[2]} - self._http.secrets
        self._http.secrets |= secrets
        try:
            created = self._call(
                "POST",
                "/instances",
                http=self._create_http,
                json=body,
                timeout=CREATE_TIMEOUT,
                retry_timeouts=False,
            )
        except MachineGone as error:  # a 404 on a create can only be about the host
            raise OfferGone(f"tensordock: host of {offer.offer_id} is gone") from error
        finally:
            self._http.secrets -= secrets
        machine_id = _instance(created).get("id")
        if not machine_id:
            raise ProviderError("tensordock: create answered without an instance id")
        self._launched[str(machine_id)] = (offer.offer_id, offer.usd_per_hour)
        return Machine(
            provider=self.name,
            machine_id=str(machine_id),
            offer_id=offer.offer_id,
            label=label,
            status=MachineStatus.STARTING,
            usd_per_hour=offer.usd_per_hour,
        )

    def status(self, machine_id: str) -> Machine:
        return self._machine(_instance(self._call("GET", f"/instances/{machine_id}")))

    def terminate(self, machine_id: str) -> None:
        try:
            self._call("DELETE", f"/instances/{machine_id}")
        except MachineGone:  # already gone: giving back is idempotent
            return

    def machines(self, label: str | None = None) -> list[Machine]:
        found = []
        for instance in _instances(self._call("GET", "/instances")):
            name = str(instance.get("name") or "")
            if not name.startswith(LABEL_PREFIX) or (label is not None and name != label):
                continue  # not ours (the account may hold other VMs), or another run's
            if _status_word(instance) in _GONE:
                continue
            found.append(self._machine(instance))
        return found

    # --- plumbing ---
    def _call(
        self, method: str, path: str, *, http: ProviderHttp | None = None, **kwargs: Any
    ) -> Any:
        response = (http or self._http).request(method, path, headers=self._headers, **kwargs)
        if not response.content:  # e.g. a 204 to a delete: nothing to read, nothing refused
            return {}
        try:
            body = response.json()
        except ValueError as error:
            raise ProviderError(f"tensordock: {method} answered without JSON") from error
        detail = _body_error(body)
        if detail is not None:
            refined = _refined(detail) or ProviderError
            raise refined(f"tensordock: {method} refused: {self._http.redact(detail)}")
        return body

    def _cloud_init(self, api_auth: str, worker_env: Mapping[str, str]) -> dict[str, Any]:
        """The VM's first boot, in ``runcmd`` alone (TensorDock documents ``runcmd``,
        ``packages`` and ``package_update``/``package_upgrade``; not ``write_files``): a
        root-only env file with automatic1111's arguments (the only place the credential lives
        on the VM), and a script that makes sure Docker can reach the GPU, then starts
        automatic1111 API-only behind it."""
        args = f"--api --nowebui --listen --port {A1111_PORT} --api-auth {api_auth}"
        env = "".join(f"{k}={v}\n" for k, v in {"COMMANDLINE_ARGS": args, **worker_env}.items())
        return {
            "runcmd": [
                f"mkdir -p -m 0700 {_CONFIG_DIR}",
                _write_root_only(_ENV_FILE, env),
                _write_root_only(_START_SCRIPT, _start_script(self._a1111_image)),
                f"sh {_START_SCRIPT}",
            ],
        }

    def _machine(self, instance: dict[str, Any]) -> Machine:
        machine_id = str(instance.get("id") or "")
        offer_id, price = self._launched.get(machine_id, ("", Decimal(0)))
        if instance.get("rateHourly") is not None:
            price = _decimal(instance["rateHourly"])
        word = _status_word(instance)
        if word in _RUNNING:
            status = MachineStatus.RUNNING
        elif word in _EXITED:
            status = MachineStatus.EXITED
        else:
            if word not in _STARTING:  # new wording: keep polling, WaitReady's timeout bounds it
                logger.warning("unknown tensordock status", machine_id=machine_id, status=word)
            status = MachineStatus.STARTING
        return Machine(
            provider=self.name,
            machine_id=machine_id,
            offer_id=offer_id,
            label=str(instance.get("name") or ""),
            status=status,
            url=_url(instance) if status is MachineStatus.RUNNING else None,
            usd_per_hour=price,
        )


def _write_root_only(path: str, content: str) -> str:
    """A ``runcmd`` line that writes ``content`` to ``path``, readable by root alone.

    Base64 keeps the content exact through TensorDock's cloud-init translation and the shell
    (no quoting to get wrong), and ``printf`` is a shell builtin: the content (the credential,
    for the env file) is piped to ``base64 -d`` and appears in no process's arguments. The
    umask lives in a subshell, so nothing the start script installs later is made root-only
    (apt could not read a keyring written under it)."""
    encoded = base64.b64encode(content.encode()).decode()
    return f"(umask 077 && printf %s {encoded} | base64 -d > {path})"


def _start_script(a1111_image: str) -> str:
    # NVIDIA's documented apt route for the container toolkit, only when Docker cannot see the
    # GPU yet; `docker run --restart` brings automatic1111 back after a reboot of the VM.
    keyring = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
    repo = "https://nvidia.github.io/libnvidia-container"
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "command -v docker >/dev/null 2>&1 || curl -fsSL https://get.docker.com | sh",
            "if ! docker info 2>/dev/null | grep -qi nvidia; then",
            f"  curl -fsSL {repo}/gpgkey | gpg --batch --yes --dearmor -o {keyring}",
            f"  curl -fsSL {repo}/stable/deb/nvidia-container-toolkit.list"
            f" | sed 's#deb https://#deb [signed-by={keyring}] https://#g'"
            " > /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "  apt-get update && apt-get install -y nvidia-container-toolkit",
            "  nvidia-ctk runtime configure --runtime=docker && systemctl restart docker",
            "fi",
            f"docker run -d --name a1111 --restart unless-stopped --gpus all"
            f" -p {A1111_PORT}:{A1111_PORT} --env-file {_ENV_FILE} {shlex.quote(a1111_image)}",
            "",
        ]
    )


def _decimal(value: Any) -> Decimal:
    """A price from JSON as an exact Decimal (``str()`` first, so a float's binary noise does
    not leak in); raises ProviderError on anything that is not a finite non-negative number."""
    try:
        number = Decimal(str(value))
    except InvalidOperation as error:
        raise ProviderError(f"tensordock: price {value!r} is not a number") from error
    if not number.is_finite() or number < 0:
        raise ProviderError(f"tensordock: price {value!r} is not a price")
    return number


def _hostnodes(body: Any) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    hosts = data.get("hostnodes") if isinstance(data, dict) else None
    if not isinstance(hosts, list):
        raise ProviderError("tensordock: host listing without data.hostnodes")
    return [h for h in hosts if isinstance(h, dict)]


def _resources(host: dict[str, Any]) -> dict[str, Any]:
    resources = host.get("available_resources")
    return resources if isinstance(resources, dict) else {}


def _stocked_gpus(host: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The host's GPU models with at least one free, if the host can also give our bundle."""
    resources = _resources(host)
    needs = (("vcpu_count", VCPUS), ("ram_gb", RAM_GB), ("storage_gb", STORAGE_GB))
    # An absent figure is left for the create to judge; a present one must fit.
    if any(_number(resources.get(key), need) < need for key, need in needs):
        return
    for gpu in resources.get("gpus") or []:
        if isinstance(gpu, dict) and gpu.get("v0Name") and _number(gpu.get("availableCount")) >= 1:
            yield gpu


def _free_port(host: dict[str, Any]) -> int | None:
    ports = _resources(host).get("available_ports")
    usable = (int(p) for p in ports or [] if str(p).isdigit())
    return next(usable, None)


def _number(value: Any, default: float = 0) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return 0


def _offer(host: dict[str, Any], gpu: dict[str, Any]) -> Offer | None:
    """One host's GPU model as an offer of 1 GPU + the bundle, or None (logged) when the host
    describes it too poorly to price or to reach."""
    host_id = str(host.get("id") or "")
    model = str(gpu["v0Name"])
    memory = _GPU_MEMORY.search(model)
    pricing = host.get("pricing")
    if not host_id or memory is None or not isinstance(pricing, dict):
        logger.warning("tensordock offer skipped: no id, GPU memory or pricing", host=host_id)
        return None
    if _free_port(host) is None:  # nothing to forward automatic1111's port to
        return None
    try:
        price = (
            _decimal(gpu["price_per_hr"])
            + VCPUS * _decimal(pricing["per_vcpu_hr"])
            + RAM_GB * _decimal(pricing["per_gb_ram_hr"])
            + STORAGE_GB * _decimal(pricing["per_gb_storage_hr"])
        )
    except (KeyError, ProviderError):
        logger.warning("tensordock offer skipped: incomplete pricing", host=host_id, gpu=model)
        return None
    return Offer(
        provider=TensorDockProvider.name,
        offer_id=f"{host_id}:{model}",
        gpu=model,
        gpu_count=1,
        gpu_memory_gb=int(memory.group(1)),
        usd_per_hour=price,
        interruptible=False,  # TensorDock rents on-demand only
        reliability=_reliability(host.get("uptime_percentage")),
        location=_location(host.get("location")),
        startup_s=STARTUP_S,
    )


def _reliability(uptime_percentage: Any) -> Decimal:
    """Uptime (a percentage) as a 0-1 reliability; the model's default when it is missing."""
    try:
        uptime = Decimal(str(uptime_percentage)) / 100
        if 0 <= uptime <= 1:
            return uptime
    except InvalidOperation:  # "None", "NaN" (which also refuses to be compared)
        pass
    return Decimal(Offer.model_fields["reliability"].default)


def _location(location: Any) -> str:
    if not isinstance(location, dict):
        return ""
    parts = (location.get(key) for key in ("city", "stateprovince", "country"))
    return ", ".join(str(p) for p in parts if p)


def _instance(body: Any) -> dict[str, Any]:
    """One instance, flat: the docs answer flat, others wrap it in ``data`` and ``attributes``."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        body = body["data"]
    if not isinstance(body, dict):
        raise ProviderError("tensordock: instance answer is not an object")
    attributes = body.get("attributes")
    if isinstance(attributes, dict):
        return {**attributes, "id": body.get("id", attributes.get("id"))}
    return body


def _instances(body: Any) -> list[dict[str, Any]]:
    """The listing in any of its shapes: ``data.instances`` and ``data.attributes.instances``
    (both in TensorDock's docs), or ``data`` as the list itself."""
    data = body.get("data") if isinstance(body, dict) else None
    listed = data
    if isinstance(data, dict):
        attributes = data.get("attributes")
        listed = data.get("instances")
        if listed is None and isinstance(attributes, dict):
            listed = attributes.get("instances")
    if not isinstance(listed, list):
        raise ProviderError(
            "tensordock: instance listing without data.instances or data.attributes.instances"
        )
    return [_instance(item) for item in listed if isinstance(item, dict)]


def _status_word(instance: dict[str, Any]) -> str:
    # "running", "Stopped", "StoppedDisassociated", "stopped_disassociated": one spelling.
    return re.sub(r"[^a-z]", "", str(instance.get("status") or "").lower())


def _url(instance: dict[str, Any]) -> str | None:
    """automatic1111's address: the VM's IP and the external port forwarded to 7860."""
    ip = instance.get("ipAddress") or instance.get("ip_address")
    external = _external_port(instance.get("portForwards") or instance.get("port_forwards"))
    return f"http://{ip}:{external}" if ip and external else None


def _external_port(forwards: Any) -> str | None:
    """The external port forwarded to 7860, from a list of ``{internal_port, external_port}``
    or from a map of one port to the other: internal to external in v2's schema, external to
    internal in v0's ``port_forwards``. A map is read either way round: the forward we ask for
    goes to 7860 from one of the host's high ports, so the two cannot be confused."""
    wanted = str(A1111_PORT)
    if isinstance(forwards, dict):
        pairs = [(str(k), str(v)) for k, v in forwards.items()]
        external = next((v for k, v in pairs if k == wanted), None)
        if external is None:
            external = next((k for k, v in pairs if v == wanted), None)
    elif isinstance(forwards, list):
        external = next(
            (
                str(f.get("external_port"))
                for f in forwards
                if isinstance(f, dict) and str(f.get("internal_port")) == wanted
            ),
            None,
        )
    else:
        return None
    return external if external is not None and external.isdigit() else None
