"""AWS EC2 in the local stack: moto's EC2 is the API, the emulated market runs the machines.

The real adapter (``subconscious.market.ec2.EC2Provider``) talks to moto's EC2 in the local
stack's moto server exactly as it would to AWS. moto keeps instances as records only, so
:class:`Ec2Bridge` watches them and gives each instance we tagged a renderer process:

- each instance gets its own loopback address (``127.0.10.2``, ``127.0.10.3``, ...) as its public
  IP, and its renderer listens there on port 7860, so the adapter's production URL template
  (``http://{public_ip}:7860``) works unchanged: one address per machine, as on AWS;
- the credential is read from the instance's user data (the ``--api-auth`` the adapter wrote
  into the env file), as a machine would; it is handed to the market only, never logged;
- an instance the adapter terminates has its renderer stopped; a spot instance whose pool (the
  shipped availability traces, which are AWS's) loses its capacity is preempted by the market,
  and its instance reads ``terminated`` with ``Server.SpotInstanceTermination``, as AWS shows a
  reclaimed spot instance.

Spot prices: moto answers every ``DescribeSpotPriceHistory`` with $0.00001. Here the answer is
the price file's AWS spot rows (cheapest zone as ``<region>a``, dearest as ``<region>b``), and
the market's hidden EC2 offers use the same figures, on-demand from the price file's rows.
"""

from __future__ import annotations

import base64
import binascii
import csv
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from infra.local.emulated_market import (
    DEFAULT_CSV,
    EmulatedMarket,
    MachineNotFound,
    SpotRefused,
    gpu_memory_gb,
)

log = logging.getLogger(__name__)

LABEL_TAG = "subc:label"
RENDER_PORT = 7860
AWS_PROVIDER_NAME = "AWS"
# The instance types of the price file with an on-demand row and a spot row for one GPU: the
# types the local stack's adapter lists (SUBC_EC2_INSTANCE_TYPES).
LOCAL_INSTANCE_TYPES = ("g4dn.xlarge", "g5.2xlarge", "g6.2xlarge", "g6e.2xlarge")
_TYPE_IN_GPU = re.compile(r"^(?P<gpu>.+?) \((?P<type>[a-z0-9-]+\.[a-z0-9]+)\)$")
_API_AUTH = re.compile(r"--api-auth[= ]['\"]?(?P<auth>[A-Za-z0-9._~:-]+)")
SPOT_ANSWER_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"


@dataclass(frozen=True)
class Ec2Prices:
    """Per instance type: the GPU, its on-demand price and spot price per zone."""

    gpu: dict[str, str]
    on_demand: dict[str, Decimal]
    spot: dict[tuple[str, str], Decimal]  # (instance type, availability zone)


def load_prices(region: str, csv_path: Any = DEFAULT_CSV) -> Ec2Prices:
    """The price file's AWS rows for :data:`LOCAL_INSTANCE_TYPES` in ``region``."""
    gpu: dict[str, str] = {}
    on_demand: dict[str, Decimal] = {}
    spot_rows: dict[str, list[Decimal]] = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            match = _TYPE_IN_GPU.match(row["gpu"])
            if row["provider"] != AWS_PROVIDER_NAME or match is None:
                continue
            kind = match["type"]
            if kind not in LOCAL_INSTANCE_TYPES or not row["region"].startswith(region):
                continue
            gpu[kind] = match["gpu"]
            price = Decimal(row["usd_per_gpu_hour"]) * int(row["gpus_per_instance"])
            if row["pricing_type"] == "on_demand":
                on_demand[kind] = price
            elif row["pricing_type"] == "spot":
                spot_rows.setdefault(kind, []).append(price)
    spot = {}
    for kind, prices in spot_rows.items():
        spot[(kind, f"{region}a")] = min(prices)
        spot[(kind, f"{region}b")] = max(prices)
    return Ec2Prices(gpu=gpu, on_demand=on_demand, spot=spot)


