"""The Vast.ai emulator, driven by the real adapter end to end: offers, rentals, its fault
knobs (hosts without a port, containers that never start), and interruptible rentals (bids,
spot-trace preemption)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from infra.local.emulated_market import EmulatedMarket, MachineFaults
from infra.local.emulators import EmulatorServer, serve_vast
from infra.local.spot import SpotMarket, SpotTrace
from subconscious.errors import MachineGone, OfferGone, OutOfCapacity, ProviderAuthError
from subconscious.models import MachineStatus, Offer
from tests.local.emulators.helpers import (
    API_AUTH,
    BASIC,
    SD_MODELS,
    VAST_KEY,
    FakeClock,
    _cheapest_biddable,
    _preempted_while_on_demand_lives,
    _round_trip,
    _vast,
    _wait_running,
)


@pytest.fixture
def spot_vast(spot_market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_vast(spot_market, VAST_KEY)
    yield server
    server.close()


def test_vast_offers_carry_the_market_prices_exactly(
    vast: EmulatorServer, market: EmulatedMarket
) -> None:
    expected = {
        Decimal(str(o["usd_per_hour"]))
        for o in market.offers()
        if o["provider_name"] == "Vast.ai" and int(str(o["gpu_memory_gb"])) >= 8
    }
    offers = _vast(vast).list_offers()
    assert offers and {o.usd_per_hour for o in offers} == expected
    assert [o.usd_per_hour for o in offers] == sorted(o.usd_per_hour for o in offers)
    assert all(o.provider == "vast" and o.offer_id.isdigit() for o in offers)
    assert all(isinstance(o.usd_per_hour, Decimal) and not o.interruptible for o in offers)


def test_vast_adapter_runs_end_to_end(vast: EmulatorServer, market: EmulatedMarket) -> None:
    _round_trip(_vast(vast), vast, market, "subc-run-vast")


def test_vast_ask_is_one_machine_while_rented(vast: EmulatorServer) -> None:
    provider = _vast(vast)
    offer = provider.list_offers()[0]
    machine = provider.launch(offer, label="subc-run-once", api_auth=API_AUTH)
    try:
        assert offer.offer_id not in {o.offer_id for o in provider.list_offers()}
        with pytest.raises(OfferGone):
            provider.launch(offer, label="subc-run-twice", api_auth=API_AUTH)
    finally:
        provider.terminate(machine.machine_id)
    assert offer.offer_id in {o.offer_id for o in provider.list_offers()}


def test_vast_v1_list_pages_and_v0_list(vast: EmulatorServer) -> None:
    provider = _vast(vast)
    offers = provider.list_offers()[:3]
    launched = [
        provider.launch(o, label=f"subc-run-{i}", api_auth=API_AUTH) for i, o in enumerate(offers)
    ]
    try:
        headers = {"Authorization": f"Bearer {VAST_KEY}"}
        base = vast.url.removesuffix("/api/v0")
        page = httpx.get(f"{base}/api/v1/instances/", params={"limit": "2"}, headers=headers)
        assert page.status_code == 200 and len(page.json()["instances"]) == 2
        token = page.json()["next_token"]
        rest = httpx.get(
            f"{base}/api/v1/instances/",
            params={"limit": "2", "after_token": token},
            headers=headers,
        ).json()
        assert len(rest["instances"]) == 1 and rest["next_token"] is None
        v0 = httpx.get(f"{vast.url}/instances/", params={"owner": "me"}, headers=headers).json()
        assert v0["instances_found"] == 3
        assert len(provider.machines()) == 3
        assert "pa55" not in page.text + str(v0)  # the credential is never read back
    finally:
        for machine in launched:
            provider.terminate(machine.machine_id)


def test_vast_wrong_key_is_an_auth_error(vast: EmulatorServer) -> None:
    with pytest.raises(ProviderAuthError):
        _vast(vast, "not-the-key").list_offers()
    answer = httpx.post(f"{vast.url}/bundles/", json={})
    assert answer.status_code == 401 and answer.json()["error"] == "auth_error"


# --------------------------------------------------------------------------- issue 14


def _raw_search(server: EmulatorServer, query: dict[str, object]) -> list[dict[str, object]]:
    answer = httpx.post(
        f"{server.url}/bundles/", json=query, headers={"Authorization": f"Bearer {VAST_KEY}"}
    )
    assert answer.status_code == 200
    rows: list[dict[str, object]] = answer.json()["offers"]
    return rows


def _raw_instance(server: EmulatorServer, instance_id: str) -> dict[str, object]:
    answer = httpx.get(
        f"{server.url}/instances/{instance_id}/", headers={"Authorization": f"Bearer {VAST_KEY}"}
    )
    row: dict[str, object] = answer.json()["instances"]
    return row


def test_vast_rows_show_ports_cuda_and_bandwidth(vast: EmulatorServer) -> None:
    rows = _raw_search(vast, {"order": [["dph_total", "asc"]]})
    assert rows and all(int(str(r["direct_port_count"])) >= 1 for r in rows)
    assert all(float(str(r["cuda_max_good"])) >= 12.6 for r in rows)
    assert all(r["inet_down_cost"] == r["inet_up_cost"] == 0.0 for r in rows)
    assert len(_vast(vast).list_offers()) == len(
        [r for r in rows if int(str(r["gpu_ram"])) >= 8192]
    )


def test_vast_hosts_without_a_port_are_cheapest_and_never_reach_the_adapter(
    market: EmulatedMarket,
) -> None:
    server = serve_vast(market, VAST_KEY)
    try:
        provider = _vast(server)
        before = provider.list_offers()
        server.list_portless_hosts()
        unfiltered = _raw_search(server, {"order": [["dph_total", "asc"]]})
        assert unfiltered[0]["direct_port_count"] == 0  # the trap: cheapest first
        assert provider.list_offers() == before  # the adapter's search leaves them out
        # Rented anyway (what the adapter did before issue 14): it runs, but no HostPort.
        trap = unfiltered[0]
        offer = Offer(
            provider="vast",
            offer_id=str(trap["id"]),
            gpu=str(trap["gpu_name"]),
            gpu_memory_gb=24,
            usd_per_hour=Decimal(str(trap["dph_total"])),
        )
        machine = provider.launch(offer, label="subc-portless", api_auth=API_AUTH)
        deadline = time.monotonic() + 10
        while _raw_instance(server, machine.machine_id)["actual_status"] != "running":
            assert time.monotonic() < deadline, "the machine never ran"
            time.sleep(0.02)
        read = provider.status(machine.machine_id)
        assert read.status is MachineStatus.RUNNING and read.url is None  # waits for ever
        assert _raw_instance(server, machine.machine_id)["ports"] == {}
        provider.terminate(machine.machine_id)
        server.list_portless_hosts(False)
        assert all(r["direct_port_count"] != 0 for r in _raw_search(server, {}))
    finally:
        server.close()


def test_vast_a_container_that_fails_to_start_is_given_up_at_once(market: EmulatedMarket) -> None:
    server = serve_vast(market, VAST_KEY)
    try:
        provider = _vast(server)
        offers = provider.list_offers()
        server.fail_containers()
        machine = provider.launch(offers[0], label="subc-oci", api_auth=API_AUTH)
        row = _raw_instance(server, machine.machine_id)
        assert row["actual_status"] == "created"
        assert ": OCI runtime create failed:" in str(row["status_msg"])  # what dstack matches
        assert provider.status(machine.machine_id).status is MachineStatus.EXITED
        assert [m.status for m in provider.machines("subc-oci")] == [MachineStatus.EXITED]
        assert market.launched_count == 1  # rented: it bills until destroyed
        provider.terminate(machine.machine_id)
        with pytest.raises(MachineGone):
            provider.status(machine.machine_id)
        server.fail_containers(False)
        fine = provider.launch(offers[1], label="subc-fine", api_auth=API_AUTH)
        assert _wait_running(provider, fine.machine_id).url is not None
        provider.terminate(fine.machine_id)
    finally:
        server.close()


def test_vast_an_outbid_instance_reads_stopped_and_is_exited(tmp_path: Path) -> None:
    trace = SpotTrace.parse("pool", {"metadata": {"gap_seconds": 600}, "data": [1]})
    with EmulatedMarket(
        default_faults=MachineFaults(startup_delay_s=0.0),
        log_dir=tmp_path / "machines",
        spot=SpotMarket([trace], tick_s=600.0),
    ) as market:
        server = serve_vast(market, VAST_KEY)
        try:
            provider = _vast(server)
            offer = min(
                (o for o in provider.list_offers() if o.min_bid_usd_per_hour is not None),
                key=lambda o: o.usd_per_hour,
            )
            assert offer.min_bid_usd_per_hour is not None
            machine = provider.launch(
                offer,
                label="subc-outbid",
                api_auth=API_AUTH,
                bid_usd_per_hour=offer.min_bid_usd_per_hour,
            )
            _wait_running(provider, machine.machine_id)
            market.preempt(server.market_machine_id(machine.machine_id))
            row = _raw_instance(server, machine.machine_id)
            states = (row["cur_state"], row["intended_status"], row["next_state"])
            assert states == ("stopped", "stopped", "stopped")
            assert provider.status(machine.machine_id).status is MachineStatus.EXITED
            provider.terminate(machine.machine_id)
        finally:
            server.close()


# --------------------------------------------------------------------------- interruptible


def test_vast_bids_at_or_above_min_bid_rent_interruptible(spot_vast: EmulatorServer) -> None:
    provider = _vast(spot_vast)
    offer = _cheapest_biddable(provider.list_offers())
    assert offer.min_bid_usd_per_hour == offer.usd_per_hour / 2
    low = offer.min_bid_usd_per_hour - Decimal("0.0001")
    with pytest.raises(OutOfCapacity, match="invalid_price"):
        provider.launch(offer, label="subc-low", api_auth=API_AUTH, bid_usd_per_hour=low)
    refused = httpx.put(
        f"{spot_vast.url}/asks/{offer.offer_id}/",
        json={"price": float(low), "label": "subc-low"},
        headers={"Authorization": f"Bearer {VAST_KEY}"},
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "success": False,
        "error": "invalid_price",
        "msg": "error 400/3468: invalid_price bid is below the current minimum",
        "ask_id": int(offer.offer_id),
    }
    machine = provider.launch(
        offer, label="subc-bid", api_auth=API_AUTH, bid_usd_per_hour=offer.min_bid_usd_per_hour
    )
    running = _wait_running(provider, machine.machine_id)
    assert running.usd_per_hour == offer.min_bid_usd_per_hour
    assert httpx.get(str(running.url) + SD_MODELS, auth=BASIC, timeout=5).status_code == 200
    provider.terminate(machine.machine_id)


def test_vast_interruptible_instance_is_preempted_as_the_trace_says(
    spot_vast: EmulatorServer, spot_market: EmulatedMarket, clock: FakeClock
) -> None:
    provider = _vast(spot_vast)
    _preempted_while_on_demand_lives(provider, spot_vast, spot_market, clock)
    rows = httpx.get(
        f"{spot_vast.url}/instances/", headers={"Authorization": f"Bearer {VAST_KEY}"}
    ).json()
    assert rows["instances"] == []


def test_a_preempted_vast_instance_reads_stopped(
    spot_vast: EmulatorServer, spot_market: EmulatedMarket, clock: FakeClock
) -> None:
    provider = _vast(spot_vast)
    offer = _cheapest_biddable(provider.list_offers())
    machine = provider.launch(
        offer, label="subc-stop", api_auth=API_AUTH, bid_usd_per_hour=offer.min_bid_usd_per_hour
    )
    clock.now += 10  # every read applies the trace first: no waiting for the watcher
    headers = {"Authorization": f"Bearer {VAST_KEY}"}
    row = httpx.get(f"{spot_vast.url}/instances/{machine.machine_id}/", headers=headers).json()
    assert row["instances"]["actual_status"] == "stopped"
    assert row["instances"]["is_bid"] is True
    assert row["instances"]["dph_total"] == float(str(offer.min_bid_usd_per_hour))
    provider.terminate(machine.machine_id)
