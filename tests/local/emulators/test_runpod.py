"""The RunPod emulator (REST v2 and GraphQL on one server), driven by the real adapter end to
end, interruptible pods included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from infra.local.emulated_market import EmulatedMarket
from infra.local.emulators import EmulatorServer, RunPodEmulatorServer, serve_runpod
from subconscious.errors import (
    MachineGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
)
from subconscious.market.runpod import START_COMMAND, RunPodProvider
from subconscious.models import MachineStatus
from tests.local.emulators.helpers import (
    API_AUTH,
    FakeClock,
    _cheapest_biddable,
    _preempted_while_on_demand_lives,
    _round_trip,
    _wait_running,
)

RUNPOD_KEY = "rpa_emulated_0123456789"
LOCAL_PROXY = "http://{ip}:{public_port}"
BEARER = {"Authorization": f"Bearer {RUNPOD_KEY}"}


@pytest.fixture
def market(spot_market: EmulatedMarket) -> EmulatedMarket:
    # Every RunPod test rents from the market with one spot pool for every Vast.ai and RunPod
    # offer: capacity for a tick of 10 s, then none.
    return spot_market


@pytest.fixture
def runpod(market: EmulatedMarket) -> Iterator[RunPodEmulatorServer]:
    server = serve_runpod(market, RUNPOD_KEY)
    yield server
    server.close()


def _runpod(
    server: RunPodEmulatorServer,
    key: str = RUNPOD_KEY,
    cloud: str = "ALL",
    min_cuda: str = "12.6",
) -> RunPodProvider:
    return RunPodProvider(
        key,
        url=server.url,
        rest_url=server.rest_url,
        image="local/a1111",
        cloud_type=cloud,
        min_cuda_version=min_cuda,
        proxy_url=LOCAL_PROXY,
        sleep=lambda _: None,
    )


def _graphql(server: EmulatorServer, query: str, **variables: object) -> httpx.Response:
    return httpx.post(server.url, json={"query": query, "variables": variables}, headers=BEARER)


def _rest(
    server: RunPodEmulatorServer,
    method: str,
    path: str,
    *,
    json: object = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.rest_url}{path}",
        headers=BEARER,
        json=json,
        content=content,
        params=params,
    )


def test_one_server_serves_both_apis(runpod: RunPodEmulatorServer) -> None:
    assert runpod.url.endswith("/graphql") and runpod.rest_url.endswith("/v2")
    assert runpod.url.removesuffix("/graphql") == runpod.rest_url.removesuffix("/v2")


def test_runpod_offers_are_the_market_rows_lowest_over_both_clouds(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
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


def test_runpod_adapter_runs_end_to_end(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
) -> None:
    _round_trip(_runpod(runpod), runpod, market, "subc-run-runpod")


def test_runpod_pod_reads_as_rest_v2_reports_it(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
) -> None:
    provider = _runpod(runpod, cloud="COMMUNITY")
    offer = provider.list_offers()[0]
    launched = provider.launch(
        offer, label="subc-read", api_auth=API_AUTH, worker_env={"WORKER_COMPILE_SHAPES": "8x8x1"}
    )
    running = _wait_running(provider, launched.machine_id)
    pod = _rest(runpod, "GET", f"/pods/{launched.machine_id}").json()
    port = int(str(market.machine(runpod.market_machine_id(launched.machine_id))["url"])[-5:])
    assert pod["status"] == "RUNNING" and pod["actions"] == ["stop", "restart", "terminate"]
    assert pod["runtime"]["ports"] == [
        {"private": 7860, "public": port, "type": "http", "ip": "127.0.0.1"}
    ]
    assert (pod["gpu"], pod["cloud"], pod["name"]) == (
        {"id": offer.offer_id, "count": 1},
        "COMMUNITY",
        "subc-read",
    )
    assert pod["cost"] == float(offer.usd_per_hour) and pod["ports"] == ["7860/http"]
    assert pod["disk"] == 40 and pod["mounts"] == {} and pod["args"] == START_COMMAND
    assert pod["env"] == {"WORKER_COMPILE_SHAPES": "8x8x1"}  # never the credential
    assert running.url == f"http://127.0.0.1:{port}"
    listed = _rest(runpod, "GET", "/pods").json()["pods"]
    assert [p["id"] for p in listed] == [launched.machine_id]
    assert "pa55" not in str(listed)
    deleted = _rest(runpod, "DELETE", f"/pods/{launched.machine_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    gone = _rest(runpod, "DELETE", f"/pods/{launched.machine_id}")
    assert gone.status_code == 404
    assert gone.json() == {"title": "Not Found", "status": 404, "detail": "pod not found"}


def test_runpod_cloud_types_pick_their_rows(runpod: RunPodEmulatorServer) -> None:
    # A100 80GB SXM has a community row (1.39) and a secure one (1.79) in the price file.
    a100 = next(o for o in _runpod(runpod).list_offers() if o.gpu == "A100 80GB SXM")
    secure = _runpod(runpod, cloud="SECURE").launch(a100, label="subc-sec", api_auth=API_AUTH)
    community = _runpod(runpod, cloud="COMMUNITY").launch(a100, label="subc-com", api_auth=API_AUTH)
    assert (secure.usd_per_hour, community.usd_per_hour) == (Decimal("1.79"), Decimal("1.39"))
    # RTX A4000 is sold on the secure cloud only: COMMUNITY is out of stock, ALL falls through
    a4000 = next(o for o in _runpod(runpod).list_offers() if o.gpu == "RTX A4000")
    with pytest.raises(OutOfCapacity):
        _runpod(runpod, cloud="COMMUNITY").launch(a4000, label="subc-none", api_auth=API_AUTH)
    fresh = _runpod(runpod)  # no listing behind it: community first, then secure
    placed = fresh.launch(a4000, label="subc-any", api_auth=API_AUTH)
    assert _rest(runpod, "GET", f"/pods/{placed.machine_id}").json()["cloud"] == "SECURE"


def test_runpod_wrong_key_is_an_auth_error(runpod: RunPodEmulatorServer) -> None:
    with pytest.raises(ProviderAuthError):
        _runpod(runpod, "rpa_wrong").list_offers()
    with pytest.raises(ProviderAuthError):
        _runpod(runpod, "rpa_wrong").machines()
    missing = httpx.get(f"{runpod.rest_url}/pods")
    assert missing.status_code == 401
    assert missing.json() == {
        "title": "Unauthorized",
        "status": 401,
        "detail": "missing bearer token",
    }
    # REST takes the header only, never the key in the URL
    in_url = httpx.get(f"{runpod.rest_url}/pods", params={"api_key": RUNPOD_KEY})
    assert in_url.status_code == 401
    wrong = httpx.get(f"{runpod.rest_url}/pods", headers={"Authorization": "Bearer nope"})
    assert wrong.json()["detail"] == "invalid bearer token"
    answer = httpx.post(runpod.url, json={"query": "query G { gpuTypes { id } }"})
    assert answer.status_code == 200
    assert answer.json() == {
        "errors": [
            {
                "message": "Unauthorized",
                "path": ["gpuTypes"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
        "data": None,
    }


def test_runpod_rest_errors(runpod: RunPodEmulatorServer) -> None:
    body = {"name": "subc-x", "image": "x", "gpu": {"id": "NVIDIA L40S"}, "cloud": "COMMUNITY"}
    unknown = _rest(runpod, "POST", "/pods", json={**body, "dockerArgs": ""})
    assert unknown.status_code == 422
    assert unknown.json() == {
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "Request validation failed.",
        "errors": ["$: additional properties 'dockerArgs' not allowed"],
    }
    no_name = _rest(runpod, "POST", "/pods", json={k: v for k, v in body.items() if k != "name"})
    assert no_name.json()["errors"] == ["$: missing property 'name'"]
    bad_floor = _rest(
        runpod, "POST", "/pods", json={**body, "gpu": {"id": "x", "minCudaVersion": "12"}}
    )
    assert bad_floor.status_code == 422
    both = {"id": "x", "minCudaVersion": "12.6", "allowedCudaVersions": ["12.8"]}
    assert _rest(runpod, "POST", "/pods", json={**body, "gpu": both}).status_code == 400
    assert _rest(runpod, "POST", "/pods", json={**body, "cloud": "ALL"}).status_code == 422
    assert _rest(runpod, "POST", "/pods", json={**body, "env": []}).status_code == 422
    assert _rest(runpod, "POST", "/pods", json={**body, "gpu": None}).status_code == 400
    assert _rest(runpod, "POST", "/pods", content=b"[]").status_code == 400
    imaginary = _rest(runpod, "POST", "/pods", json={**body, "gpu": {"id": "NVIDIA Imaginary"}})
    assert imaginary.status_code == 400
    assert "no longer any instances available" in imaginary.json()["detail"]
    assert _rest(runpod, "GET", "/pods/nosuchpod").status_code == 404
    assert _rest(runpod, "GET", "/templates").status_code == 404
    assert _rest(runpod, "PUT", "/pods").status_code == 405
    catalog = "/catalog/gpus"
    assert _rest(runpod, "GET", catalog, params={"include": "AVAILABILITY"}).status_code == 400
    assert _rest(runpod, "GET", catalog, params={"cloud": "SECURE"}).status_code == 400
    scoped = {"include": "AVAILABILITY", "product": "POD"}
    for bad in ({"cloud": "ALL"}, {"count": "0"}, {"minCudaVersion": "x"}, {"include": "X"}):
        assert _rest(runpod, "GET", catalog, params={**scoped, **bad}).status_code == 422
    # without AVAILABILITY the catalog lists prices alone
    plain = _rest(runpod, "GET", catalog).json()["gpus"]
    assert plain and not any("availability" in gpu for gpu in plain)
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


def test_runpod_graphql_errors(runpod: RunPodEmulatorServer) -> None:
    # only what the adapter still sends is served: the pod reads moved to REST
    unknown = _graphql(runpod, 'query Pod { pod(input: {podId: "x"}) { id } }')
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["message"] == 'Cannot query field "pod" on type "Query".'
    no_input = _graphql(
        runpod,
        "mutation R($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) "
        "{ id } }",
    )
    assert no_input.status_code == 400 and "$input" in no_input.json()["errors"][0]["message"]
    assert _graphql(runpod, "not graphql").status_code == 400
    shorthand = _graphql(runpod, "{ gpuTypes { id } }")  # an anonymous query
    assert shorthand.status_code == 200 and shorthand.json()["data"]["gpuTypes"]
    assert httpx.get(runpod.url, headers=BEARER).status_code == 404
    gone = _graphql(
        runpod,
        "mutation R($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) "
        "{ id } }",
        input={"gpuTypeId": "NVIDIA Imaginary 9000", "imageName": "x", "bidPerGpu": 0.2},
    ).json()
    assert gone["data"] == {"podRentInterruptable": None}
    assert gone["errors"][0]["extensions"] == {"code": "SUPPLY_CONSTRAINT"}


def test_runpod_failing_launches_answer_its_server_error(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
) -> None:
    provider = _runpod(runpod)
    offers = provider.list_offers()
    runpod.fail_launches()
    assert provider.list_offers() == offers
    with pytest.raises(ProviderDown) as refused:  # a 5xx: "a pod may exist under that label"
        provider.launch(offers[0], label="subc-failing", api_auth=API_AUTH)
    assert "subc-failing" in str(refused.value)
    offer = _cheapest_biddable(offers)
    with pytest.raises(ProviderError) as spot:
        provider.launch(
            offer,
            label="subc-failing",
            api_auth=API_AUTH,
            bid_usd_per_hour=offer.min_bid_usd_per_hour,
        )
    assert not isinstance(spot.value, OutOfCapacity)
    answer = _rest(
        runpod,
        "POST",
        "/pods",
        json={"name": "subc-x", "image": "x", "gpu": {"id": offers[0].offer_id}},
    )
    assert answer.status_code == 500 and answer.json()["title"] == "Internal Server Error"
    assert market.launched_count == 0
    runpod.fail_launches(False)
    provider.terminate(provider.launch(offers[0], label="subc-ok", api_auth=API_AUTH).machine_id)


def test_runpod_never_start_bills_a_pod_that_never_serves(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
) -> None:
    provider = _runpod(runpod)
    offer = provider.list_offers()[0]
    runpod.never_start()
    stuck = provider.launch(offer, label="subc-stuck", api_auth=API_AUTH)
    market_id = runpod.market_machine_id(stuck.machine_id)
    deadline = time.monotonic() + 10
    while market.machine(market_id)["status"] != "running":  # its renderer is up and billing…
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pod = _rest(runpod, "GET", f"/pods/{stuck.machine_id}").json()
    assert (pod["status"], pod["runtime"], pod["startedAt"]) == ("RUNNING", None, None)
    assert pod["cost"] == float(offer.usd_per_hour)
    # …but the adapter never reads it as serving: RUNNING (billed) without a URL, so the
    # run's serve deadline from RUNNING bounds it
    stuck_reads = {(m.status, m.url) for m in (provider.status(stuck.machine_id) for _ in "abc")}
    assert stuck_reads == {(MachineStatus.RUNNING, None)}
    assert [(m.machine_id, m.status, m.url) for m in provider.machines("subc-stuck")] == [
        (stuck.machine_id, MachineStatus.RUNNING, None)
    ]
    runpod.never_start(False)  # pods rented from now on start; the stuck one stays stuck
    fine = provider.launch(offer, label="subc-fine", api_auth=API_AUTH)
    assert _wait_running(provider, fine.machine_id).url is not None
    assert provider.status(stuck.machine_id).url is None
    for machine in (stuck, fine):
        provider.terminate(machine.machine_id)
    assert market.process(market_id).poll() is not None
    assert provider.machines() == []


def test_runpod_never_start_holds_for_interruptible_pods(runpod: RunPodEmulatorServer) -> None:
    provider = _runpod(runpod)
    offer = _cheapest_biddable(provider.list_offers())
    runpod.never_start()
    spot = provider.launch(
        offer, label="subc-spot", api_auth=API_AUTH, bid_usd_per_hour=offer.min_bid_usd_per_hour
    )
    pod = _rest(runpod, "GET", f"/pods/{spot.machine_id}").json()  # GraphQL's pod, read by REST
    assert (pod["status"], pod["runtime"]) == ("RUNNING", None)
    assert provider.status(spot.machine_id).url is None
    provider.terminate(spot.machine_id)


def test_runpod_hosts_run_one_cuda(runpod: RunPodEmulatorServer) -> None:
    # Every emulated host's driver runs CUDA 12.8: a floor above it finds no host, as RunPod
    # answers a constraint no machine meets with a capacity error.
    assert _runpod(runpod, min_cuda="12.8").list_offers()
    too_new = _runpod(runpod, min_cuda="13.0")
    assert too_new.list_offers() == []
    with pytest.raises(OutOfCapacity):
        too_new.launch(_runpod(runpod).list_offers()[0], label="subc-cuda", api_auth=API_AUTH)


def test_runpod_interruptible_pod_is_preempted_as_the_trace_says(
    runpod: RunPodEmulatorServer, market: EmulatedMarket, clock: FakeClock
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


def test_runpod_prices_and_stock_come_from_the_cloud_the_adapter_rents(
    runpod: RunPodEmulatorServer, market: EmulatedMarket
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
        # and REST's catalog, asked for the community cloud, NONE with no community price
        gpus = _rest(
            runpod,
            "GET",
            "/catalog/gpus",
            params={"include": "AVAILABILITY", "product": "POD", "cloud": "COMMUNITY"},
        ).json()["gpus"]
        for gpu in (g for g in gpus if g["name"] in only_secure):
            assert (gpu["availability"], gpu["community"], gpu["price"]["community"]) == (
                "NONE",
                False,
                0,
            )
            assert "dataCenters" not in gpu