def market_offers(prices: Ec2Prices) -> list[dict[str, object]]:
    """The market's hidden offers behind the instance types (one per type: the machine is the
    same whichever zone it runs in); an interruptible launch's bid is the dearest zone's price."""
    offers: list[dict[str, object]] = []
    for kind, usd in sorted(prices.on_demand.items()):
        zone_prices = [p for (k, _), p in prices.spot.items() if k == kind]
        offer: dict[str, object] = {
            "offer_id": offer_id(kind),
            "provider_name": AWS_PROVIDER_NAME,
            "gpu": prices.gpu[kind],
            "gpu_count": 1,
            "gpu_memory_gb": gpu_memory_gb(prices.gpu[kind]),
            "usd_per_hour": str(usd),
            "interruptible": False,
            "reliability": "0.99",
            "location": "us-east-1",
            "startup_s": 1.0,
        }
        if zone_prices:
            offer["min_bid"] = str(max(zone_prices))
        offers.append(offer)
    return offers


def offer_id(instance_type: str) -> str:
    return f"emu-aws-{instance_type.replace('.', '-')}"


def api_auth_from_user_data(user_data: Any) -> str | None:
    """The ``user:password`` of the ``--api-auth`` in an instance's (base64) user data."""
    if user_data is None:
        return None
    raw = user_data[0] if isinstance(user_data, list) and user_data else user_data
    try:
        script = base64.b64decode(str(raw), validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    match = _API_AUTH.search(script)
    return match["auth"] if match else None


# --------------------------------------------------------------------------- moto patches

_ORIGINAL_SPOT_HISTORY: Any = None


def patch_spot_prices(prices: Ec2Prices, clock: Callable[[], datetime] | None = None) -> None:
    """Answer DescribeSpotPriceHistory with ``prices`` (instead of moto's $0.00001)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_instances import SpotInstances

    global _ORIGINAL_SPOT_HISTORY
    if _ORIGINAL_SPOT_HISTORY is None:
        _ORIGINAL_SPOT_HISTORY = SpotInstances.describe_spot_price_history
    now = clock or (lambda: datetime.now(UTC))

    def describe_spot_price_history(self: Any) -> Any:
        wanted = set(self._get_param("InstanceTypes", []))
        filters = self._filters_from_querystring()
        zones = set(filters.get("availability-zone", []))
        stamp = now().strftime(SPOT_ANSWER_TIMESTAMP_FORMAT)
        history = [
            {
                "InstanceType": kind,
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": str(price),
                "AvailabilityZone": zone,
                "Timestamp": stamp,
            }
            for (kind, zone), price in sorted(prices.spot.items())
            if (not wanted or kind in wanted) and (not zones or zone in zones)
        ]
        return ActionResult({"SpotPriceHistory": history})

    SpotInstances.describe_spot_price_history = describe_spot_price_history  # type: ignore[method-assign]


def unpatch_spot_prices() -> None:
    from moto.ec2.responses.spot_instances import SpotInstances

    global _ORIGINAL_SPOT_HISTORY
    if _ORIGINAL_SPOT_HISTORY is not None:
        SpotInstances.describe_spot_price_history = _ORIGINAL_SPOT_HISTORY  # type: ignore[method-assign]
        _ORIGINAL_SPOT_HISTORY = None


# --------------------------------------------------------------------------- the bridge

_ENDED_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


class Ec2Bridge:
    """Gives each live instance labelled ``subc:label`` in moto's EC2 a renderer (see above)."""

    def __init__(
        self,
        market: EmulatedMarket,
        prices: Ec2Prices,
        *,
        account: str,
        region: str,
        every_s: float = 0.2,
    ) -> None:
        self.market = market
        self.prices = prices
        self.account = account
        self.region = region
        self.every_s = every_s
        self.machines: dict[str, str] = {}  # instance id -> market machine id
        self._instances: dict[str, str] = {}  # market machine id -> instance id
        self.skipped: set[str] = set()  # instances without a credential: never serve
        self.ended: set[str] = set()  # instances whose renderer has been stopped
        self._hosts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        market.add_offers(market_offers(prices))
        market.preempt_listeners.append(self._on_preempt)

    def start(self) -> Ec2Bridge:
        self._thread = threading.Thread(target=self._run, name="local-ec2-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.step()
            except Exception:  # a dead bridge would leave every instance without a server
                log.exception("EC2 bridge step failed")

    def _backend(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account][self.region]

    def step(self) -> None:
        """One look at every instance: start, stop or preempt what changed."""
        for instance in list(self._backend().all_instances()):
            label = _label(instance)
            if label is None:
                continue
            state = instance._state.name
            machine_id = self.machines.get(instance.id)
            if instance.id in self.ended:
                continue
            if machine_id is None:
                if state not in _ENDED_STATES and instance.id not in self.skipped:
                    self._serve(instance, label)
                continue
            if state in _ENDED_STATES:
                self._stop_machine(machine_id)
                self.ended.add(instance.id)
            elif self._preempted(machine_id):
                _reclaim(instance)
                log.info("spot instance %s reclaimed (its pool lost capacity)", instance.id)

    def _serve(self, instance: Any, label: str) -> None:
        auth = api_auth_from_user_data(instance.user_data)
        if auth is None:
            self.skipped.add(instance.id)
            log.warning(
                "instance %s: no --api-auth in its user data; it will never serve", instance.id
            )
            return
        host = self._host()
        kind = instance.instance_type
        offer = offer_id(kind)
        spot = getattr(instance, "lifecycle", None) == "spot"
        bid = self.prices_bid(kind) if spot else None
        try:
            machine = self.market.launch(
                offer, label, auth, bid_usd_per_hour=bid, host=host, port=RENDER_PORT
            )
        except SpotRefused:  # the pool has no capacity now: AWS would take it back at once
            _reclaim(instance)
            self.ended.add(instance.id)
            log.info("spot instance %s reclaimed at launch (its pool has no capacity)", instance.id)
            return
        for nic in instance.nics.values():
            nic.public_ip = host
            break
        self.machines[instance.id] = str(machine["machine_id"])
        self._instances[str(machine["machine_id"])] = instance.id
        log.info(
            "instance %s (%s%s) serves on %s", instance.id, kind, ", spot" if spot else "", host
        )

    def _on_preempt(self, machine_id: str) -> None:
        """The market reclaims a spot machine: its instance reads reclaimed before its server
        dies (AWS warns two minutes ahead; here the two happen at once, in that order)."""
        instance_id = self._instances.get(machine_id)
        if instance_id is None:
            return
        instance = self._backend().get_instance(instance_id)
        if instance._state.name not in _ENDED_STATES:
            _reclaim(instance)
            log.info("spot instance %s reclaimed (its pool lost capacity)", instance_id)

    def prices_bid(self, instance_type: str) -> Decimal | None:
        zone_prices = [p for (k, _), p in self.prices.spot.items() if k == instance_type]
        return max(zone_prices) if zone_prices else None

    def _host(self) -> str:
        number = self._hosts
        self._hosts += 1
        return f"127.0.{10 + number // 250}.{number % 250 + 2}"

    def _stop_machine(self, machine_id: str) -> None:
        try:
            described = self.market.machine(machine_id)
        except MachineNotFound:
            return
        if described["status"] != "terminated":
            self.market.terminate(machine_id)

    def _preempted(self, machine_id: str) -> bool:
        try:
            return bool(self.market.machine(machine_id)["preempted"])
        except MachineNotFound:
            return False


def _label(instance: Any) -> str | None:
    for tag in instance.get_tags():
        if tag["key"] == LABEL_TAG:
            return str(tag["value"])
    return None


def _reclaim(instance: Any) -> None:
    """The instance as AWS shows a reclaimed spot instance."""
    from moto.ec2.models.instances import StateReason

    instance.terminate()
    instance.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )
