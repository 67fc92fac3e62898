"""The RunPod adapter against recorded-shape GraphQL answers (``tests/fixtures/runpod``).

The fixtures follow the answers in RunPod's docs (runpod/docs ``sdks/graphql/manage-pods.mdx``)
and errors as RunPod sends them: HTTP 200 with ``{"errors": [...], "data": ...}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from subconscious.errors import (
    ConfigurationError,
    MachineGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market.runpod import (
    A1111_AUTH_ENV,
    GRAPHQL_URL,
    STARTUP_S,
    RunPodProvider,
    proxy_url,
)
from subconscious.models import Machine, MachineStatus, Offer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runpod"
API_KEY = "rpa_TESTKEY0123456789"
API_AUTH = "subc:s3cret-per-run"
IMAGE = "ghcr.io/example/a1111:1.10"
POD_ID = "50qynxzilsxoey"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def answer(name: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=fixture(name))


class Wire:
    """A mock transport that answers in order and keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def body(self, index: int = -1) -> dict[str, Any]:
        sent: dict[str, Any] = json.loads(self.requests[index].content)
        return sent


Make = Callable[..., tuple[RunPodProvider, Wire, list[float]]]


@pytest.fixture
def make() -> Make:
    def build(
        *answers: httpx.Response | Exception, **options: Any
    ) -> tuple[RunPodProvider, Wire, list[float]]:
        wire = Wire(*answers)
        sleeps: list[float] = []
        client = httpx.Client(transport=httpx.MockTransport(wire))
        provider = RunPodProvider(API_KEY, image=IMAGE, http=client, sleep=sleeps.append, **options)
        return provider, wire, sleeps

    return build


def an_offer(offer_id: str = "NVIDIA GeForce RTX 4090") -> Offer:
    return Offer(
        provider="runpod",
        offer_id=offer_id,
        gpu="RTX 4090",
        gpu_memory_gb=24,
        usd_per_hour=Decimal("0.34"),
        interruptible=True,
        min_bid_usd_per_hour=Decimal("0.29"),
        location="global",
        startup_s=STARTUP_S,
    )


def assert_key_only_in_header(wire: Wire) -> None:
    for request in wire.requests:
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert API_KEY not in str(request.url)
        assert API_KEY not in request.content.decode()
        assert str(request.url) == GRAPHQL_URL


# --- construction ---
def test_missing_key_or_unknown_cloud_type_fails_loudly() -> None:
    with pytest.raises(ConfigurationError):
        RunPodProvider("", image=IMAGE)
    with pytest.raises(ConfigurationError) as excinfo:
        RunPodProvider(API_KEY, image=IMAGE, cloud_type="CHEAP")
    assert API_KEY not in str(excinfo.value)


def test_builds_its_own_client_when_none_is_injected() -> None:
    provider = RunPodProvider(API_KEY, image=IMAGE)
    assert provider.name == "runpod"
    assert API_KEY not in repr(provider)


# --- offers ---
def test_offers_map_exactly(make: Make) -> None:
    provider, _, _ = make(answer("gpu_types"))
    offers = provider.list_offers()
    assert offers == [
        Offer(
            provider="runpod",
            offer_id="NVIDIA GeForce RTX 4090",
            gpu="RTX 4090",
            gpu_count=1,
            gpu_memory_gb=24,
            usd_per_hour=Decimal("0.34"),
            interruptible=True,
            min_bid_usd_per_hour=Decimal("0.29"),
            location="global",
            startup_s=240,
        ),
        Offer(
            provider="runpod",
            offer_id="NVIDIA RTX A6000",
            gpu="RTX A6000",
            gpu_count=1,
            gpu_memory_gb=48,
            usd_per_hour=Decimal("0.33"),  # no uninterruptable price: the community price
            interruptible=False,
            min_bid_usd_per_hour=None,
            location="global",
            startup_s=240,
        ),
        Offer(
            provider="runpod",
            offer_id="NVIDIA H100 80GB HBM3",
            gpu="H100 SXM",
            gpu_count=1,
            gpu_memory_gb=80,
            usd_per_hour=Decimal("2.99"),
            interruptible=False,  # a minimum bid of 0: nobody takes bids now
            min_bid_usd_per_hour=None,
            location="global",
            startup_s=240,
        ),
    ]


