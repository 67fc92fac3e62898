"""What every emulator shares, through the Vast.ai and TensorDock emulators alike: unknown
instances are gone, a crashed renderer reads as exited, failing launches refuse every rent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.local.emulated_market import EmulatedMarket
from infra.local.emulators import EmulatorServer, serve_tensordock, serve_vast
from subconscious.errors import MachineGone, OfferGone, OutOfCapacity, ProviderError
from subconscious.models import MachineStatus
from tests.local.emulators.helpers import (
    API_AUTH,
    TD_TOKEN,
    VAST_KEY,
    Provider,
    _tensordock,
    _vast,
    _wait_running,
)


@pytest.mark.parametrize("serve", [serve_vast, serve_tensordock])
def test_unknown_instances_are_gone(
    serve: Callable[[EmulatedMarket, str], EmulatorServer], market: EmulatedMarket
) -> None:
    key = VAST_KEY if serve is serve_vast else TD_TOKEN
    with serve(market, key) as server:
        provider: Provider = _vast(server) if serve is serve_vast else _tensordock(server)
        with pytest.raises(MachineGone):
            provider.status("999")
        provider.terminate("999")  # nothing to give back: no error


@pytest.mark.parametrize("serve", [serve_vast, serve_tensordock])
def test_a_crashed_renderer_reads_as_exited(
    serve: Callable[[EmulatedMarket, str], EmulatorServer], market: EmulatedMarket
) -> None:
    key = VAST_KEY if serve is serve_vast else TD_TOKEN
    with serve(market, key) as server:
        provider: Provider = _vast(server) if serve is serve_vast else _tensordock(server)
        machine = provider.launch(provider.list_offers()[0], label="subc-crash", api_auth=API_AUTH)
        _wait_running(provider, machine.machine_id)
        process = market.process(server.market_machine_id(machine.machine_id))
        process.kill()
        process.wait(timeout=5)
        assert provider.status(machine.machine_id).status is MachineStatus.EXITED
        assert [m.status for m in provider.machines("subc-crash")] == [MachineStatus.EXITED]
        provider.terminate(machine.machine_id)
        assert provider.machines("subc-crash") == []


@pytest.mark.parametrize("serve", [serve_vast, serve_tensordock])
def test_failing_launches_refuse_every_rent_while_offers_stay_listed(
    serve: Callable[[EmulatedMarket, str], EmulatorServer], market: EmulatedMarket
) -> None:
    key = VAST_KEY if serve is serve_vast else TD_TOKEN
    with serve(market, key) as server:
        provider: Provider = _vast(server) if serve is serve_vast else _tensordock(server)
        offers = provider.list_offers()
        server.fail_launches()
        assert provider.list_offers() == offers
        for offer in offers[:3]:
            with pytest.raises(ProviderError) as refused:
                provider.launch(offer, label="subc-failing", api_auth=API_AUTH)
            # the provider is broken, not the offer gone or out of stock
            assert not isinstance(refused.value, OfferGone | OutOfCapacity)
            assert "pa55" not in str(refused.value)
        assert market.launched_count == 0
        server.fail_launches(False)
        machine = provider.launch(offers[0], label="subc-again", api_auth=API_AUTH)
        provider.terminate(machine.machine_id)
