"""RunPod's GPU market over its GraphQL API (``POST https://api.runpod.io/graphql``).

GraphQL, not REST v2: REST v2 has no interruptible (spot) pods, and ``lowestPrice`` (the price
and stock of a GPU type) exists only here. Facts this adapter relies on, and where they come from:

- Auth: ``Authorization: Bearer KEY`` (graphql-spec.runpod.io, "Headers"; runpod/runpod-python
  PR #394 moved the SDK off the ``?api_key=`` query parameter the older docs still show). A key in
  a URL ends up in proxy and access logs, so it never goes there.
- A GraphQL error comes back as HTTP 200 with ``{"errors": [{"message", "path", "extensions"}],
  "data": ...}``; a request GraphQL rejects before running it (an input field the schema does
  not have, a bad variable) comes back as HTTP 400 with the same ``errors`` body
  (runpod/runpod-plugins-official#56); both are typed from their words. A refused key may also
  come back as a plain HTTP 401.
- Out of stock reads "There are no longer any instances available with the requested
  specifications", sometimes with ``extensions.code == "SUPPLY_CONSTRAINT"``.
- Queries and mutations take their input as GraphQL variables (types as in runpod/runpodctl
  ``api/pod.go`` and ``api/cloud.go``), so a label or a command line is never spliced into
  query text.
- A pod placed on a host whose driver is older than its image's CUDA never starts its
  container ("unsatisfied condition: cuda>=12.6", runpod/runpodctl#253) and is billed with
  ``runtime: null`` and no ports for ever. The launch sends ``minCudaVersion`` (dstack does, for
  ``podFindAndDeployOnDemand`` and ``podRentInterruptable`` alike; runpodctl's
  ``CreatePodGQLInput`` has it), and ``lowestPrice`` is asked with the same floor (gpuhunt), so
  price and stock come from hosts that can run the image.
- ``lowestPrice`` without ``secureCloud`` is the lowest over Secure and Community Cloud: it is
  asked with the cloud type we rent (``secureCloud: false`` for COMMUNITY, ``true`` for SECURE,
  omitted for ALL) and the disk we rent (``totalDisk``), as runpodctl's ``get cloud`` does.
  ``stockStatus`` is "High", "Medium" or "Low" when a host has one free; anything else (null,
  the string "None") is out of stock.
- A pod's ``runtime.ports`` appear only once it runs, sometimes later still; the HTTPS proxy
  ``https://{podId}-{port}.proxy.runpod.net`` serves an ``/http`` port and cuts a request at
  100 s (keep one txt2img call well under that).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from subconscious.errors import (
    ConfigurationError,
    MachineGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market.base import LABEL_PREFIX, worker_environment
from subconscious.market.http import DEFAULT_TIMEOUT, ProviderHttp
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.observability import logger

GRAPHQL_URL = "https://api.runpod.io/graphql"
# Where a pod's automatic1111 answers: RunPod's HTTPS proxy. A template, so the local stack
# can point it at its emulated pods ("http://{ip}:{public_port}"); fields: pod_id, port (the
# pod's private port), ip and public_port (from the pod's runtime port mapping).
PROXY_URL = "https://{pod_id}-{port}.proxy.runpod.net"
CLOUD_TYPES = frozenset({"COMMUNITY", "SECURE", "ALL"})

A1111_PORT = 7860
# Image pull + container start + automatic1111 import and model load. Seen: ~52 s for the
# server alone on a warm container, up to 284 s for SD.Next in Docker (PROVIDERS.md); the pull
# of a multi-GB image on a community host comes on top. The planner charges this per machine.
STARTUP_S = 240
# The lowest CUDA version a host's driver must support: that of the worker image's base
# (worker/Dockerfile: nvidia/cuda:12.6.3, whose NVIDIA_REQUIRE_CUDA the container runtime checks
# before starting it). Pass another to the adapter for an image built on another CUDA.
MIN_CUDA_VERSION = "12.6"
# Finding a host and placing a pod takes seconds, longer than a read: give the launch more time.
LAUNCH_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

# The credential travels in the pod's environment, not on its command line: the pod listing
# (``dockerArgs``) and the host's process table would show it there. ``bash -c`` expands it
# inside the container (RunPod splits dockerArgs like a shell, as skypilot's ``bash -c '…'``
# relies on). API only, bound to 0.0.0.0 because the proxy connects from outside the container.
A1111_AUTH_ENV = "A1111_AUTH"
A1111_FLAGS = f"--api --nowebui --listen --port {A1111_PORT}"
DOCKER_ARGS = f"bash -c 'exec python launch.py {A1111_FLAGS} --api-auth \"${A1111_AUTH_ENV}\"'"

_POD_FIELDS = """
    id
    name
    desiredStatus
    costPerHr
    machine { gpuTypeId gpuDisplayName }
    runtime { ports { ip isIpPublic privatePort publicPort type } }