def test_prices_are_exact_decimals_not_floats(make: Make) -> None:
    provider, _, _ = make(answer("gpu_types"))
    first = provider.list_offers()[0]
    assert type(first.usd_per_hour) is Decimal
    assert type(first.min_bid_usd_per_hour) is Decimal
    # Decimal(0.29) would be 0.28999999999999998002…; through str() it is exactly 0.29.
    assert first.min_bid_usd_per_hour == Decimal("0.29")
    assert str(first.min_bid_usd_per_hour) == "0.29"


def test_out_of_stock_and_unpriced_types_are_skipped(make: Make) -> None:
    provider, _, _ = make(answer("gpu_types"))
    ids = {o.offer_id for o in provider.list_offers()}
    assert "NVIDIA GeForce RTX 3090" not in ids  # stockStatus null
    assert "NVIDIA A40" not in ids  # lowestPrice null
    assert "unknown" not in ids  # no price at all


def test_offers_send_one_gpu_types_query_with_the_bearer_key(make: Make) -> None:
    provider, wire, _ = make(answer("gpu_types"))
    provider.list_offers()
    assert len(wire.requests) == 1
    request = wire.requests[0]
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    query = wire.body()["query"]
    assert "gpuTypes" in query
    assert "$lowestPrice: GpuLowestPriceInput" in query
    assert "lowestPrice(input: $lowestPrice)" in query
    for field in ("minimumBidPrice", "uninterruptablePrice", "stockStatus", "memoryInGb"):
        assert field in query
    assert_key_only_in_header(wire)


def test_no_gpu_types(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"data": {"gpuTypes": []}}))
    assert provider.list_offers() == []


IN_STOCK = {"stockStatus": "High", "uninterruptablePrice": 1}
NO_ID = {"displayName": "no id", "memoryInGb": 8, "lowestPrice": IN_STOCK}
BAD_PRICE = {**NO_ID, "id": "x", "lowestPrice": {**IN_STOCK, "uninterruptablePrice": "free"}}


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"gpuTypes": None}},
        {"data": {"gpuTypes": [NO_ID]}},
        {"data": {"gpuTypes": ["not an object"]}},
        {"data": {"gpuTypes": [BAD_PRICE]}},
        {"data": None},
        {"data": []},
        ["not", "an", "object"],
        {"errors": "not a list", "data": None},
    ],
)
def test_unexpected_shapes_are_provider_errors(make: Make, body: Any) -> None:
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.list_offers()
    assert type(excinfo.value) is ProviderError


def test_malformed_json_is_a_provider_error(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, content=b"<html>502 Bad Gateway</html>"))
    with pytest.raises(ProviderError) as excinfo:
        provider.list_offers()
    assert type(excinfo.value) is ProviderError
    assert "without JSON" in str(excinfo.value)


# --- transport-level failures (through ProviderHttp) ---
def test_429_waits_for_retry_after_then_succeeds(make: Make) -> None:
    provider, wire, sleeps = make(
        httpx.Response(429, headers={"Retry-After": "7"}), answer("gpu_types")
    )
    assert len(provider.list_offers()) == 3
    assert sleeps == [7.0]
    assert len(wire.requests) == 2


def test_429_until_the_end_is_rate_limited(make: Make) -> None:
    provider, wire, _ = make(*[httpx.Response(429, headers={"Retry-After": "1"})] * 4)
    with pytest.raises(ProviderRateLimited):
        provider.list_offers()
    assert len(wire.requests) == 4


def test_5xx_is_provider_down_after_retries(make: Make) -> None:
    provider, wire, sleeps = make(*[httpx.Response(503)] * 4)
    with pytest.raises(ProviderDown) as excinfo:
        provider.list_offers()
    assert len(wire.requests) == 4 and len(sleeps) == 3
    assert API_KEY not in str(excinfo.value)


