"""The Vast.ai and TensorDock emulators, driven by the real adapters end to end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from infra.local.emulators import EmulatorServer, serve_tensordock, serve_vast
from infra.local.market import EmulatedMarket, MachineFaults
from infra.local.spot import SpotMarket, SpotTrace
from subconscious.errors import (
    MachineGone,
    OfferGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderError,
)
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


@pytest.fixture
def market(tmp_path: Path) -> Iterator[EmulatedMarket]:
    emulated = EmulatedMarket(
        default_faults=MachineFaults(startup_delay_s=0.0), log_dir=tmp_path / "machines"
    )
    yield emulated
    emulated.shutdown()


@pytest.fixture
def vast(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_vast(market, VAST_KEY)
    yield server
    server.close()


@pytest.fixture
def tensordock(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_tensordock(market, TD_TOKEN)
    yield server
    server.close()


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


# --------------------------------------------------------------------------- Vast


def _vast(server: EmulatorServer, key: str = VAST_KEY) -> VastProvider:
    return VastProvider(key, base_url=server.url, image="local/a1111", sleep=lambda _: None)


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


# --------------------------------------------------------------------------- TensorDock


def _tensordock(server: EmulatorServer, token: str = TD_TOKEN) -> TensorDockProvider:
    return TensorDockProvider(
        token, ssh_public_key=SSH_KEY, base_url=server.url, sleep=lambda _: None
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


# --------------------------------------------------------------------------- Vast (issue 14)


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
