"""RunPod's GPU market: on-demand pods over REST v2, interruptible pods over GraphQL, one adapter.

Why two APIs. REST v2 (``https://api.runpod.io/v2``) is generally available since 2026-08-18;
REST v1 (``https://rest.runpod.io/v1``) retires on 2026-11-15 and GraphQL "in early 2027"
(runpod/docs ``release-notes.mdx`` @ a900806e253c4f8c16da27d1a4370e72456da4cb). REST v2 has no
spot pods and no minimum bid: "Spot / interruptible pods ... none" (runpod/runpod-plugins-official
``plugins/runpod/skills/runpod-migrate/reference/breaking-changes.md`` @
8be10ce686487bc75fcd63e06297b1fee13ea12e, Class 3; ``graphql-to-v2.md``: keep
``podRentInterruptable`` on GraphQL). Everything GraphQL lives in :class:`_GraphQLInterruptible`,
built on one line of ``RunPodProvider.__init__`` (not at all with ``url=None``): delete that line
and the class, and the adapter rents on-demand only. Pods are read, listed and terminated over
REST whichever API created them.

REST v2 (runpod/docs ``api-reference-v2/openapi.json`` @ a900806e, "Frontdoor v2.9.0"):

- Auth: ``Authorization: Bearer KEY`` only; a key in a URL ends up in access logs, so it never
  goes there.
- Offers: ``GET /v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud=C&count=1&minCudaVersion=V``
  → ``{"gpus": [{id, name, memory, secure, community, price: {secure, community},
  availability}]}``: list prices per cloud (GraphQL's ``uninterruptablePrice``, per the migration
  guide), ``availability`` ``HIGH``/``MEDIUM``/``LOW``/``NONE`` scoped to the cloud, GPU count and
  CUDA floor asked. There is no disk filter (GraphQL's ``totalDisk`` has no counterpart). ``cloud``
  is SECURE or COMMUNITY (SECURE when omitted): ``ALL`` asks both and keeps the cheaper in stock.
- Launch: ``POST /v2/pods`` ``{name, image, cloud, gpu: {id, count, minCudaVersion}, disk,
  ports: ["7860/http"], env: {...}, args}`` → 201 with the pod. No ``mounts``: no persistent
  volume (nothing of a tenant's outlives the pod, and none is billed). ``cloud: ALL`` is gone, so
  for ALL the launch tries the clouds cheapest first and moves on only when one is out of stock.
- A pod: ``{id, name, status, gpu: {id, count}, cost, runtime: {ports: [{private, public, type,
  ip}]} | null, env, args, ...}``; ``status`` is observed, not desired: PROVISIONING, STARTING,
  RUNNING ("container is healthy"), EXITED, ERROR ("unrecoverable"), TERMINATED. ``GET
  /v2/pods/{id}`` (404 once gone), ``GET /v2/pods`` → ``{"pods": [...]}`` (query filters are
  ignored: ours are picked by name here), ``DELETE /v2/pods/{id}`` → 204 (404 once gone).
- Errors (RFC 9457): ``{title, status, detail, errors?}``. 400 is a broken rule or no capacity:
  "There are no longer any instances available with the requested specifications. Please refresh
  and try again." (breaking-changes.md, observed 2026-08-18); 422 a body that does not match;
  402 no balance; 429 carries ``Retry-After``.
- A pod read echoes ``env`` and ``args``, so the machine's credential comes back in every read
  and listing: answers are never logged, and a pod is read into a :class:`Machine`, which has no
  room for it.
- A pod placed on a host whose driver is older than its image's CUDA never starts its container
  ("unsatisfied condition: cuda>=12.6", runpod/runpodctl#253) and bills with no ports for ever:
  the launch sends ``gpu.minCudaVersion`` (a numeric floor; ``allowedCudaVersions`` is an exact
  set), and the catalog is asked with the same floor, so price and stock come from hosts that
  can run the image. A pod RUNNING that never maps its port reads RUNNING without a URL: the
  run's serve deadline, counted from RUNNING, bounds what it costs.
- The HTTPS proxy ``https://{podId}-{port}.proxy.runpod.net`` serves an ``/http`` port and cuts
  a request at 100 s (keep one txt2img call well under that).

GraphQL (``POST https://api.runpod.io/graphql``), for interruptible pods alone. Its days may be
numbered sooner than GraphQL's: runpod/docs dropped every spot-pod page on 2026-05-06 (8e5aebdb)
and a RunPod maintainer called ``podRentInterruptable`` "being removed" (runpod/runpodctl#267).
Should it go, a bid launch fails with GraphQL's error and a listing without bids still lists.

- ``podRentInterruptable`` with ``bidPerGpu`` rents one; ``gpuTypes { lowestPrice(input) {
  minimumBidPrice stockStatus } }`` gives the minimum bids, asked with the cloud (``secureCloud``),
  disk (``totalDisk``) and CUDA floor (``minCudaVersion``) we rent with (dstack, gpuhunt,
  runpodctl ``api/cloud.go``). Variables, never spliced query text.
- An error comes back as HTTP 200 with ``{"errors": [{"message", "path", "extensions"}]}``, or
  as HTTP 400 for a request rejected before it ran (runpod/runpod-plugins-official#56); both are
  typed from their words ("There are no longer any instances available ...", sometimes with
  ``extensions.code == "SUPPLY_CONSTRAINT"``).

The start command (``START_COMMAND``, ``python launch.py --api --nowebui --listen --port 7860``)
goes as REST's ``args`` and as GraphQL's ``dockerArgs`` alike, the credential as
``COMMANDLINE_ARGS`` in the pod's env. Both fields replace the image's CMD, not its ENTRYPOINT
(``args``: "Arguments passed to the container entrypoint"; ``dockerArgs`` maps to ``args``; the
console's "container start command ... overrides the default CMD", runpod/docs
``pods/templates/manage-templates.mdx``); RunPod splits them like a shell (``bash -lc 'python
/app/render.py'`` in the migration guide), and plain words split the same under any rule. So
the image contract of ``worker/README.md`` holds: an ENTRYPOINT runs a command it is given (or
there is none), and ``launch.py`` is in the working directory
(``tests/worker/test_entrypoint_contract.py``).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

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
from subconscious.market.base import Provider, worker_environment
from subconscious.market.http import DEFAULT_TIMEOUT, ProviderHttp
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.models.labels import LABEL_PREFIX
from subconscious.observability import logger

REST_URL = "https://api.runpod.io/v2"
GRAPHQL_URL = "https://api.runpod.io/graphql"
# Where a pod's automatic1111 answers: RunPod's HTTPS proxy. A template, so the local stack
# can point it at its emulated pods ("http://{ip}:{public_port}"); fields: pod_id, port (the
# pod's private port), ip and public_port (from the pod's runtime port mapping).
PROXY_URL = "https://{pod_id}-{port}.proxy.runpod.net"
CLOUD_TYPES = frozenset({"COMMUNITY", "SECURE", "ALL"})
# REST v2 rents in one cloud at a time; ALL tries both, the community cloud first unless the
# last listing found the secure one cheaper.
REST_CLOUDS = ("COMMUNITY", "SECURE")

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

# The start command: automatic1111's launcher, API only, bound to 0.0.0.0 because the proxy
# connects from outside the container. The credential rides in COMMANDLINE_ARGS, which the
# launcher (and the lean worker) append to their own arguments, as Vast's adapter sends it: so
# it is on no process's command line, and the start command is the same for every pod. (A pod
# read echoes env and args alike: RunPod's answers are never logged.)
A1111_FLAGS = f"--api --nowebui --listen --port {A1111_PORT}"
START_COMMAND = f"python launch.py {A1111_FLAGS}"
CREDENTIAL_ENV = "COMMANDLINE_ARGS"

# --- GraphQL: interruptible pods only ---
MIN_BIDS_QUERY = """
query MinimumBids($lowestPrice: GpuLowestPriceInput) {
  gpuTypes {
    id
    lowestPrice(input: $lowestPrice) { minimumBidPrice stockStatus }
  }
}
"""

# The answer leaves out ``env``: it would echo the machine's credential back to us.
INTERRUPTIBLE_MUTATION = """
mutation RentInterruptable($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) { id desiredStatus costPerHr }
}
"""

_OUT_OF_STOCK_WORDS = ("no longer any instances available",)
_OUT_OF_STOCK_CODES = frozenset({"SUPPLY_CONSTRAINT"})
_AUTH_WORDS = ("unauthorized", "unauthenticated", "forbidden", "api key")
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN"})
# We never stop a pod: one that exited, failed for good or was terminated serves nothing any
# more (a crash, a reclaimed spot host, or us).
_ENDED = frozenset({"EXITED", "ERROR", "TERMINATED"})
_IN_STOCK = frozenset({"HIGH", "MEDIUM", "LOW"})
_REST_ERRORS: dict[int, type[ProviderError]] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    404: MachineGone,
    429: ProviderRateLimited,
}
_MESSAGE_CHARS = 300  # enough to read, not enough to carry a stray blob into logs


class RunPodProvider(Provider):
    name = "runpod"

    def __init__(
        self,
        api_key: str,
        *,
        rest_url: str = REST_URL,
        url: str | None = GRAPHQL_URL,
        image: str,
        container_disk_gb: int = 40,
        cloud_type: str = "COMMUNITY",
        min_cuda_version: str = MIN_CUDA_VERSION,
        proxy_url: str = PROXY_URL,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``rest_url``: REST v2's root (``.../v2``). ``url``: GraphQL's endpoint, used only for
        interruptible pods and their minimum bids; None (or "") rents on-demand only."""
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
        self._rest_url = rest_url.rstrip("/")
        self._url = url  # GraphQL's, for interruptible pods alone
        self._image = image
        self._container_disk_gb = container_disk_gb
        self._cloud_type = cloud_type
        self._min_cuda_version = min_cuda_version
        self._sleep = sleep
        # Sent with every request, so an injected client needs no setup to be authenticated.
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._client = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._rest = _RestHttp(self.name, self._client, sleep=sleep, secrets=(api_key,))
        # For ALL: the clouds to try per GPU type, cheapest in stock first (the last listing's).
        self._cloud_order: dict[str, tuple[str, ...]] = {}
        # The one place GraphQL comes in: drop this line (and _GraphQLInterruptible) once RunPod
        # retires GraphQL or REST gains interruptible pods.
        self._interruptible = (
            _GraphQLInterruptible(url, api_key, self._client, sleep) if url else None
        )

    # --- offers ---
    def list_offers(self) -> list[Offer]:
        # Price and stock of the cloud we rent in, on hosts whose driver runs the image: the same
        # constraints the launch sends.
        clouds = REST_CLOUDS if self._cloud_type == "ALL" else (self._cloud_type,)
        listed: dict[str, tuple[dict[str, Any], list[tuple[Decimal, str]]]] = {}
        for cloud in clouds:
            for gpu in self._catalog(cloud):
                price = _in_stock_price(gpu, cloud)
                _, prices = listed.setdefault(gpu["id"], (gpu, []))
                if price is not None:
                    prices.append((price, cloud))
        bids = self._minimum_bids()
        offers = []
        for type_id, (gpu, prices) in listed.items():
            if not prices:
                continue
            prices.sort()
            self._cloud_order[type_id] = tuple(cloud for _, cloud in prices)
            min_bid = bids.get(type_id)
            try:
                offers.append(
                    Offer(
                        provider=self.name,
                        offer_id=type_id,
                        gpu=gpu["name"],
                        gpu_count=1,
                        gpu_memory_gb=int(gpu["memory"]),
                        usd_per_hour=prices[0][0],
                        interruptible=min_bid is not None,
                        min_bid_usd_per_hour=min_bid,
                        location="global",  # the price is RunPod's list price in every data centre
                        startup_s=STARTUP_S,
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ProviderError(
                    "runpod: the GPU catalog answered an unexpected shape"
                ) from error
        return offers

    def _catalog(self, cloud: str) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {
            "include": "AVAILABILITY",
            "product": "POD",  # required with AVAILABILITY: stock differs per product
            "cloud": cloud,
            "count": 1,
            "minCudaVersion": self._min_cuda_version,
        }
        body = self._rest.json(
            "GET", f"{self._rest_url}/catalog/gpus", params=params, headers=self._headers
        )
        gpus = body.get("gpus") if isinstance(body, dict) else None
        if not isinstance(gpus, list) or not all(
            isinstance(gpu, dict) and isinstance(gpu.get("id"), str) for gpu in gpus
        ):
            raise ProviderError("runpod: the GPU catalog answered an unexpected shape")
        return gpus

    def _minimum_bids(self) -> dict[str, Decimal]:
        """Per GPU type, the lowest bid an interruptible pod takes now; none without GraphQL."""
        if self._interruptible is None:
            return {}
        lowest: dict[str, Any] = {
            "gpuCount": 1,
            "totalDisk": self._container_disk_gb,
            "minCudaVersion": self._min_cuda_version,
        }
        if self._cloud_type != "ALL":
            lowest["secureCloud"] = self._cloud_type == "SECURE"
        try:
            return self._interruptible.minimum_bids(lowest)
        except ProviderError as error:
            # On-demand offers do not depend on GraphQL: list them without bids.
            logger.warning(
                "runpod: no minimum bids, interruptible offers left out", error=str(error)
            )
            return {}

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
        env = {CREDENTIAL_ENV: f"--api-auth {shlex.quote(api_auth)}"}
        env.update(worker_environment(worker_env))
        interruptible = bid_usd_per_hour is not None
        logger.info(
            "runpod: renting",
            label=label,
            gpu_type=offer.offer_id,
            interruptible=interruptible,
            bid_usd_per_hour=None if bid_usd_per_hour is None else str(bid_usd_per_hour),
        )
        if bid_usd_per_hour is None:
            pod = self._create_pod(offer, label, env, api_auth)
            cost = pod.get("cost")
        else:
            if self._interruptible is None:
                raise ProviderError("runpod: interruptible pods need GraphQL, which is not set up")
            pod = self._interruptible.rent(
                self._interruptible_spec(offer, label, env, bid_usd_per_hour), api_auth
            )
            cost = pod.get("costPerHr")
        try:
            machine = Machine(
                provider=self.name,
                machine_id=pod["id"],
                offer_id=offer.offer_id,
                label=label,
                status=MachineStatus.STARTING,  # ports come later; status() says when it serves
                usd_per_hour=_money(cost or bid_usd_per_hour or offer.usd_per_hour),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProviderError("runpod: the launch answered an unexpected shape") from error
        logger.info("runpod: rented", label=label, machine_id=machine.machine_id)
        return machine

    def _create_pod(
        self, offer: Offer, label: str, env: dict[str, str], api_auth: str
    ) -> dict[str, Any]:
        # A create that failed with a 5xx or a timeout may still have placed the pod (a gateway
        # can time out after RunPod acted). Retrying would rent a second one, so it is sent once
        # and any doubt goes back to the caller; Teardown finds a stray pod by its label.
        http = _RestHttp(
            self.name,
            self._client,
            attempts=1,
            sleep=self._sleep,
            secrets=(self._api_key, api_auth),
        )
        refused: OutOfCapacity | None = None
        for cloud in self._clouds(offer.offer_id):
            body = {
                "name": label,
                "image": self._image,
                "cloud": cloud,
                "gpu": {
                    "id": offer.offer_id,
                    "count": 1,
                    # Only on a host whose driver runs the image's CUDA: elsewhere the container
                    # never starts, and the pod bills with no ports until torn down.
                    "minCudaVersion": self._min_cuda_version,
                },
                "disk": self._container_disk_gb,
                "ports": [f"{A1111_PORT}/http"],  # http, so the HTTPS proxy serves it; no SSH
                "env": env,
                "args": START_COMMAND,
            }
            try:
                pod = http.json(
                    "POST",
                    f"{self._rest_url}/pods",
                    json=body,
                    headers=self._headers,
                    timeout=LAUNCH_TIMEOUT,
                    retry_timeouts=False,  # the answer may be lost after the pod was placed
                )
            except OutOfCapacity as error:
                refused = error  # nothing was placed: the next cloud may have one
                continue
            except ProviderDown as error:
                raise ProviderDown(
                    f"runpod: creating a pod for {label} failed without a clear answer; a pod may"
                    " exist under that label"
                ) from error
            if not isinstance(pod, dict):
                raise ProviderError("runpod: the pod create answered an unexpected shape")
            return pod
        assert refused is not None  # _clouds() names at least one cloud
        raise refused

    def _clouds(self, type_id: str) -> tuple[str, ...]:
        if self._cloud_type != "ALL":
            return (self._cloud_type,)
        return self._cloud_order.get(type_id) or REST_CLOUDS

    def _interruptible_spec(
        self, offer: Offer, label: str, env: dict[str, str], bid: Decimal
    ) -> dict[str, Any]:
        """``podRentInterruptable``'s input: the REST body in GraphQL's words, plus the bid."""
        return {
            "name": label,
            "imageName": self._image,
            "gpuTypeId": offer.offer_id,
            "gpuCount": 1,
            "cloudType": self._cloud_type,  # GraphQL still knows ALL
            "containerDiskInGb": self._container_disk_gb,
            "minCudaVersion": self._min_cuda_version,
            "volumeInGb": 0,  # no persistent volume, as on REST
            "ports": f"{A1111_PORT}/http",
            "dockerArgs": START_COMMAND,
            "env": [{"key": key, "value": value} for key, value in env.items()],
            "bidPerGpu": float(bid),  # the wire wants a JSON number
        }

    def status(self, machine_id: str) -> Machine:
        return self._machine(self._pod(machine_id))

    def terminate(self, machine_id: str) -> None:
        try:
            self._rest.request("DELETE", self._pod_url(machine_id), headers=self._headers)
        except (ProviderAuthError, ProviderDown, ProviderRateLimited):
            raise
        except MachineGone:
            return
        except ProviderError as error:
            # A refusal (a 409, say) for a pod that is gone anyway is not an error: ask for the
            # pod rather than guess from the wording.
            try:
                pod = self._pod(machine_id)
            except MachineGone:
                return
            if pod.get("status") == "TERMINATED":
                return
            raise error

    def machines(self, label: str | None = None) -> list[Machine]:
        body = self._rest.json("GET", f"{self._rest_url}/pods", headers=self._headers)
        pods = body.get("pods") if isinstance(body, dict) else None
        if not isinstance(pods, list):
            raise ProviderError("runpod: the pod list answered without a list of pods")
        return [self._machine(pod) for pod in pods if _ours(pod, label)]

    # --- plumbing ---
    def _pod_url(self, machine_id: str) -> str:
        if not machine_id:
            raise MachineGone("runpod: no pod ''")
        return f"{self._rest_url}/pods/{quote(machine_id, safe='')}"

    def _pod(self, machine_id: str) -> dict[str, Any]:
        pod = self._rest.json("GET", self._pod_url(machine_id), headers=self._headers)
        if not isinstance(pod, dict):
            raise ProviderError("runpod: a pod answered an unexpected shape")
        return pod

    def _machine(self, pod: dict[str, Any]) -> Machine:
        try:
            status = _status(pod)
            return Machine(
                provider=self.name,
                machine_id=pod["id"],
                offer_id=(pod.get("gpu") or {}).get("id") or "",
                label=pod.get("name") or "",
                status=status,
                url=(
                    self._serving_url(pod)
                    if status is MachineStatus.RUNNING and _a1111_port(pod) is not None
                    else None
                ),
                usd_per_hour=_money(pod.get("cost") or 0),  # 0 once a pod has ended
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ProviderError("runpod: a pod answered an unexpected shape") from error

    def _serving_url(self, pod: dict[str, Any]) -> str:
        mapping = _a1111_port(pod) or {}
        return self._proxy_url.format(
            pod_id=pod["id"],
            port=A1111_PORT,
            ip=mapping.get("ip") or "",
            public_port=mapping.get("public") or "",
        )


class _GraphQLInterruptible:
    """What still needs RunPod's GraphQL API: interruptible pods and their minimum bids. REST v2
    has neither; the rest of the adapter never comes here."""

    def __init__(
        self, url: str, api_key: str, client: httpx.Client, sleep: Callable[[float], None]
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = _GraphQLHttp(RunPodProvider.name, client, sleep=sleep)
        # Sent once, for the reason a REST create is (RunPodProvider._create_pod).
        self._rent_http = _GraphQLHttp(RunPodProvider.name, client, attempts=1, sleep=sleep)

    def minimum_bids(self, lowest_price: dict[str, Any]) -> dict[str, Decimal]:
        data = self._graphql("gpuTypes", MIN_BIDS_QUERY, {"lowestPrice": lowest_price})
        gpu_types = data.get("gpuTypes")
        if not isinstance(gpu_types, list):
            raise ProviderError("runpod: gpuTypes answered without a list")
        bids = {}
        try:
            for gpu_type in gpu_types:
                lowest = gpu_type.get("lowestPrice") or {}
                # "High", "Medium" or "Low" when a host has one free; null or "None" when none has
                in_stock = str(lowest.get("stockStatus") or "").upper() in _IN_STOCK
                min_bid = lowest.get("minimumBidPrice")
                # RunPod answers 0 or null when no host takes bids for this type right now
                if in_stock and min_bid:
                    bids[str(gpu_type["id"])] = _money(min_bid)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ProviderError("runpod: gpuTypes answered an unexpected shape") from error
        return bids

    def rent(self, spec: dict[str, Any], api_auth: str) -> dict[str, Any]:
        operation = "podRentInterruptable"
        try:
            data = self._graphql(
                operation,
                INTERRUPTIBLE_MUTATION,
                {"input": spec},
                secrets=(api_auth,),
                http=self._rent_http,
                timeout=LAUNCH_TIMEOUT,
                retry_timeouts=False,  # the answer may be lost after the pod was rented
            )
        except ProviderDown as error:
            raise ProviderDown(
                f"runpod: {operation} for {spec['name']} failed without a clear answer; a pod"
                " may exist under that label"
            ) from error
        pod = data.get(operation)
        if not isinstance(pod, dict):
            # Seen in the wild: a refusal for want of capacity as a null result without an error.
            raise OutOfCapacity(f"runpod: {operation} rented nothing for {spec['gpuTypeId']}")
        return pod

    def _graphql(
        self,
        operation: str,
        query: str,
        variables: dict[str, Any],
        *,
        secrets: Iterable[str] = (),
        http: ProviderHttp | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """POST one operation; return its ``data`` or raise a typed error for its ``errors``."""
        payload = {"query": query, "variables": variables}
        body = (http or self._http).json(
            "POST", self._url, json=payload, headers=self._headers, **kwargs
        )
        if not isinstance(body, dict):
            raise ProviderError(f"runpod: {operation} answered an unexpected shape")
        errors = body.get("errors")
        if errors:
            raise _graphql_error(operation, errors, (self._api_key, *secrets))
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(f"runpod: {operation} answered without data")
        return data


def _graphql_error(operation: str, errors: Any, secrets: tuple[str, ...]) -> ProviderError:
    """GraphQL reports failures with HTTP 200 (400 for a request rejected before it ran): type
    them from the message and code."""
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
    logger.warning("runpod: request refused", operation=operation, error=text, codes=sorted(codes))
    if codes & _OUT_OF_STOCK_CODES or _out_of_stock(text):
        return OutOfCapacity(f"runpod: {operation}: {text}")
    if codes & _AUTH_CODES or any(w in text.lower() for w in _AUTH_WORDS):
        return ProviderAuthError(f"runpod: {operation} refused (check the API key): {text}")
    return ProviderError(f"runpod: {operation}: {text}")


class _GraphQLHttp(ProviderHttp):
    """``ProviderHttp`` that hands a 400 carrying GraphQL ``errors`` back to the caller, so its
    words type the error like those of a 200 (a 400 without them keeps the shared mapping)."""

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        if response.status_code == 400:
            body = _json_or_none(response)
            if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
                return response
        return super()._check(method, response)


class _RestHttp(ProviderHttp):
    """``ProviderHttp`` that reads REST v2's problem body into the typed error: the shared status
    mapping, a 400 whose ``detail`` says out of stock as :class:`OutOfCapacity`, and the words
    (secrets scrubbed) in the message."""

    def __init__(self, *args: Any, secrets: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secrets = secrets

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        detail = _scrub(_problem_text(_json_or_none(response)), self._secrets)
        kind = _REST_ERRORS.get(status) or (ProviderDown if status >= 500 else ProviderError)
        if kind is ProviderError and _out_of_stock(detail):
            kind = OutOfCapacity
        message = f"{self.provider}: {method} answered {status}"
        if kind is ProviderAuthError:
            message += " (check the API key)"
        if detail:
            message += f": {detail}"
        if kind is not MachineGone:  # a pod that is gone is an answer, not a refusal
            logger.warning("runpod: request refused", method=method, status=status, error=detail)
        raise kind(message)


def proxy_url(pod_id: str) -> str:
    """The HTTPS proxy in front of the pod's automatic1111 port (TLS comes from RunPod)."""
    return PROXY_URL.format(pod_id=pod_id, port=A1111_PORT)


def _in_stock_price(gpu: dict[str, Any], cloud: str) -> Decimal | None:
    """The type's list price in ``cloud`` if a host there has one free now, else None."""
    key = cloud.lower()  # "community" / "secure"
    try:
        if gpu.get(key) is False:  # not sold in this cloud at all
            return None
        if str(gpu.get("availability") or "").upper() not in _IN_STOCK:
            return None
        price = (gpu.get("price") or {}).get(key)
        if not price:
            return None  # no price we could be charged: not an offer
        return _money(price)
    except (AttributeError, ValueError) as error:
        raise ProviderError("runpod: the GPU catalog answered an unexpected shape") from error


def _status(pod: dict[str, Any]) -> MachineStatus:
    status = pod.get("status")
    if status in _ENDED:
        # A pod ends on its own (crash, a spot host reclaimed) or by us; RunPod does not say
        # which, and either way nothing serves there any more.
        return MachineStatus.EXITED
    if status == "RUNNING":
        # v2's RUNNING is observed ("container is healthy"): billed from here. Without the
        # port mapped it has no URL yet, and the run's serve deadline, counted from RUNNING,
        # bounds a pod that never maps one (runpod/runpodctl#253).
        return MachineStatus.RUNNING
    # PROVISIONING, STARTING: the image is pulled and the container started; the ready
    # timeout bounds it.
    return MachineStatus.STARTING


def _a1111_port(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The runtime port mapping of the automatic1111 port, once RunPod reports one."""
    runtime = pod.get("runtime") or {}
    ports = runtime.get("ports") or []
    return next((port for port in ports if port.get("private") == A1111_PORT), None)


def _ours(pod: Any, label: str | None) -> bool:
    name = pod.get("name") if isinstance(pod, dict) else None
    if not isinstance(name, str):
        return False
    if label is not None:
        return name == label
    return name.startswith(LABEL_PREFIX)


def _out_of_stock(text: str) -> bool:
    lowered = text.lower()
    return any(words in lowered for words in _OUT_OF_STOCK_WORDS)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _problem_text(body: Any) -> str:
    """The words of an error body: v2's ``detail`` and ``errors`` (RFC 9457), else v1's
    ``error`` or ``message``."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[key]) for key in ("detail", "error", "message") if body.get(key)]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts.extend(str(error) for error in errors)
    return "; ".join(parts)


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
