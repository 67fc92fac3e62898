"""What the emulator tests share: keys, the adapter protocol they drive, and the walks that
every provider's tests take (a rental round trip, an interruptible rental preempted)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Protocol

import httpx
import pytest

from infra.local.emulated_market import EmulatedMarket
from infra.local.emulators import EmulatorServer
from subconscious.errors import MachineGone, OutOfCapacity
from subconscious.market.tensordock import TensorDockProvider
from subconscious.market.vast import VastProvider
from subconscious.models import Machine, MachineStatus, Offer

VAST_KEY = "vast-key-0123456789"
TD_TOKEN = "td-token-abcdef"
API_AUTH = "render-bot:pa55-w0rd-xyz"
BASIC = ("render-bot", "pa55-w0rd-xyz")
SD_MODELS = "/sdapi/v1/sd-models"
SSH_KEY = "ssh-ed25519 AAAA test"


class Provider(Protocol):
    def list_offers(self) -> list[Offer]: ...

    def launch(
        self, offer: Offer, *, label: str, api_auth: str, bid_usd_per_hour: Decimal | None = None
    ) -> Machine: ...

    def status(self, machine_id: str) -> Machine: ...

    def terminate(self, machine_id: str) -> None: ...

    def machines(self, label: str | None = None) -> list[Machine]: ...


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _wait_running(provider: Provider, machine_id: str) -> Machine:
    deadline = time.monotonic() + 10
    while (machine := provider.status(machine_id)).status is not MachineStatus.RUNNING:
        assert machine.status is MachineStatus.STARTING, machine
        assert machine.url is None
        assert time.monotonic() < deadline, "the machine never reached RUNNING"
        time.sleep(0.02)
    return machine


def _round_trip(
    provider: Provider, server: EmulatorServer, market: EmulatedMarket, label: str
) -> None:
    offers = provider.list_offers()
    assert offers
    offer = offers[0]
    launched = provider.launch(offer, label=label, api_auth=API_AUTH)
    assert launched.status is MachineStatus.STARTING
    market_id = server.market_machine_id(launched.machine_id)

    running = _wait_running(provider, launched.machine_id)
    assert running.url is not None
    assert running.url.startswith("http://127.0.0.1:")
    assert running.label == label
    assert running.url == market.machine(market_id)["url"]
    assert httpx.get(running.url + SD_MODELS, auth=BASIC, timeout=5).status_code == 200
    assert httpx.get(running.url + SD_MODELS, timeout=5).status_code == 401

    assert [m.machine_id for m in provider.machines(label)] == [launched.machine_id]
    assert launched.machine_id in {m.machine_id for m in provider.machines()}
    assert provider.machines("subc-someone-else") == []

    provider.terminate(launched.machine_id)
    assert market.process(market_id).poll() is not None
    provider.terminate(launched.machine_id)  # idempotent
    assert provider.machines(label) == []
    with pytest.raises(MachineGone):
        provider.status(launched.machine_id)


def _vast(server: EmulatorServer, key: str = VAST_KEY) -> VastProvider:
    return VastProvider(key, base_url=server.url, image="local/a1111", sleep=lambda _: None)


def _tensordock(server: EmulatorServer, token: str = TD_TOKEN) -> TensorDockProvider:
    return TensorDockProvider(
        token, ssh_public_key=SSH_KEY, base_url=server.url, sleep=lambda _: None
    )


def _cheapest_biddable(offers: list[Offer]) -> Offer:
    return min((o for o in offers if o.min_bid_usd_per_hour), key=lambda o: o.usd_per_hour)


def _preempted_while_on_demand_lives(
    provider: Provider, server: EmulatorServer, market: EmulatedMarket, clock: FakeClock
) -> None:
    offer = _cheapest_biddable(provider.list_offers())
    bid = offer.min_bid_usd_per_hour
    spot = provider.launch(offer, label="subc-spot", api_auth=API_AUTH, bid_usd_per_hour=bid)
    # A Vast ask is one machine: the others rent the next free ones (RunPod has many hosts).
    taken = {offer.offer_id} if isinstance(provider, VastProvider) else set()
    offer = next(o for o in provider.list_offers() if o.offer_id not in taken)
    on_demand = provider.launch(offer, label="subc-od", api_auth=API_AUTH)
    if isinstance(provider, VastProvider):
        taken.add(offer.offer_id)
    offer = next(o for o in provider.list_offers() if o.offer_id not in taken)
    _wait_running(provider, spot.machine_id)
    od_url = _wait_running(provider, on_demand.machine_id).url

    clock.now += 10  # the pool's trace drops to 0: capacity gone
    assert provider.status(spot.machine_id).status is MachineStatus.EXITED
    process = market.process(server.market_machine_id(spot.machine_id))
    assert process.poll() is not None
    assert provider.status(on_demand.machine_id).status is MachineStatus.RUNNING
    assert httpx.get(str(od_url) + SD_MODELS, auth=BASIC, timeout=5).status_code == 200
    # no capacity, no interruptible offers; renting one anyway is refused
    assert not any(o.interruptible for o in provider.list_offers())
    with pytest.raises(OutOfCapacity):
        provider.launch(offer, label="subc-again", api_auth=API_AUTH, bid_usd_per_hour=bid)
    ours: list[Machine] = provider.machines()
    assert {m.machine_id: m.status for m in ours} == {
        spot.machine_id: MachineStatus.EXITED,
        on_demand.machine_id: MachineStatus.RUNNING,
    }
    for machine in ours:
        provider.terminate(machine.machine_id)
    assert provider.machines() == []