def test_http_401_is_an_auth_error(make: Make) -> None:
    provider, _, _ = make(httpx.Response(401, json={"error": "Unauthorized"}))
    with pytest.raises(ProviderAuthError) as excinfo:
        provider.list_offers()
    assert API_KEY not in str(excinfo.value)


def test_a_read_timeout_is_retried_for_a_query(make: Make) -> None:
    provider, wire, _ = make(httpx.ReadTimeout("slow"), answer("gpu_types"))
    assert len(provider.list_offers()) == 3
    assert len(wire.requests) == 2


# --- GraphQL errors, answered with HTTP 200 ---
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("error_out_of_stock", OutOfCapacity),
        ("error_out_of_stock_bare", OutOfCapacity),
        ("error_unauthorized", ProviderAuthError),
        ("error_other", ProviderError),
    ],
)
def test_graphql_errors_at_http_200_are_typed(
    make: Make, name: str, expected: type[ProviderError]
) -> None:
    provider, wire, sleeps = make(answer(name))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(excinfo.value) is expected
    assert fixture(name)["errors"][0]["message"][:40] in str(excinfo.value)
    assert len(wire.requests) == 1 and sleeps == []  # a refusal is not retried


def test_an_auth_refusal_by_message_alone(make: Make) -> None:
    body = {"errors": [{"message": "Invalid API key provided"}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderAuthError):
        provider.machines()


def test_odd_error_entries_still_raise(make: Make) -> None:
    body = {"errors": ["boom", {"message": "x", "extensions": "odd"}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.machines()
    assert "boom; x" in str(excinfo.value)


def test_secrets_echoed_by_the_api_never_reach_errors_or_logs(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"Unauthorized: key {API_KEY} cannot set env A1111_AUTH={API_AUTH}"
    provider, _, _ = make(httpx.Response(200, json={"errors": [{"message": echo}], "data": None}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderAuthError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert API_KEY not in str(excinfo.value) and API_AUTH not in str(excinfo.value)
    assert "[redacted]" in str(excinfo.value)
    assert caplog.records  # the refusal was logged…
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert API_KEY not in logged and API_AUTH not in logged  # …without a secret


def test_an_empty_credential_is_not_scrubbed_into_noise(make: Make) -> None:
    body = {"errors": [{"message": "Something went wrong."}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth="")
    assert str(excinfo.value) == "runpod: podFindAndDeployOnDemand: Something went wrong."


def test_a_very_long_error_message_is_cut(make: Make) -> None:
    body = {"errors": [{"message": "x" * 5000}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.machines()
    assert len(str(excinfo.value)) < 400


# --- launch ---
def test_launch_on_demand_sends_the_pod_spec(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"))
    with caplog.at_level(logging.DEBUG):
        machine = provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    sent = wire.body()
    assert "podFindAndDeployOnDemand(input: $input)" in sent["query"]
    assert "PodFindAndDeployOnDemandInput!" in sent["query"]
    assert "podRentInterruptable" not in sent["query"]
    assert " env" not in sent["query"]  # the answer must not echo the credential back
    spec = sent["variables"]["input"]
    assert spec == {
        "name": "subc-r-1",
        "imageName": IMAGE,
        "gpuTypeId": "NVIDIA GeForce RTX 4090",
        "gpuCount": 1,
        "cloudType": "COMMUNITY",
        "containerDiskInGb": 40,
        "minCudaVersion": "12.6",
        "volumeInGb": 0,
        "ports": "7860/http",
        "dockerArgs": spec["dockerArgs"],
        "env": [{"key": "A1111_AUTH", "value": API_AUTH}],
    }
    assert "bidPerGpu" not in spec
    assert machine == Machine(
        provider="runpod",
        machine_id=POD_ID,
        offer_id="NVIDIA GeForce RTX 4090",
        label="subc-r-1",
        status=MachineStatus.STARTING,
        url=None,
        usd_per_hour=Decimal("0.34"),
    )
    assert_key_only_in_header(wire)
    assert API_AUTH not in caplog.text + " ".join(str(r.__dict__) for r in caplog.records)


def test_docker_args_start_a1111_api_only_with_the_credential_from_env(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"))
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    args = wire.body()["variables"]["input"]["dockerArgs"]
    for flag in ("--api", "--nowebui", "--listen", "--port 7860"):
        assert flag in args
    assert f'--api-auth "${A1111_AUTH_ENV}"' in args
    assert API_AUTH not in args  # env, not the command line: pod listings show dockerArgs
    assert args.startswith("bash -c '") and args.endswith("'")  # so the shell expands it


def test_launch_interruptible_sends_the_bid(make: Make) -> None:
    provider, wire, _ = make(answer("rent_interruptable"))
    machine = provider.launch(
        an_offer(), label="subc-r-2", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.30")
    )
    sent = wire.body()
    assert "podRentInterruptable(input: $input)" in sent["query"]
    assert "PodRentInterruptableInput!" in sent["query"]
    assert "podFindAndDeployOnDemand" not in sent["query"]
    spec = sent["variables"]["input"]
    assert spec["bidPerGpu"] == 0.3
    assert spec["gpuCount"] == 1 and spec["name"] == "subc-r-2"
    assert spec["env"] == [{"key": "A1111_AUTH", "value": API_AUTH}]
    assert machine.machine_id == "fkjbybgpwuvmhk"
    assert machine.usd_per_hour == Decimal("0.3")


def test_launch_honours_cloud_type_and_disk(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"), cloud_type="SECURE", container_disk_gb=60)
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    spec = wire.body()["variables"]["input"]
    assert (spec["cloudType"], spec["containerDiskInGb"]) == ("SECURE", 60)


def test_launch_without_a_cost_in_the_answer_prices_the_bid_or_the_offer(make: Make) -> None:
    bare = {"data": {"podRentInterruptable": {"id": "p1", "desiredStatus": "RUNNING"}}}
    provider, _, _ = make(
        httpx.Response(200, json=bare),
        httpx.Response(200, json={"data": {"podFindAndDeployOnDemand": {"id": "p2"}}}),
    )
    spot = provider.launch(
        an_offer(), label="subc-r-1", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.31")
    )
    on_demand = provider.launch(an_offer(), label="subc-r-2", api_auth=API_AUTH)
    assert spot.usd_per_hour == Decimal("0.31")
    assert on_demand.usd_per_hour == Decimal("0.34")


def test_launch_is_not_retried_on_timeout(make: Make) -> None:
    provider, wire, sleeps = make(httpx.ReadTimeout("slow"), answer("deploy_on_demand"))
    with pytest.raises(ProviderDown) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(wire.requests) == 1 and sleeps == []
    assert "subc-r-1" in str(excinfo.value)  # says where to look for a pod that may exist
    assert API_AUTH not in str(excinfo.value)


def test_launch_is_not_retried_on_a_5xx(make: Make) -> None:
    provider, wire, _ = make(httpx.Response(502), answer("deploy_on_demand"))
    with pytest.raises(ProviderDown):
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(wire.requests) == 1


def test_launch_uses_a_longer_read_timeout(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"))
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert wire.requests[0].extensions["timeout"]["read"] == 30.0


def test_a_null_launch_result_without_errors_is_out_of_capacity(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"data": {"podFindAndDeployOnDemand": None}}))
    with pytest.raises(OutOfCapacity):
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)


def test_a_launch_answer_without_an_id_is_a_provider_error(make: Make) -> None:
    body = {"data": {"podFindAndDeployOnDemand": {"desiredStatus": "RUNNING"}}}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(excinfo.value) is ProviderError


# --- status ---
@pytest.mark.parametrize(
    ("name", "status", "url"),
    [
        ("pod_running", MachineStatus.RUNNING, f"https://{POD_ID}-7860.proxy.runpod.net"),
        ("pod_running_no_runtime", MachineStatus.STARTING, None),
        ("pod_running_ports_null", MachineStatus.STARTING, None),
        ("pod_created", MachineStatus.STARTING, None),
        ("pod_exited", MachineStatus.EXITED, None),
        ("pod_terminated", MachineStatus.EXITED, None),
    ],
)
def test_status_maps_the_pod(make: Make, name: str, status: MachineStatus, url: str | None) -> None:
    provider, wire, _ = make(answer(name))
    machine = provider.status(POD_ID)
    assert (machine.status, machine.url) == (status, url)
    assert machine.machine_id == POD_ID
    assert machine.provider == "runpod"
    sent = wire.body()
    assert "pod(input: $input)" in sent["query"] and "PodFilter!" in sent["query"]
    assert sent["variables"] == {"input": {"podId": POD_ID}}
    assert_key_only_in_header(wire)


def test_status_fields_come_from_the_pod(make: Make) -> None:
    provider, _, _ = make(answer("pod_running"), answer("pod_terminated"))
    assert provider.status(POD_ID) == Machine(
        provider="runpod",
        machine_id=POD_ID,
        offer_id="NVIDIA GeForce RTX 4090",
        label="subc-r-1",
        status=MachineStatus.RUNNING,
        url=proxy_url(POD_ID),
        usd_per_hour=Decimal("0.34"),
    )
    ended = provider.status(POD_ID)  # an ended pod has no machine and no cost any more
    assert (ended.offer_id, ended.usd_per_hour) == ("", Decimal(0))


def test_the_proxy_url_template_can_point_at_the_port_mapping(make: Make) -> None:
    # The local stack's emulated pods serve on their mapped port, not behind RunPod's proxy.
    provider, _, _ = make(answer("pod_running"), proxy_url="http://{ip}:{public_port}")
    assert provider.status(POD_ID).url == "http://100.65.0.101:60141"


@pytest.mark.parametrize("template", ["https://{pod}.example", "https://{0}.example"])
def test_a_bad_proxy_url_template_fails_loudly(template: str) -> None:
    with pytest.raises(ConfigurationError, match="proxy URL"):
        RunPodProvider(API_KEY, image=IMAGE, proxy_url=template)


def test_a_running_pod_with_only_other_ports_is_still_starting(make: Make) -> None:
    pod = fixture("pod_running")
    pod["data"]["pod"]["runtime"]["ports"][0]["privatePort"] = 22
    provider, _, _ = make(httpx.Response(200, json=pod))
    assert provider.status(POD_ID).status is MachineStatus.STARTING


def test_status_of_a_pod_runpod_no_longer_has_is_machine_gone(make: Make) -> None:
    provider, _, _ = make(answer("pod_null"))
    with pytest.raises(MachineGone) as excinfo:
        provider.status("nope")
    assert type(excinfo.value) is MachineGone


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"pod": "not an object"}},
        {"data": {"pod": {"name": "no id", "desiredStatus": "RUNNING"}}},
        {"data": {"pod": {"id": "p", "desiredStatus": "RUNNING", "runtime": {"ports": ["x"]}}}},
        {"data": {"pod": {"id": "p", "desiredStatus": "RUNNING", "costPerHr": "lots"}}},
    ],
)
def test_status_of_an_odd_pod_is_a_provider_error(make: Make, body: dict[str, Any]) -> None:
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.status(POD_ID)
    assert type(excinfo.value) is ProviderError


# --- terminate ---
def test_terminate_sends_pod_terminate(make: Make) -> None:
    provider, wire, _ = make(answer("terminate_ok"))
    provider.terminate(POD_ID)
    sent = wire.body()
    assert "podTerminate(input: $input)" in sent["query"]
    assert "PodTerminateInput!" in sent["query"]
    assert sent["variables"] == {"input": {"podId": POD_ID}}
    assert_key_only_in_header(wire)


def test_terminate_twice_is_fine(make: Make) -> None:
    provider, wire, _ = make(answer("terminate_ok"), answer("terminate_ok"))
    provider.terminate(POD_ID)
    provider.terminate(POD_ID)
    assert len(wire.requests) == 2


@pytest.mark.parametrize("then", ["pod_null", "pod_terminated"])
def test_terminate_of_a_pod_already_gone_is_fine(make: Make, then: str) -> None:
    refused = {"errors": [{"message": "pod not found", "path": ["podTerminate"]}], "data": None}
    provider, wire, _ = make(httpx.Response(200, json=refused), answer(then))
    provider.terminate(POD_ID)
    assert len(wire.requests) == 2  # it asked whether the pod still exists


def test_terminate_of_a_pod_answering_404_is_fine(make: Make) -> None:
    provider, _, _ = make(httpx.Response(404))
    provider.terminate(POD_ID)


def test_terminate_refused_for_a_live_pod_raises(make: Make) -> None:
    refused = {"errors": [{"message": "Something went wrong."}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=refused), answer("pod_running"))
    with pytest.raises(ProviderError) as excinfo:
        provider.terminate(POD_ID)
    assert "Something went wrong" in str(excinfo.value)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (answer("error_unauthorized"), ProviderAuthError),
        (httpx.Response(503), ProviderDown),
        (httpx.Response(429), ProviderRateLimited),
    ],
)
def test_terminate_does_not_swallow_auth_or_outages(
    make: Make, failure: httpx.Response, expected: type[ProviderError]
) -> None:
    provider, wire, _ = make(*[failure] * 4)
    with pytest.raises(expected):
        provider.terminate(POD_ID)
    assert all("podTerminate" in json.loads(r.content)["query"] for r in wire.requests)


# --- machines ---
def test_machines_lists_only_ours(make: Make) -> None:
    provider, wire, _ = make(answer("my_pods"))
    machines = provider.machines()
    assert [(m.machine_id, m.label, m.status) for m in machines] == [
        (POD_ID, "subc-r-1", MachineStatus.RUNNING),
        ("fkjbybgpwuvmhk", "subc-r-10", MachineStatus.EXITED),
    ]
    assert machines[0].url == proxy_url(POD_ID)
    assert machines[0].usd_per_hour == Decimal("0.34")
    query = wire.body()["query"]
    assert "myself" in query and "pods" in query and "gpuDisplayName" in query
    assert_key_only_in_header(wire)


def test_machines_with_a_label_match_it_exactly(make: Make) -> None:
    provider, _, _ = make(answer("my_pods"), answer("my_pods"))
    assert [m.machine_id for m in provider.machines("subc-r-1")] == [POD_ID]  # not subc-r-10
    assert provider.machines("subc-r-99") == []


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"myself": None}},
        {"data": {"myself": {"pods": None}}},
    ],
)
def test_machines_without_a_pod_list_is_a_provider_error(make: Make, body: dict[str, Any]) -> None:
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError):
        provider.machines()