"""

GPU_TYPES_QUERY = """
query GpuTypes($lowestPrice: GpuLowestPriceInput) {
  gpuTypes {
    id
    displayName
    memoryInGb
    communityPrice
    securePrice
    lowestPrice(input: $lowestPrice) { minimumBidPrice uninterruptablePrice stockStatus }
  }
}
"""

# The answers leave out ``env``: it would echo the machine's credential back to us.
ON_DEMAND_MUTATION = """
mutation Deploy($input: PodFindAndDeployOnDemandInput!) {
  podFindAndDeployOnDemand(input: $input) { id desiredStatus costPerHr }
}
"""

INTERRUPTIBLE_MUTATION = """
mutation RentInterruptable($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) { id desiredStatus costPerHr }
}
"""

POD_QUERY = f"""
query Pod($input: PodFilter!) {{
  pod(input: $input) {{{_POD_FIELDS}  }}
}}
"""

MY_PODS_QUERY = f"""
query MyPods {{
  myself {{ pods {{{_POD_FIELDS}  }} }}
}}
"""

TERMINATE_MUTATION = """
mutation Terminate($input: PodTerminateInput!) {
  podTerminate(input: $input)
}
"""

_OUT_OF_STOCK_WORDS = ("no longer any instances available",)
_OUT_OF_STOCK_CODES = frozenset({"SUPPLY_CONSTRAINT"})
_AUTH_WORDS = ("unauthorized", "unauthenticated", "forbidden", "api key")
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN"})
# We never stop or pause a pod: one that is exited, paused (a status skypilot's RunPod provider
# lists beside CREATED, RESTARTING and RUNNING), terminated or dead serves nothing any more.
_ENDED = frozenset({"EXITED", "PAUSED", "TERMINATED", "DEAD"})
_IN_STOCK = frozenset({"HIGH", "MEDIUM", "LOW"})
_MESSAGE_CHARS = 300  # enough to read, not enough to carry a stray blob into logs


class RunPodProvider:
    name = "runpod"

    def __init__(
        self,
        api_key: str,
        *,
        url: str = GRAPHQL_URL,
        image: str,
        container_disk_gb: int = 40,
        cloud_type: str = "COMMUNITY",
        min_cuda_version: str = MIN_CUDA_VERSION,
        proxy_url: str = PROXY_URL,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigurationError("runpod: no API key configured")
        if cloud_type not in CLOUD_TYPES:
            raise ConfigurationError(f"runpod: cloud_type must be one of {sorted(CLOUD_TYPES)}")
        try:
            proxy_url.format(pod_id="p", port=A1111_PORT, ip="127.0.0.1", public_port=1)
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigurationError(f"runpod: a bad proxy URL template: {error}") from error
        self._proxy_url = proxy_url
        self._api_key = api_key
        self._url = url
        self._image = image
        self._container_disk_gb = container_disk_gb
        self._cloud_type = cloud_type
        self._min_cuda_version = min_cuda_version
        # Sent with every request, so an injected client needs no setup to be authenticated.
        self._headers = {"Authorization": f"Bearer {api_key}"}
        client = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._http = _GraphQLHttp(self.name, client, sleep=sleep)
        # A mutation that failed with a 5xx may still have rented the pod (a gateway can time
        # out after RunPod acted). Retrying would rent a second one, so a launch is sent once
        # and any doubt goes back to the caller; Teardown finds a stray pod by its label.
        self._launch_http = _GraphQLHttp(self.name, client, attempts=1, sleep=sleep)

    # --- offers ---
    def list_offers(self) -> list[Offer]:
        # Price and stock of the cloud we rent in, for the disk we rent, on hosts whose driver
        # runs the image: the same constraints the launch sends.
        lowest: dict[str, Any] = {
            "gpuCount": 1,
            "totalDisk": self._container_disk_gb,
            "minCudaVersion": self._min_cuda_version,
        }
        if self._cloud_type != "ALL":
            lowest["secureCloud"] = self._cloud_type == "SECURE"
        data = self._graphql("gpuTypes", GPU_TYPES_QUERY, {"lowestPrice": lowest})
        gpu_types = data.get("gpuTypes")
        if not isinstance(gpu_types, list):
            raise ProviderError("runpod: gpuTypes answered without a list")
        offers = []
        for gpu_type in gpu_types:
            offer = self._offer(gpu_type)
            if offer is not None:
                offers.append(offer)
        return offers

    def _offer(self, gpu_type: Any) -> Offer | None:
        try:
            lowest = gpu_type.get("lowestPrice") or {}
            # "High", "Medium" or "Low" when a host has one free; null or "None" when none has
            if str(lowest.get("stockStatus") or "").upper() not in _IN_STOCK:
                return None
            price = lowest.get("uninterruptablePrice") or self._listed_price(gpu_type)
            if not price:
                return None  # no price we could be charged: not an offer
            min_bid = lowest.get("minimumBidPrice")
            return Offer(
                provider=self.name,
                offer_id=gpu_type["id"],
                gpu=gpu_type["displayName"],
                gpu_count=1,
                gpu_memory_gb=int(gpu_type["memoryInGb"]),
                usd_per_hour=_money(price),
                # RunPod answers 0 or null when no host takes bids for this type right now
                interruptible=bool(min_bid),
                min_bid_usd_per_hour=_money(min_bid) if min_bid else None,
                location="global",  # the price is the lowest over all RunPod's data centres
                startup_s=STARTUP_S,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ProviderError("runpod: gpuTypes answered an unexpected shape") from error

    def _listed_price(self, gpu_type: dict[str, Any]) -> Any:
        """The type's list price in the cloud we rent in (the lower of both for ALL)."""
        community, secure = gpu_type.get("communityPrice"), gpu_type.get("securePrice")
        if self._cloud_type == "COMMUNITY":
            return community
        if self._cloud_type == "SECURE":
            return secure
        listed = [p for p in (community, secure) if p]
        return min(listed, key=_money) if listed else None

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
        spec: dict[str, Any] = {
            "name": label,
            "imageName": self._image,
            "gpuTypeId": offer.offer_id,
            "gpuCount": 1,
            "cloudType": self._cloud_type,
            "containerDiskInGb": self._container_disk_gb,
            # Only on a host whose driver runs the image's CUDA: elsewhere the container never
            # starts, and the pod is billed with no runtime and no ports until torn down.
            "minCudaVersion": self._min_cuda_version,
            # No persistent volume: nothing of a tenant's outlives the pod, and none is billed.
            "volumeInGb": 0,
            "ports": f"{A1111_PORT}/http",  # http, so the HTTPS proxy serves it; no SSH port
            "dockerArgs": DOCKER_ARGS,
            "env": [
                {"key": A1111_AUTH_ENV, "value": api_auth},
                *({"key": k, "value": v} for k, v in worker_environment(worker_env).items()),
            ],
        }
        if bid_usd_per_hour is None:
            operation, mutation = "podFindAndDeployOnDemand", ON_DEMAND_MUTATION
        else:
            operation, mutation = "podRentInterruptable", INTERRUPTIBLE_MUTATION
            spec["bidPerGpu"] = float(bid_usd_per_hour)  # the wire wants a JSON number
        logger.info(
            "runpod: renting",
            label=label,
            gpu_type=offer.offer_id,
            interruptible=bid_usd_per_hour is not None,
            bid_usd_per_hour=None if bid_usd_per_hour is None else str(bid_usd_per_hour),
        )
        try:
            data = self._graphql(
                operation,
                mutation,
                {"input": spec},
                secrets=(api_auth,),
                http=self._launch_http,
                timeout=LAUNCH_TIMEOUT,
                retry_timeouts=False,  # the answer may be lost after the pod was rented
            )
        except ProviderDown as error:
            raise ProviderDown(
                f"runpod: {operation} for {label} failed without a clear answer; a pod may exist"
                " under that label"
            ) from error
        pod = data.get(operation)
        if not isinstance(pod, dict):
            # Seen in the wild: a refusal for want of capacity as a null result without an error.
            raise OutOfCapacity(f"runpod: {operation} rented nothing for {offer.offer_id}")
        try:
            machine = Machine(
                provider=self.name,
                machine_id=pod["id"],
                offer_id=offer.offer_id,
                label=label,
                status=MachineStatus.STARTING,  # ports come later; status() says when it serves
                usd_per_hour=_money(pod.get("costPerHr") or bid_usd_per_hour or offer.usd_per_hour),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProviderError(f"runpod: {operation} answered an unexpected shape") from error
        logger.info("runpod: rented", label=label, machine_id=machine.machine_id)
        return machine

    def status(self, machine_id: str) -> Machine:
        return self._machine(self._pod(machine_id))

    def terminate(self, machine_id: str) -> None:
        try:
            self._graphql("podTerminate", TERMINATE_MUTATION, {"input": {"podId": machine_id}})
        except (ProviderAuthError, ProviderDown, ProviderRateLimited):
            raise
        except MachineGone:
            return
        except ProviderError as error:
            # RunPod does not document what terminating a pod it no longer has answers, so ask
            # for the pod rather than guess from the wording of the error.
            try:
                pod = self._pod(machine_id)
            except MachineGone:
                return
            if pod.get("desiredStatus") == "TERMINATED":
                return
            raise error

    def machines(self, label: str | None = None) -> list[Machine]:
        data = self._graphql("myself", MY_PODS_QUERY)
        myself = data.get("myself")
        pods = myself.get("pods") if isinstance(myself, dict) else None
        if not isinstance(pods, list):
            raise ProviderError("runpod: myself answered without a list of pods")
        return [self._machine(pod) for pod in pods if _ours(pod, label)]

    # --- plumbing ---
    def _pod(self, machine_id: str) -> dict[str, Any]:
        data = self._graphql("pod", POD_QUERY, {"input": {"podId": machine_id}})
        pod = data.get("pod")
        if pod is None:
            raise MachineGone(f"runpod: no pod {machine_id}")
        if not isinstance(pod, dict):
            raise ProviderError("runpod: pod answered an unexpected shape")
        return pod

    def _machine(self, pod: Any) -> Machine:
        try:
            hardware = pod.get("machine") or {}
            status = _status(pod)
            return Machine(
                provider=self.name,
                machine_id=pod["id"],
                offer_id=hardware.get("gpuTypeId") or "",
                label=pod.get("name") or "",
                status=status,
                url=self._serving_url(pod) if status is MachineStatus.RUNNING else None,
                usd_per_hour=_money(pod.get("costPerHr") or 0),  # null once a pod has ended
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ProviderError("runpod: a pod answered an unexpected shape") from error

    def _serving_url(self, pod: dict[str, Any]) -> str:
        mapping = _a1111_port(pod) or {}
        return self._proxy_url.format(
            pod_id=pod["id"],
            port=A1111_PORT,
            ip=mapping.get("ip") or "",
            public_port=mapping.get("publicPort") or "",
        )

    def _graphql(
        self,
        operation: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        secrets: Iterable[str] = (),
        http: ProviderHttp | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """POST one operation; return its ``data`` or raise a typed error for its ``errors``."""
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        body = (http or self._http).json(
            "POST", self._url, json=payload, headers=self._headers, **kwargs
        )
        if not isinstance(body, dict):
            raise ProviderError(f"runpod: {operation} answered an unexpected shape")
        errors = body.get("errors")
        if errors:
            raise self._error(operation, errors, (self._api_key, *secrets))
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(f"runpod: {operation} answered without data")
        return data

    def _error(self, operation: str, errors: Any, secrets: tuple[str, ...]) -> ProviderError:
        """GraphQL reports failures with HTTP 200 (400 for a request rejected before it ran):
        type them from the message and code."""
        if not isinstance(errors, list):
            return ProviderError(f"runpod: {operation} answered an unexpected shape")
        messages = []
        codes = set()
        for error in errors:
            if isinstance(error, dict):
                messages.append(str(error.get("message", "")))
                extensions = error.get("extensions")
                if isinstance(extensions, dict):
                    codes.add(str(extensions.get("code", "")).upper())
            else:
                messages.append(str(error))
        text = _scrub("; ".join(messages), secrets)
        lowered = text.lower()
        logger.warning(
            "runpod: request refused", operation=operation, error=text, codes=sorted(codes)
        )
        if codes & _OUT_OF_STOCK_CODES or any(w in lowered for w in _OUT_OF_STOCK_WORDS):
            return OutOfCapacity(f"runpod: {operation}: {text}")
        if codes & _AUTH_CODES or any(w in lowered for w in _AUTH_WORDS):
            return ProviderAuthError(f"runpod: {operation} refused (check the API key): {text}")
        return ProviderError(f"runpod: {operation}: {text}")


class _GraphQLHttp(ProviderHttp):
    """``ProviderHttp`` that hands a 400 carrying GraphQL ``errors`` back to the caller, so its
    words type the error like those of a 200 (a 400 without them keeps the shared mapping)."""

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        if response.status_code == 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
                return response
        return super()._check(method, response)


def proxy_url(pod_id: str) -> str:
    """The HTTPS proxy in front of the pod's automatic1111 port (TLS comes from RunPod)."""
    return PROXY_URL.format(pod_id=pod_id, port=A1111_PORT)


def _status(pod: dict[str, Any]) -> MachineStatus:
    desired = pod.get("desiredStatus")
    if desired in _ENDED:
        # A pod ends on its own (crash, a spot host reclaimed) or by us; RunPod does not say
        # which, and either way nothing serves there any more.
        return MachineStatus.EXITED
    if desired == "RUNNING" and _serves(pod):
        return MachineStatus.RUNNING
    # CREATED, RESTARTING, or RUNNING before the port is mapped: the caller keeps waiting,
    # bounded by its own start-up deadline.
    return MachineStatus.STARTING


def _serves(pod: dict[str, Any]) -> bool:
    return _a1111_port(pod) is not None


def _a1111_port(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The runtime port mapping of the automatic1111 port, once RunPod reports one."""
    runtime = pod.get("runtime") or {}
    ports = runtime.get("ports") or []
    return next((port for port in ports if port.get("privatePort") == A1111_PORT), None)


def _ours(pod: Any, label: str | None) -> bool:
    name = pod.get("name") if isinstance(pod, dict) else None
    if not isinstance(name, str):
        return False
    if label is not None:
        return name == label
    return name.startswith(LABEL_PREFIX)


def _money(value: Any) -> Decimal:
    """Dollars as an exact Decimal: through str(), so a float's binary noise never gets in."""
    try:
        return Decimal(str(value))
    except InvalidOperation as error:
        raise ValueError(f"not an amount: {value!r}") from error


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_MESSAGE_CHARS]
