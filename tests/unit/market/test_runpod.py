"""The RunPod adapter against recorded-shape answers (``tests/fixtures/runpod``, sources in its
README): REST v2 (``rest_*.json``, runpod/docs ``api-reference-v2/openapi.json``) for offers and
on-demand pods, GraphQL for interruptible pods and minimum bids (errors at HTTP 200 with
``{"errors": [...]}``)."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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
    CREDENTIAL_ENV,
    GRAPHQL_URL,
    REST_URL,
    START_COMMAND,
    STARTUP_S,
    RunPodProvider,
    proxy_url,
)
from subconscious.models import Machine, MachineStatus, Offer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runpod"
API_KEY = "rpa_TESTKEY0123456789"
API_AUTH = "subc:s3cret-per-run"  # the credential the pod fixtures echo back in ``env``
IMAGE = "ghcr.io/example/a1111:1.10"
POD_ID = "50qynxzilsxoey"
CATALOG = f"{REST_URL}/catalog/gpus"
PODS = f"{REST_URL}/pods"
POD = f"{PODS}/{POD_ID}"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def answer(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=fixture(name), headers=headers)


def problem(name: str) -> httpx.Response:
    body = fixture(name)
    return httpx.Response(
        body["status"], json=body, headers={"Content-Type": "application/problem+json"}
    )


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

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def where(self, index: int = -1) -> tuple[str, str]:
        request = self.requests[index]
        return request.method, str(request.url.copy_with(query=None))

    def query(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(self.requests[index].url.query.decode())


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


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return caplog.text + " ".join(str(r.__dict__) for r in caplog.records)


def assert_key_only_in_header(wire: Wire) -> None:
    for request in wire.requests:
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert API_KEY not in str(request.url)
        assert API_KEY not in request.content.decode()


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


@pytest.mark.parametrize("template", ["https://{pod}.example", "https://{0}.example"])
def test_a_bad_proxy_url_template_fails_loudly(template: str) -> None:
    with pytest.raises(ConfigurationError, match="proxy URL"):
        RunPodProvider(API_KEY, image=IMAGE, proxy_url=template)


def test_the_documented_endpoints() -> None:
    # runpod/docs api-reference-v2/overview.mdx: base URL https://api.runpod.io/v2
    assert REST_URL == "https://api.runpod.io/v2"
    assert GRAPHQL_URL == "https://api.runpod.io/graphql"


# --- offers: REST v2's catalog, GraphQL's minimum bids ---
def test_offers_map_exactly(make: Make) -> None:
    provider, _, _ = make(answer("rest_catalog_gpus_community"), answer("gpu_types"))
    assert provider.list_offers() == [
        Offer(
            provider="runpod",
            offer_id="NVIDIA GeForce RTX 4090",
            gpu="RTX 4090",
            gpu_count=1,
            gpu_memory_gb=24,
            usd_per_hour=Decimal("0.34"),  # price.community
            interruptible=True,
            min_bid_usd_per_hour=Decimal("0.29"),  # GraphQL's minimumBidPrice
            location="global",
            startup_s=240,
        ),
        Offer(
            provider="runpod",
            offer_id="NVIDIA L40S",
            gpu="L40S",
            gpu_count=1,
            gpu_memory_gb=48,
            usd_per_hour=Decimal("0.79"),
            interruptible=False,  # no minimum bid for this type
            min_bid_usd_per_hour=None,
            location="global",
            startup_s=240,
        ),
    ]


def test_out_of_stock_unsold_and_unpriced_types_are_skipped(make: Make) -> None:
    provider, _, _ = make(answer("rest_catalog_gpus_community"), answer("gpu_types"))
    ids = {o.offer_id for o in provider.list_offers()}
    assert "NVIDIA RTX A6000" not in ids  # availability NONE
    assert "NVIDIA H100 80GB HBM3" not in ids  # community: false
    assert "unknown" not in ids  # no price at all


def test_offers_ask_the_catalog_for_the_cloud_count_and_cuda_we_rent(make: Make) -> None:
    provider, wire, _ = make(answer("rest_catalog_gpus_community"), answer("gpu_types"))
    provider.list_offers()
    assert len(wire.requests) == 2
    assert wire.where(0) == ("GET", CATALOG)
    assert wire.query(0) == {
        "include": ["AVAILABILITY"],
        "product": ["POD"],
        "cloud": ["COMMUNITY"],
        "count": ["1"],
        "minCudaVersion": ["12.6"],
    }
    assert wire.where(1) == ("POST", GRAPHQL_URL)
    sent = wire.body(1)
    assert "lowestPrice(input: $lowestPrice)" in sent["query"]
    assert "minimumBidPrice" in sent["query"] and "stockStatus" in sent["query"]
    assert sent["variables"] == {
        "lowestPrice": {
            "gpuCount": 1,
            "totalDisk": 40,
            "minCudaVersion": "12.6",
            "secureCloud": False,
        }
    }
    assert_key_only_in_header(wire)


def test_prices_are_exact_decimals_not_floats(make: Make) -> None:
    provider, _, _ = make(answer("rest_catalog_gpus_community"), answer("gpu_types"))
    first = provider.list_offers()[0]
    assert type(first.usd_per_hour) is Decimal
    assert type(first.min_bid_usd_per_hour) is Decimal
    # Decimal(0.29) would be 0.28999999999999998002…; through str() it is exactly 0.29.
    assert str(first.min_bid_usd_per_hour) == "0.29"


def test_the_secure_cloud_lists_secure_prices(make: Make) -> None:
    provider, wire, _ = make(
        answer("rest_catalog_gpus_secure"), answer("gpu_types_community"), cloud_type="SECURE"
    )
    offers = {o.offer_id: o.usd_per_hour for o in provider.list_offers()}
    assert offers == {
        "NVIDIA GeForce RTX 4090": Decimal("0.69"),
        "NVIDIA RTX A6000": Decimal("0.49"),
        "NVIDIA L40S": Decimal("0.86"),
        "NVIDIA H100 80GB HBM3": Decimal("2.69"),
    }
    assert wire.query(0)["cloud"] == ["SECURE"]
    assert wire.body(1)["variables"]["lowestPrice"]["secureCloud"] is True


def test_all_asks_both_clouds_and_keeps_the_cheaper_in_stock(make: Make) -> None:
    provider, wire, _ = make(
        answer("rest_catalog_gpus_community"),
        answer("rest_catalog_gpus_secure"),
        answer("gpu_types"),
        cloud_type="ALL",
    )
    offers = {o.offer_id: o.usd_per_hour for o in provider.list_offers()}
    assert offers == {
        "NVIDIA GeForce RTX 4090": Decimal("0.34"),  # community
        "NVIDIA RTX A6000": Decimal("0.49"),  # secure: none free in community
        "NVIDIA L40S": Decimal("0.79"),
        "NVIDIA H100 80GB HBM3": Decimal("2.69"),  # sold in the secure cloud only
    }
    assert [wire.query(i)["cloud"] for i in (0, 1)] == [["COMMUNITY"], ["SECURE"]]
    # as runpodctl leaves secureCloud null for both clouds
    assert "secureCloud" not in wire.body(2)["variables"]["lowestPrice"]


def test_no_gpu_types(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"gpus": []}), answer("gpu_types"))
    assert provider.list_offers() == []


IN_STOCK = {"availability": "HIGH", "community": True, "price": {"community": 1}}


@pytest.mark.parametrize(
    "body",
    [
        {"gpus": None},
        {"gpus": ["not an object"]},
        {"gpus": [{"name": "no id", **IN_STOCK}]},
        {"gpus": [{"id": "x", "name": "no memory", **IN_STOCK}]},
        {"gpus": [{"id": "x", "name": "x", "memory": 8, **IN_STOCK, "price": {"community": "?"}}]},
        {"gpus": [{"id": "x", "name": "x", "memory": 8, **IN_STOCK, "price": "lots"}]},
        ["not", "an", "object"],
    ],
)
def test_unexpected_catalog_shapes_are_provider_errors(make: Make, body: Any) -> None:
    provider, _, _ = make(httpx.Response(200, json=body), answer("gpu_types"))
    with pytest.raises(ProviderError) as excinfo:
        provider.list_offers()
    assert type(excinfo.value) is ProviderError


def test_malformed_json_is_a_provider_error(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, content=b"<html>502 Bad Gateway</html>"))
    with pytest.raises(ProviderError) as excinfo:
        provider.list_offers()
    assert type(excinfo.value) is ProviderError
    assert "without JSON" in str(excinfo.value)


def test_without_graphql_there_are_no_bids_and_no_graphql_request(make: Make) -> None:
    provider, wire, _ = make(answer("rest_catalog_gpus_community"), url=None)
    offers = provider.list_offers()
    assert [o.offer_id for o in offers] == ["NVIDIA GeForce RTX 4090", "NVIDIA L40S"]
    assert not any(o.interruptible or o.min_bid_usd_per_hour for o in offers)
    assert [wire.where(i)[1] for i in range(len(wire.requests))] == [CATALOG]


@pytest.mark.parametrize(
    "bids",
    [
        [httpx.Response(503)] * 4,
        [httpx.Response(200, json={"data": {"gpuTypes": None}})],
        [httpx.Response(200, json={"data": {"gpuTypes": ["junk"]}})],
        [answer("error_unauthorized")],
        [httpx.Response(404, text="GraphQL is retired")],
    ],
    ids=["down", "no-list", "junk", "refused", "retired"],
)
def test_on_demand_offers_survive_a_failing_graphql(
    make: Make, bids: list[httpx.Response], caplog: pytest.LogCaptureFixture
) -> None:
    provider, _, _ = make(answer("rest_catalog_gpus_community"), *bids)
    with caplog.at_level(logging.WARNING):
        offers = provider.list_offers()
    assert [o.offer_id for o in offers] == ["NVIDIA GeForce RTX 4090", "NVIDIA L40S"]
    assert not any(o.interruptible for o in offers)
    assert "no minimum bids" in caplog.text


def test_bids_only_for_types_in_stock_with_a_bid(make: Make) -> None:
    # gpu_types.json: the H100 answers a minimum bid of 0 (nobody takes bids), the A40 no
    # lowestPrice at all, the 3090 no stock: none of them is biddable.
    provider, _, _ = make(
        answer("rest_catalog_gpus_secure"), answer("gpu_types"), cloud_type="SECURE"
    )
    bids = {o.offer_id: o.min_bid_usd_per_hour for o in provider.list_offers()}
    assert bids == {
        "NVIDIA GeForce RTX 4090": Decimal("0.29"),
        "NVIDIA RTX A6000": None,
        "NVIDIA L40S": None,
        "NVIDIA H100 80GB HBM3": None,
    }


def test_a_stock_status_of_none_as_a_string_has_no_bid(make: Make) -> None:
    lowest = {"minimumBidPrice": 0.29, "stockStatus": "None"}
    body = {"data": {"gpuTypes": [{"id": "NVIDIA GeForce RTX 4090", "lowestPrice": lowest}]}}
    provider, _, _ = make(answer("rest_catalog_gpus_community"), httpx.Response(200, json=body))
    assert not any(o.interruptible for o in provider.list_offers())


# --- transport-level failures (through ProviderHttp) ---
def test_429_waits_for_retry_after_then_succeeds(make: Make) -> None:
    provider, wire, sleeps = make(
        answer("rest_error_429", 429, **{"Retry-After": "7"}),
        answer("rest_catalog_gpus_community"),
        answer("gpu_types"),
    )
    assert len(provider.list_offers()) == 2
    assert sleeps == [7.0]
    assert len(wire.requests) == 3


def test_429_until_the_end_is_rate_limited(make: Make) -> None:
    provider, wire, _ = make(*[answer("rest_error_429", 429, **{"Retry-After": "1"})] * 4)
    with pytest.raises(ProviderRateLimited) as excinfo:
        provider.list_offers()
    assert len(wire.requests) == 4
    assert "rate limit exceeded" in str(excinfo.value)


def test_5xx_is_provider_down_after_retries(make: Make) -> None:
    provider, wire, sleeps = make(*[problem("rest_error_500")] * 4)
    with pytest.raises(ProviderDown) as excinfo:
        provider.list_offers()
    assert len(wire.requests) == 4 and len(sleeps) == 3
    assert API_KEY not in str(excinfo.value)


def test_a_read_timeout_is_retried_for_a_read(make: Make) -> None:
    provider, wire, _ = make(
        httpx.ReadTimeout("slow"), answer("rest_catalog_gpus_community"), answer("gpu_types")
    )
    assert len(provider.list_offers()) == 2
    assert len(wire.requests) == 3


# --- REST errors, by fixture ---
@pytest.mark.parametrize(
    ("name", "expected", "words"),
    [
        ("rest_error_400", ProviderError, "request could not be processed"),
        ("rest_error_401", ProviderAuthError, "missing bearer token"),
        ("rest_error_403", ProviderAuthError, "access denied"),
        ("rest_error_404", MachineGone, "resource not found"),
        ("rest_error_422", ProviderError, "additional properties 'dockerArgs' not allowed"),
        ("rest_out_of_stock", OutOfCapacity, "no longer any instances available"),
    ],
)
def test_rest_errors_are_typed_with_their_words(
    make: Make, name: str, expected: type[ProviderError], words: str
) -> None:
    provider, wire, sleeps = make(problem(name))
    with pytest.raises(ProviderError) as excinfo:
        provider.status(POD_ID)
    assert type(excinfo.value) is expected
    assert words in str(excinfo.value)
    assert len(wire.requests) == 1 and sleeps == []  # a refusal is not retried
    assert API_KEY not in str(excinfo.value)


def test_a_v1_style_error_body_keeps_its_words(make: Make) -> None:
    # v1 answered {"error": ..., "status": ...} (runpod-migrate breaking-changes.md)
    provider, _, _ = make(httpx.Response(400, json={"error": "bad input", "status": 400}))
    with pytest.raises(ProviderError, match="answered 400: bad input"):
        provider.status(POD_ID)


def test_an_error_without_a_json_body_keeps_the_shared_mapping(make: Make) -> None:
    provider, _, _ = make(httpx.Response(409, text="<html>Conflict</html>"))
    with pytest.raises(ProviderError) as excinfo:
        provider.status(POD_ID)
    assert str(excinfo.value) == "runpod: GET answered 409"


def test_a_very_long_error_detail_is_cut(make: Make) -> None:
    provider, _, _ = make(httpx.Response(400, json={"detail": "x" * 5000}))
    with pytest.raises(ProviderError) as excinfo:
        provider.status(POD_ID)
    assert len(str(excinfo.value)) < 400


# --- launch: on-demand over REST v2 ---
def test_launch_on_demand_sends_the_pod_spec(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    provider, wire, _ = make(answer("rest_pod_created", 201))
    with caplog.at_level(logging.DEBUG):
        machine = provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert wire.where() == ("POST", PODS)
    assert wire.body() == {
        "name": "subc-r-1",
        "image": IMAGE,
        "cloud": "COMMUNITY",
        "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1, "minCudaVersion": "12.6"},
        "disk": 40,
        "ports": ["7860/http"],
        "env": {"COMMANDLINE_ARGS": f"--api-auth {API_AUTH}"},
        "args": "python launch.py --api --nowebui --listen --port 7860",
    }  # no mounts: no persistent volume
    assert machine == Machine(
        provider="runpod",
        machine_id=POD_ID,
        offer_id="NVIDIA GeForce RTX 4090",
        label="subc-r-1",
        status=MachineStatus.STARTING,
        url=None,
        usd_per_hour=Decimal("0.34"),
    )
    assert len(wire.requests) == 1  # no GraphQL for an on-demand pod
    assert_key_only_in_header(wire)
    # the answer echoes env (and so the credential): it never reaches a log or the machine
    assert API_AUTH not in logged(caplog) and API_AUTH not in repr(machine)


def test_the_credential_rides_in_commandline_args_not_the_start_command(make: Make) -> None:
    # automatic1111's launcher and the worker append $COMMANDLINE_ARGS to their arguments; the
    # start command stays the same for every pod (tests/worker/test_entrypoint_contract.py runs
    # it through the image's entrypoint).
    assert CREDENTIAL_ENV == "COMMANDLINE_ARGS"
    assert START_COMMAND == "python launch.py --api --nowebui --listen --port 7860"
    provider, wire, _ = make(answer("rest_pod_created", 201))
    provider.launch(an_offer(), label="subc-r-1", api_auth="u:p with 'quotes'")
    # quoted, so the launcher's shell-like split gives the credential back whole
    assert shlex.split(wire.body()["env"]["COMMANDLINE_ARGS"]) == [
        "--api-auth",
        "u:p with 'quotes'",
    ]


@pytest.mark.parametrize("bid", [None, Decimal("0.30")], ids=["on-demand", "interruptible"])
def test_every_launch_asks_for_a_host_whose_driver_runs_the_image(
    make: Make, bid: Decimal | None
) -> None:
    # Without the floor a pod can land on an older driver, never start its container, and
    # bill with no ports for ever (runpod/runpodctl#253).
    created = answer("rest_pod_created", 201) if bid is None else answer("rent_interruptable")
    provider, wire, _ = make(created, min_cuda_version="12.8")
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH, bid_usd_per_hour=bid)
    sent = wire.body()
    spec = sent["gpu"] if bid is None else sent["variables"]["input"]
    assert spec["minCudaVersion"] == "12.8"


def test_cloud_and_disk_follow_the_settings(make: Make) -> None:
    provider, wire, _ = make(
        answer("rest_pod_created", 201), cloud_type="SECURE", container_disk_gb=60
    )
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert (wire.body()["cloud"], wire.body()["disk"]) == ("SECURE", 60)


def test_the_lean_workers_settings_ride_in_env(make: Make) -> None:
    provider, wire, _ = make(answer("rest_pod_created", 201))
    provider.launch(
        an_offer(),
        label="subc-r-3",
        api_auth=API_AUTH,
        worker_env={"WORKER_COMPILE_SHAPES": "512x512x8"},
    )
    assert wire.body()["env"] == {
        "COMMANDLINE_ARGS": f"--api-auth {API_AUTH}",
        "WORKER_COMPILE_SHAPES": "512x512x8",
    }


def test_only_plain_worker_settings_reach_a_pod(make: Make) -> None:
    provider, wire, _ = make(answer("rest_pod_created", 201))
    with pytest.raises(ValueError, match="worker setting"):
        provider.launch(
            an_offer(), label="subc-r-3", api_auth=API_AUTH, worker_env={"COMMANDLINE_ARGS": "x"}
        )
    assert not wire.requests


def test_launch_is_not_retried_on_timeout(make: Make) -> None:
    provider, wire, sleeps = make(httpx.ReadTimeout("slow"), answer("rest_pod_created", 201))
    with pytest.raises(ProviderDown) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(wire.requests) == 1 and sleeps == []
    assert "subc-r-1" in str(excinfo.value)  # says where to look for a pod that may exist
    assert API_AUTH not in str(excinfo.value)


@pytest.mark.parametrize("failure", ["rest_error_500", "rest_error_429"])
def test_launch_is_not_retried_on_a_5xx_or_429(make: Make, failure: str) -> None:
    provider, wire, _ = make(problem(failure), answer("rest_pod_created", 201))
    with pytest.raises((ProviderDown, ProviderRateLimited)):
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(wire.requests) == 1


def test_launch_uses_a_longer_read_timeout(make: Make) -> None:
    provider, wire, _ = make(answer("rest_pod_created", 201))
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert wire.requests[0].extensions["timeout"]["read"] == 30.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rest_out_of_stock", OutOfCapacity),
        ("rest_error_400", ProviderError),  # a broken rule: no other offer would do better
        ("rest_error_422", ProviderError),
        ("rest_error_401", ProviderAuthError),
    ],
)
def test_launch_refusals_are_typed(make: Make, name: str, expected: type[ProviderError]) -> None:
    provider, wire, _ = make(problem(name))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(excinfo.value) is expected
    assert len(wire.requests) == 1


def test_insufficient_balance_is_a_provider_error(make: Make) -> None:
    body = {"title": "Payment Required", "status": 402, "detail": "insufficient balance"}
    provider, _, _ = make(httpx.Response(402, json=body))
    with pytest.raises(ProviderError, match="insufficient balance") as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(excinfo.value) is ProviderError


def test_secrets_echoed_by_the_api_never_reach_errors_or_logs(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"key {API_KEY} cannot set env COMMANDLINE_ARGS=--api-auth {API_AUTH}"
    provider, _, _ = make(httpx.Response(422, json={"detail": echo, "status": 422}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert API_KEY not in str(excinfo.value) and API_AUTH not in str(excinfo.value)
    assert "[redacted]" in str(excinfo.value)
    assert caplog.records  # the refusal was logged…
    assert API_KEY not in logged(caplog) and API_AUTH not in logged(caplog)  # …without a secret


@pytest.mark.parametrize(
    "body",
    [
        ["not", "a", "pod"],
        {"name": "no id", "status": "PROVISIONING"},
        {"id": 7, "status": "PROVISIONING"},
        {"id": "p", "cost": "lots"},
    ],
)
def test_a_create_answer_of_the_wrong_shape_is_a_provider_error(make: Make, body: Any) -> None:
    provider, _, _ = make(httpx.Response(201, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(excinfo.value) is ProviderError


def test_a_create_answer_without_a_cost_prices_the_offer(make: Make) -> None:
    provider, _, _ = make(httpx.Response(201, json={"id": "p2", "status": "PROVISIONING"}))
    machine = provider.launch(an_offer(), label="subc-r-2", api_auth=API_AUTH)
    assert machine.usd_per_hour == Decimal("0.34")


# --- ALL: REST rents in one cloud at a time ---
def test_all_tries_the_next_cloud_when_one_is_out_of_stock(make: Make) -> None:
    provider, wire, _ = make(
        problem("rest_out_of_stock"), answer("rest_pod_created", 201), cloud_type="ALL"
    )
    provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert [wire.body(i)["cloud"] for i in range(2)] == ["COMMUNITY", "SECURE"]


def test_all_follows_the_listing_cheapest_cloud_first(make: Make) -> None:
    provider, wire, _ = make(
        answer("rest_catalog_gpus_community"),
        answer("rest_catalog_gpus_secure"),
        answer("gpu_types"),
        problem("rest_out_of_stock"),
        answer("rest_pod_created", 201),
        cloud_type="ALL",
    )
    provider.list_offers()
    with pytest.raises(OutOfCapacity):  # the A6000 had stock in the secure cloud alone
        provider.launch(an_offer("NVIDIA RTX A6000"), label="subc-r-1", api_auth=API_AUTH)
    assert wire.body(3)["cloud"] == "SECURE" and len(wire.requests) == 4
    provider.launch(an_offer(), label="subc-r-2", api_auth=API_AUTH)
    assert wire.body(4)["cloud"] == "COMMUNITY"


def test_all_stops_at_a_refusal_that_is_not_about_stock(make: Make) -> None:
    provider, wire, _ = make(problem("rest_error_422"), cloud_type="ALL")
    with pytest.raises(ProviderError):
        provider.launch(an_offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(wire.requests) == 1


# --- launch: interruptible over GraphQL ---
def test_launch_interruptible_sends_the_bid_over_graphql(make: Make) -> None:
    provider, wire, _ = make(answer("rent_interruptable"))
    machine = provider.launch(
        an_offer(), label="subc-r-2", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.30")
    )
    assert wire.where() == ("POST", GRAPHQL_URL)
    sent = wire.body()
    assert "podRentInterruptable(input: $input)" in sent["query"]
    assert "PodRentInterruptableInput!" in sent["query"]
    assert " env" not in sent["query"]  # the answer must not echo the credential back
    assert sent["variables"]["input"] == {
        "name": "subc-r-2",
        "imageName": IMAGE,
        "gpuTypeId": "NVIDIA GeForce RTX 4090",
        "gpuCount": 1,
        "cloudType": "COMMUNITY",
        "containerDiskInGb": 40,
        "minCudaVersion": "12.6",
        "volumeInGb": 0,
        "ports": "7860/http",
        "dockerArgs": START_COMMAND,
        "env": [{"key": "COMMANDLINE_ARGS", "value": f"--api-auth {API_AUTH}"}],
        "bidPerGpu": 0.3,
    }
    assert machine.machine_id == "fkjbybgpwuvmhk"
    assert machine.usd_per_hour == Decimal("0.3")
    assert machine.status is MachineStatus.STARTING
    assert_key_only_in_header(wire)


def test_graphql_still_rents_interruptible_in_all_clouds(make: Make) -> None:
    provider, wire, _ = make(answer("rent_interruptable"), cloud_type="ALL")
    provider.launch(
        an_offer(), label="subc-r-2", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.30")
    )
    assert wire.body()["variables"]["input"]["cloudType"] == "ALL"
    assert len(wire.requests) == 1


def test_interruptible_without_graphql_is_refused_without_a_request(make: Make) -> None:
    provider, wire, _ = make(url=None)
    with pytest.raises(ProviderError, match="GraphQL"):
        provider.launch(
            an_offer(), label="subc-r-2", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.3")
        )
    assert not wire.requests


def spot(provider: RunPodProvider, api_auth: str = API_AUTH) -> Machine:
    return provider.launch(
        an_offer(), label="subc-r-2", api_auth=api_auth, bid_usd_per_hour=Decimal("0.31")
    )


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
        spot(provider)
    assert type(excinfo.value) is expected
    assert fixture(name)["errors"][0]["message"][:40] in str(excinfo.value)
    assert len(wire.requests) == 1 and sleeps == []  # a refusal is not retried


def test_a_graphql_auth_refusal_by_message_alone(make: Make) -> None:
    body = {"errors": [{"message": "Invalid API key provided"}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderAuthError):
        spot(provider)


def test_odd_graphql_error_entries_still_raise(make: Make) -> None:
    body = {"errors": ["boom", {"message": "x", "extensions": "odd"}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        spot(provider)
    assert "boom; x" in str(excinfo.value)


@pytest.mark.parametrize(
    "body",
    [
        {"errors": "not a list", "data": None},
        ["not", "an", "object"],
        {"data": None},
        {"data": {"podRentInterruptable": {"desiredStatus": "RUNNING"}}},
    ],
)
def test_graphql_answers_of_the_wrong_shape_are_provider_errors(make: Make, body: Any) -> None:
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        spot(provider)
    assert type(excinfo.value) is ProviderError


def test_graphql_secrets_echoed_never_reach_errors_or_logs(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"Unauthorized: key {API_KEY} cannot set env COMMANDLINE_ARGS=--api-auth {API_AUTH}"
    provider, _, _ = make(httpx.Response(200, json={"errors": [{"message": echo}], "data": None}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderAuthError) as excinfo:
        spot(provider)
    assert API_KEY not in str(excinfo.value) and API_AUTH not in str(excinfo.value)
    assert API_KEY not in logged(caplog) and API_AUTH not in logged(caplog)


def test_an_empty_credential_is_not_scrubbed_into_noise(make: Make) -> None:
    body = {"errors": [{"message": "Something went wrong."}], "data": None}
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        spot(provider, api_auth="")
    assert str(excinfo.value) == "runpod: podRentInterruptable: Something went wrong."


def test_a_very_long_graphql_message_is_cut(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"errors": [{"message": "x" * 5000}]}))
    with pytest.raises(ProviderError) as excinfo:
        spot(provider)
    assert len(str(excinfo.value)) < 400


def test_a_null_rent_result_without_errors_is_out_of_capacity(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"data": {"podRentInterruptable": None}}))
    with pytest.raises(OutOfCapacity):
        spot(provider)


def test_a_rent_without_a_cost_in_the_answer_prices_the_bid(make: Make) -> None:
    bare = {"data": {"podRentInterruptable": {"id": "p1", "desiredStatus": "RUNNING"}}}
    provider, _, _ = make(httpx.Response(200, json=bare))
    assert spot(provider).usd_per_hour == Decimal("0.31")


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.Response(502)])
def test_a_rent_is_not_retried(make: Make, failure: httpx.Response | Exception) -> None:
    provider, wire, sleeps = make(failure, answer("rent_interruptable"))
    with pytest.raises(ProviderDown, match="subc-r-2"):
        spot(provider)
    assert len(wire.requests) == 1 and sleeps == []


def test_a_graphql_validation_error_at_http_400_keeps_its_words(make: Make) -> None:
    provider, wire, _ = make(answer("error_validation_400", status=400))
    with pytest.raises(ProviderError) as excinfo:
        spot(provider)
    assert type(excinfo.value) is ProviderError  # our request is wrong
    assert 'Field "objectMounts" is not defined' in str(excinfo.value)
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
def test_graphql_errors_at_http_400_are_typed_like_those_at_200(
    make: Make, errors: list[dict[str, Any]], kind: type[ProviderError]
) -> None:
    provider, _, _ = make(httpx.Response(400, json={"errors": errors}))
    with pytest.raises(kind):
        spot(provider)


def test_a_graphql_400_without_errors_keeps_the_shared_mapping(make: Make) -> None:
    provider, _, _ = make(httpx.Response(400, text="<html>Bad Request</html>"))
    with pytest.raises(ProviderError, match="answered 400"):
        spot(provider)


# --- status: REST v2, whichever API created the pod ---
@pytest.mark.parametrize(
    ("name", "status", "url"),
    [
        ("rest_pod_running", MachineStatus.RUNNING, f"https://{POD_ID}-7860.proxy.runpod.net"),
        # billed as RUNNING, with no URL: the serve deadline counts from here (runpodctl#253)
        ("rest_pod_running_no_runtime", MachineStatus.RUNNING, None),
        ("rest_pod_running_ports_empty", MachineStatus.RUNNING, None),
        ("rest_pod_created", MachineStatus.STARTING, None),
        ("rest_pod_starting", MachineStatus.STARTING, None),
        ("rest_pod_exited", MachineStatus.EXITED, None),
    ],
)
def test_status_maps_the_pod(make: Make, name: str, status: MachineStatus, url: str | None) -> None:
    provider, wire, _ = make(answer(name))
    machine = provider.status(POD_ID)
    assert (machine.status, machine.url) == (status, url)
    assert machine.machine_id == POD_ID
    assert machine.provider == "runpod"
    assert wire.where() == ("GET", POD)
    assert_key_only_in_header(wire)


@pytest.mark.parametrize("status", ["ERROR", "TERMINATED", "EXITED"])
def test_an_ended_pod_has_exited(make: Make, status: str) -> None:
    pod = fixture("rest_pod_running")
    pod["status"] = status
    provider, _, _ = make(httpx.Response(200, json=pod))
    machine = provider.status(POD_ID)
    assert (machine.status, machine.url) == (MachineStatus.EXITED, None)


def test_status_fields_come_from_the_pod(make: Make) -> None:
    provider, _, _ = make(answer("rest_pod_running"), answer("rest_pod_exited"))
    running = provider.status(POD_ID)
    assert running == Machine(
        provider="runpod",
        machine_id=POD_ID,
        offer_id="NVIDIA GeForce RTX 4090",
        label="subc-r-1",
        status=MachineStatus.RUNNING,
        url=proxy_url(POD_ID),
        usd_per_hour=Decimal("0.34"),
    )
    assert API_AUTH not in repr(running)  # the pod's env echo stays behind
    assert provider.status(POD_ID).usd_per_hour == Decimal(0)  # cost 0 once ended


def test_a_pod_without_gpu_or_name_reads_empty(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"id": POD_ID, "status": "TERMINATED"}))
    ended = provider.status(POD_ID)
    assert (ended.offer_id, ended.label, ended.usd_per_hour) == ("", "", Decimal(0))


def test_the_proxy_url_template_can_point_at_the_port_mapping(make: Make) -> None:
    # The local stack's emulated pods serve on their mapped port, not behind RunPod's proxy.
    provider, _, _ = make(answer("rest_pod_running"), proxy_url="http://{ip}:{public_port}")
    assert provider.status(POD_ID).url == "http://100.65.0.101:60141"


def test_a_running_pod_with_only_other_ports_has_no_url_yet(make: Make) -> None:
    pod = fixture("rest_pod_running")
    pod["runtime"]["ports"][0]["private"] = 22
    provider, _, _ = make(httpx.Response(200, json=pod))
    machine = provider.status(POD_ID)
    assert (machine.status, machine.url) == (MachineStatus.RUNNING, None)


def test_a_pod_that_never_gets_a_runtime_never_gets_a_url(make: Make) -> None:
    # RUNNING with no runtime (the wrong-driver failure) is never read as serving: it reads
    # RUNNING (billed) without a URL, and the serve deadline from RUNNING (WaitReady) bounds
    # what it costs.
    provider, _, _ = make(*(answer("rest_pod_running_no_runtime") for _ in range(3)))
    machines = [provider.status(POD_ID) for _ in range(3)]
    assert {(m.status, m.url) for m in machines} == {(MachineStatus.RUNNING, None)}


def test_status_of_a_pod_runpod_no_longer_has_is_machine_gone(make: Make) -> None:
    provider, _, _ = make(problem("rest_error_404"))
    with pytest.raises(MachineGone) as excinfo:
        provider.status("nope")
    assert type(excinfo.value) is MachineGone


def test_a_pod_id_cannot_leave_its_path(make: Make) -> None:
    provider, wire, _ = make(problem("rest_error_404"))
    with pytest.raises(MachineGone):
        provider.status("../catalog/gpus")
    assert wire.requests[0].url.raw_path == b"/v2/pods/..%2Fcatalog%2Fgpus"
    with pytest.raises(MachineGone):
        provider.status("")  # no request for no id
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {"name": "no id", "status": "RUNNING"},
        {"id": "p", "status": "RUNNING", "runtime": {"ports": ["x"]}},
        {"id": "p", "status": "RUNNING", "cost": "lots"},
        {"id": "p", "status": "RUNNING", "gpu": "x"},
    ],
)
def test_status_of_an_odd_pod_is_a_provider_error(make: Make, body: Any) -> None:
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as excinfo:
        provider.status(POD_ID)
    assert type(excinfo.value) is ProviderError


# --- terminate ---
def test_terminate_deletes_the_pod(make: Make) -> None:
    provider, wire, _ = make(httpx.Response(204))
    provider.terminate(POD_ID)
    assert wire.where() == ("DELETE", POD)
    assert_key_only_in_header(wire)


def test_terminate_twice_is_fine(make: Make) -> None:
    provider, wire, _ = make(httpx.Response(204), problem("rest_error_404"))
    provider.terminate(POD_ID)
    provider.terminate(POD_ID)
    assert len(wire.requests) == 2


@pytest.mark.parametrize(
    "then",
    [problem("rest_error_404"), httpx.Response(200, json={"id": POD_ID, "status": "TERMINATED"})],
)
def test_terminate_refused_for_a_pod_already_gone_is_fine(make: Make, then: httpx.Response) -> None:
    refused = httpx.Response(409, json={"title": "Conflict", "status": 409, "detail": "no"})
    provider, wire, _ = make(refused, then)
    provider.terminate(POD_ID)
    assert [wire.where(i)[0] for i in range(2)] == ["DELETE", "GET"]  # it asked for the pod


def test_terminate_refused_for_a_live_pod_raises(make: Make) -> None:
    refused = httpx.Response(409, json={"title": "Conflict", "status": 409, "detail": "cluster"})
    provider, _, _ = make(refused, answer("rest_pod_running"))
    with pytest.raises(ProviderError, match="cluster"):
        provider.terminate(POD_ID)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("rest_error_401", ProviderAuthError),
        ("rest_error_500", ProviderDown),
        ("rest_error_429", ProviderRateLimited),
    ],
)
def test_terminate_does_not_swallow_auth_or_outages(
    make: Make, failure: str, expected: type[ProviderError]
) -> None:
    provider, wire, _ = make(*[problem(failure)] * 4)
    with pytest.raises(expected):
        provider.terminate(POD_ID)
    assert {wire.where(i) for i in range(len(wire.requests))} == {("DELETE", POD)}


# --- machines ---
def test_machines_lists_only_ours(make: Make) -> None:
    provider, wire, _ = make(answer("rest_pods"))
    machines = provider.machines()
    assert [(m.machine_id, m.label, m.status) for m in machines] == [
        (POD_ID, "subc-r-1", MachineStatus.RUNNING),
        ("fkjbybgpwuvmhk", "subc-r-10", MachineStatus.EXITED),
    ]
    assert machines[0].url == proxy_url(POD_ID)
    assert machines[0].usd_per_hour == Decimal("0.34")
    assert wire.where() == ("GET", PODS)
    assert_key_only_in_header(wire)


def test_machines_with_a_label_match_it_exactly(make: Make) -> None:
    provider, _, _ = make(answer("rest_pods"), answer("rest_pods"))
    assert [m.machine_id for m in provider.machines("subc-r-1")] == [POD_ID]  # not subc-r-10
    assert provider.machines("subc-r-99") == []


@pytest.mark.parametrize("body", [{"pods": None}, {"items": []}, ["not", "wrapped"]])
def test_machines_without_a_pod_list_is_a_provider_error(make: Make, body: Any) -> None:
    # v1 answered a bare list; v2 wraps it in {"pods": [...]} (migrate-from-v1.mdx)
    provider, _, _ = make(httpx.Response(200, json=body))
    with pytest.raises(ProviderError):
        provider.machines()


def test_machines_skips_entries_that_are_not_pods(make: Make) -> None:
    provider, _, _ = make(httpx.Response(200, json={"pods": ["junk", {"id": "p", "name": 7}]}))
    assert provider.machines() == []
