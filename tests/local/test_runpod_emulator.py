"""The RunPod GraphQL emulator, driven by the real adapter end to end; and interruptible
rentals (bids, spot-trace preemption) through the Vast.ai and RunPod emulators."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from infra.local.market import EmulatedMarket, MachineFaults
from infra.local.provider_emulators import EmulatorServer, serve_runpod, serve_vast
from infra.local.spot import SpotMarket, SpotTrace
from subconscious.errors import (
    MachineGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderError,
)
from subconscious.market.runpod import RunPodProvider
from subconscious.market.vast import VastProvider
from subconscious.models import Machine, MachineStatus, Offer
from tests.local.test_provider_emulators import (
    API_AUTH,
    BASIC,
    SD_MODELS,
    VAST_KEY,
    Provider,
    _round_trip,
    _wait_running,
)

RUNPOD_KEY = "rpa_emulated_0123456789"
LOCAL_PROXY = "http://{ip}:{public_port}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def market(tmp_path: Path, clock: FakeClock) -> Iterator[EmulatedMarket]:
    # One spot pool for every Vast.ai and RunPod offer: capacity for a tick of 10 s, then none.
    trace = SpotTrace.parse("pool", {"metadata": {"gap_seconds": 600}, "data": [1, 0]})
    emulated = EmulatedMarket(
        default_faults=MachineFaults(startup_delay_s=0.0),
        log_dir=tmp_path / "machines",
        spot=SpotMarket([trace], tick_s=10.0, clock=clock),
    )
    yield emulated
    emulated.shutdown()


@pytest.fixture
def runpod(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_runpod(market, RUNPOD_KEY)
    yield server
    server.close()


@pytest.fixture
def vast(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_vast(market, VAST_KEY)
    yield server
    server.close()


def _runpod(server: EmulatorServer, key: str = RUNPOD_KEY, cloud: str = "ALL") -> RunPodProvider:
    return RunPodProvider(
        key,
        url=server.url,
        image="local/a1111",
        cloud_type=cloud,
        proxy_url=LOCAL_PROXY,
        sleep=lambda _: None,
    )


def _vast(server: EmulatorServer) -> VastProvider:
    return VastProvider(VAST_KEY, base_url=server.url, image="local/a1111", sleep=lambda _: None)


def _graphql(server: EmulatorServer, query: str, **variables: object) -> httpx.Response:
    return httpx.post(
        server.url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {RUNPOD_KEY}"},
    )


def _cheapest_biddable(offers: list[Offer]) -> Offer:
    return min((o for o in offers if o.min_bid_usd_per_hour), key=lambda o: o.usd_per_hour)


# --------------------------------------------------------------------------- RunPod


def test_runpod_offers_are_the_market_rows_lowest_over_both_clouds(
    runpod: EmulatorServer, market: EmulatedMarket
) -> None:
    rows: dict[str, list[Decimal]] = {}
    for o in market.offers():
        if str(o["provider_name"]).startswith("RunPod"):
            rows.setdefault(str(o["gpu"]), []).append(Decimal(str(o["usd_per_hour"])))
    offers = _runpod(runpod).list_offers()
    assert {o.gpu: o.usd_per_hour for o in offers} == {gpu: min(p) for gpu, p in rows.items()}
    assert all(o.provider == "runpod" and o.offer_id == f"NVIDIA {o.gpu}" for o in offers)
    # every offer is in the one spot pool, which has capacity now: a bid floor of half
    assert all(o.interruptible for o in offers)
    assert all(o.min_bid_usd_per_hour == o.usd_per_hour / 2 for o in offers if o.gpu == "L40S")


def test_runpod_adapter_runs_end_to_end(runpod: EmulatorServer, market: EmulatedMarket) -> None:
    _round_trip(_runpod(runpod), runpod, market, "subc-run-runpod")


def test_runpod_pod_reads_as_runpod_reports_it(
    runpod: EmulatorServer, market: EmulatedMarket
) -> None:
    provider = _runpod(runpod)
    launched = provider.launch(provider.list_offers()[0], label="subc-read", api_auth=API_AUTH)
    running = _wait_running(provider, launched.machine_id)
    pod = _graphql(
        runpod,
        "query Pod($input: PodFilter!) { pod(input: $input) { id } }",
        input={"podId": launched.machine_id},
    ).json()["data"]["pod"]
    port = int(str(market.machine(runpod.market_machine_id(launched.machine_id))["url"])[-5:])
    assert pod["desiredStatus"] == "RUNNING"
    assert pod["runtime"]["ports"] == [
        {
            "ip": "127.0.0.1",
            "isIpPublic": False,
            "privatePort": 7860,
            "publicPort": port,
            "type": "http",
        }
    ]
    assert running.url == f"http://127.0.0.1:{port}"
    assert "pa55" not in str(pod)  # the credential (the pod's env) is never read back
    provider.terminate(launched.machine_id)


def test_runpod_cloud_types_pick_their_rows(runpod: EmulatorServer) -> None:
    # A100 80GB SXM has a community row (1.39) and a secure one (1.79) in the price file.
    a100 = next(o for o in _runpod(runpod).list_offers() if o.gpu == "A100 80GB SXM")
    secure = _runpod(runpod, cloud="SECURE").launch(a100, label="subc-sec", api_auth=API_AUTH)
    community = _runpod(runpod, cloud="COMMUNITY").launch(a100, label="subc-com", api_auth=API_AUTH)
    assert (secure.usd_per_hour, community.usd_per_hour) == (Decimal("1.79"), Decimal("1.39"))
    # RTX A4000 is sold on the secure cloud only
    a4000 = next(o for o in _runpod(runpod).list_offers() if o.gpu == "RTX A4000")
    with pytest.raises(OutOfCapacity):
        _runpod(runpod, cloud="COMMUNITY").launch(a4000, label="subc-none", api_auth=API_AUTH)


def test_runpod_wrong_key_is_an_auth_error(runpod: EmulatorServer) -> None:
    with pytest.raises(ProviderAuthError):
        _runpod(runpod, "rpa_wrong").list_offers()
    answer = httpx.post(runpod.url, json={"query": "query MyPods { myself { pods { id } } }"})
    assert answer.status_code == 200
    assert answer.json() == {
        "errors": [
            {
                "message": "Unauthorized",
                "path": ["myself"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
        "data": None,
    }


def test_runpod_graphql_errors(runpod: EmulatorServer) -> None:
    unknown = _graphql(runpod, "query { cpuTypes { id } }")
    assert unknown.status_code == 400
    assert (
        unknown.json()["errors"][0]["message"] == 'Cannot query field "cpuTypes" on type "Query".'
    )
    no_input = _graphql(
        runpod, "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }"
    )
    assert no_input.status_code == 400 and "$input" in no_input.json()["errors"][0]["message"]
    assert _graphql(runpod, "not graphql").status_code == 400
    shorthand = _graphql(runpod, "{ gpuTypes { id } }")  # an anonymous query
    assert shorthand.status_code == 200 and shorthand.json()["data"]["gpuTypes"]
    gone = _graphql(
        runpod,
        "mutation Deploy($input: PodFindAndDeployOnDemandInput!) "
        "{ podFindAndDeployOnDemand(input: $input) { id } }",
        input={"gpuTypeId": "NVIDIA Imaginary 9000", "imageName": "x", "cloudType": "ALL"},
    ).json()
    assert gone["data"] == {"podFindAndDeployOnDemand": None}
    assert gone["errors"][0]["extensions"] == {"code": "SUPPLY_CONSTRAINT"}
    # through the adapter: a sold-out market is out of capacity, unknown pods are gone
    provider = _runpod(runpod)
    offer = provider.list_offers()[0]
    runpod.sell_out()
    assert provider.list_offers() == []
    with pytest.raises(OutOfCapacity):
        provider.launch(offer, label="subc-dry", api_auth=API_AUTH)
    with pytest.raises(MachineGone):
        provider.status("nosuchpod")
    provider.terminate("nosuchpod")  # nothing to give back: no error


def test_runpod_failing_launches_answer_its_internal_error(
    runpod: EmulatorServer, market: EmulatedMarket
) -> None:
    provider = _runpod(runpod)
    offers = provider.list_offers()
    runpod.fail_launches()
    assert provider.list_offers() == offers
    with pytest.raises(ProviderError) as refused:
        provider.launch(offers[0], label="subc-failing", api_auth=API_AUTH)
    assert not isinstance(refused.value, OutOfCapacity)
    answer = _graphql(
        runpod,
        "mutation Deploy($input: PodFindAndDeployOnDemandInput!) "
        "{ podFindAndDeployOnDemand(input: $input) { id } }",
        input={"gpuTypeId": offers[0].offer_id, "imageName": "x", "cloudType": "ALL"},
    ).json()
    assert answer["data"] == {"podFindAndDeployOnDemand": None}
    assert answer["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert market.launched_count == 0
    runpod.fail_launches(False)
    provider.terminate(provider.launch(offers[0], label="subc-ok", api_auth=API_AUTH).machine_id)


# --------------------------------------------------------------------------- interruptible


def test_vast_bids_at_or_above_min_bid_rent_interruptible(vast: EmulatorServer) -> None:
    provider = _vast(vast)
    offer = _cheapest_biddable(provider.list_offers())
    assert offer.min_bid_usd_per_hour == offer.usd_per_hour / 2
    low = offer.min_bid_usd_per_hour - Decimal("0.0001")
    with pytest.raises(OutOfCapacity, match="invalid_price"):
        provider.launch(offer, label="subc-low", api_auth=API_AUTH, bid_usd_per_hour=low)
    refused = httpx.put(
        f"{vast.url}/asks/{offer.offer_id}/",
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


def test_runpod_interruptible_pod_is_preempted_as_the_trace_says(
    runpod: EmulatorServer, market: EmulatedMarket, clock: FakeClock
) -> None:
    provider = _runpod(runpod)
    offer = _cheapest_biddable(provider.list_offers())
    with pytest.raises(ProviderError, match="below the minimum bid"):
        provider.launch(
            offer,
            label="subc-low",
            api_auth=API_AUTH,
            bid_usd_per_hour=Decimal(str(offer.min_bid_usd_per_hour)) - Decimal("0.01"),
        )
    _preempted_while_on_demand_lives(provider, runpod, market, clock)


def test_vast_interruptible_instance_is_preempted_as_the_trace_says(
    vast: EmulatorServer, market: EmulatedMarket, clock: FakeClock
) -> None:
    provider = _vast(vast)
    _preempted_while_on_demand_lives(provider, vast, market, clock)
    rows = httpx.get(
        f"{vast.url}/instances/", headers={"Authorization": f"Bearer {VAST_KEY}"}
    ).json()
    assert rows["instances"] == []


def test_a_preempted_vast_instance_reads_stopped(
    vast: EmulatorServer, market: EmulatedMarket, clock: FakeClock
) -> None:
    provider = _vast(vast)
    offer = _cheapest_biddable(provider.list_offers())
    machine = provider.launch(
        offer, label="subc-stop", api_auth=API_AUTH, bid_usd_per_hour=offer.min_bid_usd_per_hour
    )
    clock.now += 10  # every read applies the trace first: no waiting for the watcher
    headers = {"Authorization": f"Bearer {VAST_KEY}"}
    row = httpx.get(f"{vast.url}/instances/{machine.machine_id}/", headers=headers).json()
    assert row["instances"]["actual_status"] == "stopped"
    assert row["instances"]["is_bid"] is True
    assert row["instances"]["dph_total"] == float(str(offer.min_bid_usd_per_hour))
    provider.terminate(machine.machine_id)


def test_runpod_prices_and_stock_come_from_the_cloud_the_adapter_rents(
    runpod: EmulatorServer, market: EmulatedMarket
) -> None:
    by_cloud: dict[str, dict[str, Decimal]] = {"COMMUNITY": {}, "SECURE": {}}
    for o in market.offers():
        cloud = {"RunPod Community Cloud": "COMMUNITY", "RunPod": "COMMUNITY"}.get(
            str(o["provider_name"]), "SECURE" if o["provider_name"] == "RunPod Secure Cloud" else ""
        )
        if cloud:
            price = Decimal(str(o["usd_per_hour"]))
            by_cloud[cloud][str(o["gpu"])] = min(price, by_cloud[cloud].get(str(o["gpu"]), price))
    for cloud, rows in by_cloud.items():
        offers = _runpod(runpod, cloud=cloud).list_offers()
        assert {o.gpu: o.usd_per_hour for o in offers} == rows
    # a type with no host in the asked cloud answers stockStatus "None", as RunPod may
    only_secure = set(by_cloud["SECURE"]) - set(by_cloud["COMMUNITY"])
    if only_secure:
        answer = _graphql(
            runpod,
            "query G($lp: GpuLowestPriceInput) { gpuTypes { id lowestPrice(input: $lp) "
            "{ stockStatus } } }",
            lp={"gpuCount": 1, "secureCloud": False, "minCudaVersion": "12.6"},
        ).json()["data"]["gpuTypes"]
        stock = {t["id"]: t["lowestPrice"]["stockStatus"] for t in answer}
        assert {stock[f"NVIDIA {gpu}"] for gpu in only_secure} == {"None"}
