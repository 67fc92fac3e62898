"""The TensorDock emulator, driven by the real adapter end to end."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from infra.local.emulated_market import EmulatedMarket
from infra.local.emulators import EmulatorServer
from subconscious.errors import ProviderAuthError
from tests.local.emulators.helpers import (
    API_AUTH,
    TD_TOKEN,
    _round_trip,
    _tensordock,
    _wait_running,
)


def test_tensordock_offers_are_marked_up_market_prices(tensordock: EmulatorServer) -> None:
    offers = _tensordock(tensordock).list_offers()
    assert offers
    assert all(isinstance(o.usd_per_hour, Decimal) and o.provider == "tensordock" for o in offers)
    hosts = httpx.get(
        f"{tensordock.url}/hostnodes", headers={"Authorization": f"Bearer {TD_TOKEN}"}
    ).json()["data"]["hostnodes"]
    gpu = hosts[0]["available_resources"]["gpus"][0]
    bundle = 4 * Decimal("0.003") + 16 * Decimal("0.002") + 100 * Decimal("0.00005")
    first = next(o for o in offers if o.offer_id == f"{hosts[0]['id']}:{gpu['v0Name']}")
    assert first.usd_per_hour == Decimal(str(gpu["price_per_hr"])) + bundle


def test_tensordock_adapter_runs_end_to_end(
    tensordock: EmulatorServer, market: EmulatedMarket
) -> None:
    _round_trip(_tensordock(tensordock), tensordock, market, "subc-run-td")


def test_tensordock_wrong_token_is_an_auth_error(tensordock: EmulatorServer) -> None:
    with pytest.raises(ProviderAuthError):
        _tensordock(tensordock, "nope").list_offers()
    assert httpx.get(f"{tensordock.url}/instances").status_code == 401


def test_tensordock_answers_every_documented_shape_and_the_adapter_reads_each(
    tensordock: EmulatorServer,
) -> None:
    provider = _tensordock(tensordock)
    launched = provider.launch(provider.list_offers()[0], label="subc-shapes", api_auth=API_AUTH)
    running = _wait_running(provider, launched.machine_id)
    headers = {"Authorization": f"Bearer {TD_TOKEN}"}

    shapes = set()
    for _ in range(3):  # the adapter and a raw read each meet every listing shape in turn
        data = httpx.get(f"{tensordock.url}/instances", headers=headers).json()["data"]
        if isinstance(data, list):
            shapes.add("data")
        else:
            shapes.add("data.instances" if "instances" in data else "data.attributes.instances")
        assert [m.machine_id for m in provider.machines("subc-shapes")] == [launched.machine_id]
    assert shapes == {"data", "data.instances", "data.attributes.instances"}

    # portForwards as a list, then as a map: the adapter finds the same address in both
    assert [provider.status(launched.machine_id).url for _ in range(2)] == [running.url] * 2
    details = f"{tensordock.url}/instances/{launched.machine_id}"
    forwards = [httpx.get(details, headers=headers).json()["portForwards"] for _ in range(2)]
    assert sorted(type(f).__name__ for f in forwards) == ["dict", "list"]
    provider.terminate(launched.machine_id)
