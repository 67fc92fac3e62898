"""A local emulator of TensorDock's v2 API over an EmulatedMarket, for
``subconscious.market.tensordock.TensorDockProvider`` (shapes as recorded in
``tests/fixtures/tensordock``).

Hosts: the market's offers whose ``provider_name`` is ``"TensorDock"`` if any; the price
file has none, so otherwise one host per GPU model is built from the other providers' rows
(not Vast's), cheapest row per model, at most :data:`TENSORDOCK_MAX_HOSTS` hosts, with the GPU
priced at the source price times :data:`TENSORDOCK_MARKUP` (exact Decimal arithmetic), plus
TensorDock-style per-vCPU/RAM/storage pricing (:data:`TENSORDOCK_PRICING`), which the adapter
adds for its bundle. The machine is launched against the source market offer. The
instance listing answers in each documented shape in turn (``data.instances``,
``data.attributes.instances``, bare ``data`` list) and ``portForwards`` as a list or a map,
in turn; the credential is read from the env file the ``cloud_init`` writes (``write_files``
or a ``runcmd`` line that decodes base64 into it).

``fail_launches()`` answers every create with HTTP 500 ``{"status": 500, "error"}``. What is
simplified: the requested ``external_port`` is not honoured (the renderer's own port is
reported in ``portForwards`` instead); rate limits are not emulated.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import uuid
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from infra.local.emulated_market import EmulatedMarket, MachineNotFound
from infra.local.emulators.common import (
    A1111_PORT,
    VAST_PROVIDER_NAME,
    Backend,
    BadRequest,
    EmulatorServer,
    Route,
    api_auth_from_args,
    bearer_ok,
    json_number,
    json_object,
    market_status,
    serve,
)

TENSORDOCK_PROVIDER_NAME = "TensorDock"
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


def _v0_name(gpu: str, memory_gb: int) -> str:
    """A TensorDock-style GPU model name ending in ``-<memory>gb`` (what the adapter reads)."""
    model = re.sub(r"\d+\s*GB", "", gpu, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]", "", model.lower()) or "gpu"
    return f"{slug}-pcie-{memory_gb}gb"


class _TensorDockBackend(Backend):
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
        return bearer_ok(headers.get("Authorization"), self._api_token)

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
            if host == host_id
            and market_status(self._market, market_id) not in ("terminated", "exited")
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
                    "uptime_percentage": json_number(str(reliability)),
                    "available_resources": {
                        "gpus": [
                            {
                                "v0Name": name,
                                "availableCount": max(0, TENSORDOCK_GPUS_PER_HOST - used[host_id]),
                                "price_per_hr": json_number(str(price)),
                            }
                        ],
                        "vcpu_count": 32,
                        "ram_gb": 128,
                        "storage_gb": 2000,
                        "available_ports": list(TENSORDOCK_PORTS),
                        "has_public_ip_available": False,
                    },
                    "pricing": {k: json_number(str(v)) for k, v in TENSORDOCK_PRICING.items()},
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
        attributes = _create_attributes(raw)
        name = str(attributes["name"])
        vcpus, ram_gb, storage_gb, model = _create_resources(attributes)
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
            rate = _hourly_rate(gpu_price, vcpus, ram_gb, storage_gb)
            machine = self._market.launch(str(offer["offer_id"]), name, api_auth)
            instance_id = str(uuid.uuid4())
            self._instances[instance_id] = (str(machine["machine_id"]), host_id, rate)
            status = self._status_word(str(machine["status"]))
        return HTTPStatus.OK, {
            "data": {"type": "virtualmachine", "id": instance_id, "name": name, "status": status}
        }

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
            "rateHourly": json_number(str(rate)),
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
        if found is None or market_status(self._market, found[0]) == "terminated":
            return missing
        try:
            self._market.terminate(found[0])
        except MachineNotFound:
            return missing
        return HTTPStatus.OK, {
            "data": {"type": "success", "attributes": {"message": "Instance deleted successfully"}}
        }


def _create_attributes(raw: bytes) -> dict[str, Any]:
    """A create request's ``data.attributes``, with the name and SSH key TensorDock requires."""
    data = json_object(raw).get("data")
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        raise BadRequest("data.attributes is required")
    name = attributes.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("name is required")
    if not attributes.get("ssh_key"):
        raise BadRequest("An SSH key is required")
    return attributes


def _create_resources(attributes: dict[str, Any]) -> tuple[int, int, int, str]:
    """(vCPUs, RAM GB, storage GB, GPU model) a create request asks for: one GPU of one model."""
    resources = attributes.get("resources")
    if not isinstance(resources, dict):
        raise BadRequest("resources are required")
    try:
        vcpus = int(resources.get("vcpu_count") or 0)
        ram_gb = int(resources.get("ram_gb") or 0)
        storage_gb = int(resources.get("storage_gb") or 0)
    except (TypeError, ValueError) as error:
        raise BadRequest("resources must be integers") from error
    if storage_gb < TENSORDOCK_MIN_STORAGE_GB:
        raise BadRequest(f"storage_gb must be at least {TENSORDOCK_MIN_STORAGE_GB}")
    gpus = resources.get("gpus")
    if not isinstance(gpus, dict) or len(gpus) != 1:
        raise BadRequest("exactly one GPU model is required")
    ((model, wanted),) = gpus.items()
    count = wanted.get("count") if isinstance(wanted, dict) else None
    if count != 1:
        raise BadRequest("this emulator rents one GPU per instance")
    return vcpus, ram_gb, storage_gb, model


def _hourly_rate(gpu_price: Decimal, vcpus: int, ram_gb: int, storage_gb: int) -> Decimal:
    """An instance's rate: its host's GPU price plus TensorDock's per-part prices."""
    return (
        gpu_price
        + vcpus * TENSORDOCK_PRICING["per_vcpu_hr"]
        + ram_gb * TENSORDOCK_PRICING["per_gb_ram_hr"]
        + storage_gb * TENSORDOCK_PRICING["per_gb_storage_hr"]
    )


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


def serve_tensordock(market: EmulatedMarket, api_token: str) -> EmulatorServer:
    """TensorDock's v2 API on 127.0.0.1; ``.url`` ends in ``/api/v2`` (the adapter's base_url)."""
    backend = _TensorDockBackend(market, api_token)
    return serve(backend, "tensordock", "/api/v2", backend.market_machine_id)
