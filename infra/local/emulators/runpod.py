"""A local emulator of RunPod's REST v2 and GraphQL APIs (one server, one store of pods) over an
EmulatedMarket, for ``subconscious.market.runpod.RunPodProvider``.

REST v2 under ``/v2`` and GraphQL at ``/graphql``, in the shapes of runpod/docs
``api-reference-v2/openapi.json`` (``tests/fixtures/runpod``). One GPU type per GPU model of the
market's RunPod rows (``RunPod Community Cloud`` → ``COMMUNITY``, ``RunPod Secure Cloud`` →
``SECURE``; ids ``"NVIDIA <gpu>"``). ``GET /v2/catalog/gpus``: ``price.community``/
``price.secure`` from those rows (0 and ``community: false`` where a cloud has none); with
``include=AVAILABILITY`` (which needs ``product``, as RunPod's does) ``availability`` ``HIGH``
in the asked ``cloud`` (SECURE by default) for one GPU on a host running ``minCudaVersion``,
else ``NONE``. Every host runs CUDA :data:`RUNPOD_CUDA`; a higher floor finds none.
``POST /v2/pods`` checks the body as the schema does (an unknown field, a missing
``name``/``image``, a bad ``gpu.minCudaVersion``: 422 with ``errors``), places the pod on the
cheapest offer of ``gpu.id`` in ``cloud`` and answers 201 with the pod; none answers 400 with
RunPod's out-of-stock ``detail``. ``GET /v2/pods``, ``GET``/``DELETE /v2/pods/{id}`` (204; 404
once gone). A pod reads STARTING with ``runtime`` null while its server starts, RUNNING with
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

The credential is the ``--api-auth`` of REST's ``args`` or GraphQL's ``dockerArgs``, ``$VAR``
expanded from the pod's ``env``. ``fail_launches()`` answers HTTP 500 with a problem body over
REST, the recorded ``INTERNAL_SERVER_ERROR`` GraphQL error for an interruptible pod.
"""

from __future__ import annotations

import hmac
import re
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from infra.local.emulated_market import (
    BidTooLow,
    EmulatedMarket,
    MachineNotFound,
    NoSpotCapacity,
    OfferNotFound,
)
from infra.local.emulators.common import (
    A1111_PORT,
    MAX_BID,
    Backend,
    BadRequest,
    EmulatorHTTPServer,
    EmulatorServer,
    Handler,
    Route,
    api_auth_from_args,
    bearer_ok,
    epoch,
    is_id,
    is_json_number,
    json_number,
    json_object,
)

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
    body = json_object(raw)
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
        raise BadRequest("the start command is not a valid shell word list") from error
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