def test_machines_skips_entries_that_are_not_pods(make: Make) -> None:
    body = {"data": {"myself": {"pods": ["junk", {"id": "p", "name": 7}]}}}
    provider, _, _ = make(httpx.Response(200, json=body))
    assert provider.machines() == []


def test_the_lean_workers_settings_ride_in_env(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"))
    provider.launch(
        an_offer(),
        label="subc-r-3",
        api_auth=API_AUTH,
        worker_env={"WORKER_COMPILE_SHAPES": "512x512x8"},
    )
    assert wire.body()["variables"]["input"]["env"] == [
        {"key": "A1111_AUTH", "value": API_AUTH},
        {"key": "WORKER_COMPILE_SHAPES", "value": "512x512x8"},
    ]


def test_only_plain_worker_settings_reach_a_pod(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"))
    with pytest.raises(ValueError, match="worker setting"):
        provider.launch(
            an_offer(), label="subc-r-3", api_auth=API_AUTH, worker_env={"A1111_AUTH": "u:p"}
        )
    assert not wire.requests


# --- issue 14: RunPod as it really answers (sources: tests/fixtures/runpod/README.md) ---
@pytest.mark.parametrize("bid", [None, Decimal("0.30")], ids=["on-demand", "interruptible"])
def test_every_launch_asks_for_a_host_whose_driver_runs_the_image(
    make: Make, bid: Decimal | None
) -> None:
    # dstack sends minCudaVersion in both mutations; without it a pod can land on an older
    # driver, never start its container, and bill with runtime null for ever.
    name = "deploy_on_demand" if bid is None else "rent_interruptable"
    provider, wire, _ = make(answer(name))
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH, bid_usd_per_hour=bid)
    assert wire.body()["variables"]["input"]["minCudaVersion"] == "12.6"


def test_the_cuda_floor_follows_the_image(make: Make) -> None:
    provider, wire, _ = make(answer("deploy_on_demand"), min_cuda_version="12.8")
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert wire.body()["variables"]["input"]["minCudaVersion"] == "12.8"


@pytest.mark.parametrize(
    ("cloud_type", "secure_cloud"),
    [("COMMUNITY", False), ("SECURE", True), ("ALL", None)],
)
def test_price_and_stock_are_asked_for_the_cloud_disk_and_cuda_we_rent(
    make: Make, cloud_type: str, secure_cloud: bool | None
) -> None:
    provider, wire, _ = make(
        answer("gpu_types_community"), cloud_type=cloud_type, container_disk_gb=60
    )
    provider.list_offers()
    expected: dict[str, Any] = {"gpuCount": 1, "totalDisk": 60, "minCudaVersion": "12.6"}
    if secure_cloud is not None:
        expected["secureCloud"] = secure_cloud  # omitted for ALL, as runpodctl leaves it null
    assert wire.body()["variables"] == {"lowestPrice": expected}


def test_a_stock_status_of_none_as_a_string_is_out_of_stock(make: Make) -> None:
    provider, _, _ = make(answer("gpu_types_community"))
    offers = {o.offer_id: o for o in provider.list_offers()}
    assert "NVIDIA RTX A6000" not in offers  # stockStatus "None": priced only by its list price
    assert "NVIDIA H100 80GB HBM3" not in offers  # stockStatus null
    assert offers["NVIDIA GeForce RTX 4090"].usd_per_hour == Decimal("0.34")


@pytest.mark.parametrize(
    ("cloud_type", "price"),
    [("COMMUNITY", Decimal("0.79")), ("SECURE", Decimal("0.86")), ("ALL", Decimal("0.79"))],
)
def test_without_a_lowest_price_the_list_price_of_our_cloud_is_used(
    make: Make, cloud_type: str, price: Decimal
) -> None:
    provider, _, _ = make(answer("gpu_types_community"), cloud_type=cloud_type)
    offers = {o.offer_id: o for o in provider.list_offers()}
    assert offers["NVIDIA L40S"].usd_per_hour == price


def test_a_graphql_validation_error_at_http_400_keeps_its_words(make: Make) -> None:
    provider, wire, _ = make(answer("error_validation_400", status=400))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    error = excinfo.value
    assert type(error) is ProviderError  # our request is wrong: no other offer would do better
    assert 'Field "objectMounts" is not defined' in str(error)
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    ("errors", "kind"),
    [
        (
            [{"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}],
            ProviderAuthError,
        ),
        (
            [{"message": "There are no longer any instances available with enough disk space."}],
            OutOfCapacity,
        ),
    ],
    ids=["auth", "out-of-stock"],
)
def test_errors_at_http_400_are_typed_like_those_at_200(
    make: Make, errors: list[dict[str, Any]], kind: type[ProviderError]
) -> None:
    provider, _, _ = make(httpx.Response(400, json={"errors": errors}))
    with pytest.raises(kind):
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)


def test_a_400_without_graphql_errors_keeps_the_shared_mapping(make: Make) -> None:
    provider, _, _ = make(httpx.Response(400, text="<html>Bad Request</html>"))
    with pytest.raises(ProviderError, match="answered 400"):
        provider.list_offers()


def test_a_paused_pod_has_ended(make: Make) -> None:
    provider, _, _ = make(answer("pod_paused"))
    machine = provider.status(POD_ID)
    assert (machine.status, machine.url) == (MachineStatus.EXITED, None)


def test_a_pod_that_never_gets_a_runtime_stays_starting(make: Make) -> None:
    # RUNNING with runtime null (the wrong-driver failure) is never read as serving; the run's
    # ready timeout (WaitReady) bounds what it costs.
    provider, _, _ = make(*(answer("pod_running_no_runtime") for _ in range(3)))
    assert {provider.status(POD_ID).status for _ in range(3)} == {MachineStatus.STARTING}