class _RunPodBackend(Backend):
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
        if bearer_ok(header, self._api_key):
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
        except (BadRequest, _GraphQLError):
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
            return HTTPStatus.CREATED, self._create(json_object(raw))
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
        asked = _catalog_availability(query)
        gpus: list[dict[str, object]] = []
        for type_id, clouds in self._types.items():
            gpu = _catalog_gpu(type_id, clouds)
            if asked is not None:
                cloud, count, runs = asked
                free = (
                    cloud in clouds and count == 1 and runs and not self.sold_out
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
        _check_pod_fields(body)
        gpu, floor = _pod_gpu(body)
        cloud, env, ports, args, disk = _pod_options(body)
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
                "uptime": max(0, int(time.time() - epoch(str(machine["launched_at"])))),
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
            "cost": 0 if status == "EXITED" else json_number(machine["usd_per_hour"]),
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
                    "communityPrice": json_number(community["usd_per_hour"]) if community else None,
                    "securePrice": json_number(secure["usd_per_hour"]) if secure else None,
                    "lowestPrice": {
                        "minimumBidPrice": json_number(min(bids)) if bids and in_stock else None,
                        "uninterruptablePrice": json_number(min(prices)) if in_stock else None,
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
        if not (isinstance(raw_bid, int | float) and is_json_number(raw_bid)) or not (
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
        except BadRequest as error:
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
        return {"id": pod_id, "desiredStatus": "RUNNING", "costPerHr": json_number(bid)}


def _query_value(query: dict[str, list[str]], name: str) -> str | None:
    """A query parameter's last value (None when absent)."""
    values = query.get(name)
    return values[-1] if values else None


def _catalog_availability(query: dict[str, list[str]]) -> tuple[str, int, bool] | None:
    """What a catalog query asks stock for, checked as RunPod checks it: (cloud, GPU count,
    whether every host's CUDA meets ``minCudaVersion``), or None without ``include``."""
    include, product = _query_value(query, "include"), _query_value(query, "product")
    if include is not None and include != "AVAILABILITY":
        raise _invalid(f"include: value must be one of 'AVAILABILITY', got {include!r}")
    if (include is None) != (product is None):
        raise _Problem(HTTPStatus.BAD_REQUEST, "product is required with include=AVAILABILITY")
    scoped = [
        name
        for name in ("cloud", "count", "minCudaVersion")
        if _query_value(query, name) is not None
    ]
    if include is None and scoped:
        raise _Problem(HTTPStatus.BAD_REQUEST, f"{scoped[0]} is valid only with include")
    cloud = _query_value(query, "cloud") or "SECURE"
    if cloud not in ("SECURE", "COMMUNITY"):
        raise _invalid(f"cloud: value must be one of 'SECURE', 'COMMUNITY', got {cloud!r}")
    count_text = _query_value(query, "count") or "1"
    if not is_id(count_text) or int(count_text) < 1:
        raise _invalid("count: must be an integer of at least 1")
    floor = _query_value(query, "minCudaVersion") or "0"
    if not _CUDA_FILTER.fullmatch(floor):
        raise _invalid("minCudaVersion: does not match pattern")
    runs = _cuda(RUNPOD_CUDA)[: len(_cuda(floor))] >= _cuda(floor)
    return None if include is None else (cloud, int(count_text), runs)


def _catalog_gpu(type_id: str, clouds: dict[str, dict[str, object]]) -> dict[str, object]:
    """One GPU type's catalog entry: its list prices per cloud (0 where a cloud has none)."""
    offer = next(iter(clouds.values()))
    community, secure = clouds.get("COMMUNITY"), clouds.get("SECURE")
    return {
        "id": type_id,
        "name": offer["gpu"],
        "pool": None,
        "manufacturer": "NVIDIA",
        "memory": int(str(offer["gpu_memory_gb"])),
        "secure": secure is not None,
        "community": community is not None,
        "price": {
            "secure": json_number(secure["usd_per_hour"]) if secure else 0,
            "community": json_number(community["usd_per_hour"]) if community else 0,
        },
        "maxCount": {"secure": int(secure is not None), "community": int(bool(community))},
    }


def _check_pod_fields(body: dict[str, Any]) -> None:
    """CreatePodRequest's own rules: no unknown field, a non-empty ``name`` and ``image``."""
    unknown = sorted(set(body) - _RUNPOD_CREATE_FIELDS)
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        raise _invalid(f"$: additional properties {names} not allowed")
    for name in ("name", "image"):
        if name not in body:
            raise _invalid(f"$: missing property '{name}'")
        if not isinstance(body[name], str) or not body[name]:
            raise _invalid(f"$.{name}: expected a non-empty string")


def _pod_gpu(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A create request's CreateGpuConfig, checked, and its ``minCudaVersion`` (None if
    unset): one GPU, a ``d.d`` floor or an allow-list but not both."""
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
    return gpu, floor


def _pod_options(body: dict[str, Any]) -> tuple[str, dict[str, str], list[str], str, int]:
    """A create request's (cloud, env, ports, args, disk), checked, with RunPod's defaults."""
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
    if not is_json_number(disk) or isinstance(disk, float) or disk < 1:
        raise _invalid("$.disk: expected an integer of at least 1")
    return cloud, env, ports, args, disk


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    """The env entries the emulator keeps (and echoes): the lean worker's plain settings."""
    return {k: v for k, v in env.items() if k.startswith("WORKER_")}


class _RunPodHandler(Handler):
    """Tells the backend which API a request speaks before it is authorised, and answers a
    204 without a body (REST v2's DELETE)."""

    def _handle(self, method: str) -> None:
        server = self.server
        assert isinstance(server, EmulatorHTTPServer)
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


class _RunPodHTTPServer(EmulatorHTTPServer):
    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
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
