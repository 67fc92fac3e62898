"""The emulated market adapter against mocked HTTP (shapes of infra/local/emulated_market.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from subconscious import services as services_module
from subconscious.errors import MachineGone, OfferGone, ProviderError
from subconscious.market.emulated import EmulatedProvider
from subconscious.market.fake import FakeProvider
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.settings import Settings

BASE = "http://market.test:8650"

OFFERS = {
    "offers": [
        {
            "offer_id": "emu-vast-ai-rtx-4090",
            "provider_name": "Vast.ai",
            "gpu": "RTX 4090",
            "gpu_count": 1,
            "gpu_memory_gb": 24,
            "usd_per_hour": "0.31",
            "interruptible": False,
            "reliability": "0.99",
            "location": "US-CA",
            "startup_s": 1.0,
        },
        {
            "offer_id": "emu-runpod-secure-cloud-h100-sxm",
            "provider_name": "RunPod Secure Cloud",
            "gpu": "H100 SXM",
            "gpu_count": 1,
            "gpu_memory_gb": 80,
            "usd_per_hour": "2.690000000001",
            "interruptible": False,
            "reliability": "0.95",
            "location": "EU-RO",
            "startup_s": 2.2,
        },
    ]
}


def machine_record(
    machine_id: str = "m-0a1b2c", status: str = "starting", label: str = "subc-r-1"
) -> dict[str, Any]:
    return {
        "machine_id": machine_id,
        "offer_id": "emu-vast-ai-rtx-4090",
        "label": label,
        "gpu": "RTX 4090",
        "usd_per_hour": "0.31",
        "status": status,
        "url": "http://127.0.0.1:40123",
        "launched_at": "2030-01-01T00:00:00.000+00:00",
        "terminated_at": None,
        "images_per_s": 50.0,
    }


def machine_not_found(machine_id: str) -> httpx.Response:
    return httpx.Response(
        404, json={"error": "machine_not_found", "message": f"no machine {machine_id!r}"}
    )


@pytest.fixture
def market() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def provider() -> Iterator[EmulatedProvider]:
    emulated = EmulatedProvider(BASE)
    yield emulated
    emulated._http.close()


def an_offer(offer_id: str = "emu-vast-ai-rtx-4090") -> Offer:
    return Offer(
        provider="emulated",
        offer_id=offer_id,
        gpu="RTX 4090",
        gpu_memory_gb=24,
        usd_per_hour=Decimal("0.31"),
    )


# --- offers ---
def test_list_offers_parses_the_market(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.get("/offers").mock(return_value=httpx.Response(200, json=OFFERS))
    first, second = provider.list_offers()
    assert first == Offer(
        provider="emulated",
        offer_id="emu-vast-ai-rtx-4090",
        gpu="RTX 4090",
        gpu_count=1,
        gpu_memory_gb=24,
        usd_per_hour=Decimal("0.31"),
        interruptible=False,
        reliability=Decimal("0.99"),
        location="US-CA",
        startup_s=1,
    )
    assert second.offer_id == "emu-runpod-secure-cloud-h100-sxm"
    assert second.gpu_memory_gb == 80
    assert second.reliability == Decimal("0.95")
    assert second.location == "EU-RO"


def test_prices_are_exact_decimals(market: respx.MockRouter, provider: EmulatedProvider) -> None:
    market.get("/offers").mock(return_value=httpx.Response(200, json=OFFERS))
    offers = provider.list_offers()
    assert [type(o.usd_per_hour) for o in offers] == [Decimal, Decimal]
    assert [type(o.reliability) for o in offers] == [Decimal, Decimal]
    assert offers[1].usd_per_hour == Decimal("2.690000000001")  # not float-rounded


def test_startup_seconds_are_rounded_up(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.get("/offers").mock(return_value=httpx.Response(200, json=OFFERS))
    assert [o.startup_s for o in provider.list_offers()] == [1, 3]


def test_offer_defaults_when_fields_are_missing(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    bare = {
        "offer_id": "emu-x",
        "gpu": "RTX 3090",
        "gpu_count": 1,
        "gpu_memory_gb": 24,
        "usd_per_hour": "0.2",
    }
    market.get("/offers").mock(return_value=httpx.Response(200, json={"offers": [bare]}))
    [parsed] = provider.list_offers()
    assert (parsed.interruptible, parsed.reliability, parsed.location, parsed.startup_s) == (
        False,
        Decimal("0.99"),
        "",
        1,
    )


def test_no_offers(market: respx.MockRouter, provider: EmulatedProvider) -> None:
    market.get("/offers").mock(return_value=httpx.Response(200, json={"offers": []}))
    assert provider.list_offers() == []


# --- machines ---
def test_launch_posts_offer_label_and_credential(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    route = market.post("/machines").mock(return_value=httpx.Response(201, json=machine_record()))
    machine = provider.launch(an_offer(), label="subc-r-1", api_auth="subc:pw")
    assert json.loads(route.calls.last.request.content) == {
        "offer_id": "emu-vast-ai-rtx-4090",
        "label": "subc-r-1",
        "api_auth": "subc:pw",
    }
    assert machine == Machine(
        provider="emulated",
        machine_id="m-0a1b2c",
        offer_id="emu-vast-ai-rtx-4090",
        label="subc-r-1",
        status=MachineStatus.STARTING,
        url="http://127.0.0.1:40123",
        usd_per_hour=Decimal("0.31"),
    )


def test_launch_of_a_vanished_offer_is_offer_gone(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.post("/machines").mock(
        return_value=httpx.Response(404, json={"error": "offer_not_found", "message": "no offer"})
    )
    with pytest.raises(OfferGone):
        provider.launch(an_offer("emu-gone"), label="subc-r-1", api_auth="subc:pw")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("starting", MachineStatus.STARTING),
        ("running", MachineStatus.RUNNING),
        ("exited", MachineStatus.EXITED),
        ("terminated", MachineStatus.TERMINATED),
    ],
)
def test_status_maps_fields(
    market: respx.MockRouter, provider: EmulatedProvider, status: str, expected: MachineStatus
) -> None:
    market.get("/machines/m-0a1b2c").mock(
        return_value=httpx.Response(200, json=machine_record(status=status))
    )
    machine = provider.status("m-0a1b2c")
    assert machine.status is expected
    assert machine.machine_id == "m-0a1b2c"
    assert machine.url == "http://127.0.0.1:40123"
    assert machine.usd_per_hour == Decimal("0.31")
    assert machine.provider == "emulated"


def test_status_of_an_unknown_machine_is_machine_gone(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.get("/machines/m-nope").mock(return_value=machine_not_found("m-nope"))
    with pytest.raises(MachineGone) as excinfo:
        provider.status("m-nope")
    assert type(excinfo.value) is MachineGone


def test_terminate_deletes(market: respx.MockRouter, provider: EmulatedProvider) -> None:
    route = market.delete("/machines/m-0a1b2c").mock(
        return_value=httpx.Response(200, json=machine_record(status="terminated"))
    )
    provider.terminate("m-0a1b2c")
    assert route.call_count == 1


def test_terminate_is_idempotent_on_machine_not_found(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    route = market.delete("/machines/m-gone").mock(return_value=machine_not_found("m-gone"))
    provider.terminate("m-gone")
    provider.terminate("m-gone")
    assert route.call_count == 2


def test_terminate_raises_on_server_error(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.delete("/machines/m-1").mock(
        return_value=httpx.Response(500, json={"error": "internal", "message": "see logs"})
    )
    with pytest.raises(ProviderError) as excinfo:
        provider.terminate("m-1")
    assert type(excinfo.value) is ProviderError


def test_machines_passes_the_label(market: respx.MockRouter, provider: EmulatedProvider) -> None:
    route = market.get("/machines").mock(
        return_value=httpx.Response(
            200, json={"machines": [machine_record("m-1"), machine_record("m-2", "running")]}
        )
    )
    machines = provider.machines("subc-r-1")
    assert route.calls.last.request.url.params["label"] == "subc-r-1"
    assert [(m.machine_id, m.status) for m in machines] == [
        ("m-1", MachineStatus.STARTING),
        ("m-2", MachineStatus.RUNNING),
    ]


def test_machines_without_label_sends_no_query(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    route = market.get("/machines").mock(return_value=httpx.Response(200, json={"machines": []}))
    assert provider.machines() == []
    assert route.calls.last.request.url.query == b""


@pytest.mark.parametrize("status", [400, 405, 500, 502])
def test_other_errors_are_provider_errors(
    market: respx.MockRouter, provider: EmulatedProvider, status: int
) -> None:
    market.get("/offers").mock(return_value=httpx.Response(status, json={"error": "x"}))
    with pytest.raises(ProviderError, match=f"answered {status}") as excinfo:
        provider.list_offers()
    assert type(excinfo.value) is ProviderError


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
def test_unreachable_market_is_a_provider_error(
    market: respx.MockRouter, provider: EmulatedProvider, error: Exception
) -> None:
    market.get("/offers").mock(side_effect=error)
    with pytest.raises(ProviderError, match=f"unreachable: {type(error).__name__}"):
        provider.list_offers()


def test_404_without_a_json_body_is_machine_gone(
    market: respx.MockRouter, provider: EmulatedProvider
) -> None:
    market.get("/machines/m-1").mock(return_value=httpx.Response(404, text="Not Found"))
    with pytest.raises(MachineGone):
        provider.status("m-1")


# --- registry ---
def test_registry_builds_the_emulated_provider_from_settings(
    monkeypatch: pytest.MonkeyPatch, market: respx.MockRouter
) -> None:
    monkeypatch.setenv("SUBC_EMULATED_MARKET_URL", BASE)
    services_module.reset()
    svc = services_module.services()
    built = svc.provider("emulated")
    assert isinstance(built, EmulatedProvider)
    assert built.name == "emulated"
    assert svc.provider("emulated") is built  # built once
    route = market.get("/offers").mock(return_value=httpx.Response(200, json={"offers": []}))
    assert built.list_offers() == []
    assert route.call_count == 1  # it talks to the configured URL


def test_registry_unknown_provider() -> None:
    with pytest.raises(ProviderError, match="unknown provider 'lambdalabs'"):
        services_module.services().provider("lambdalabs")


def test_given_providers_override_and_new_services_forget_them() -> None:
    fake = FakeProvider([an_offer()], name="emulated")
    svc = services_module.build(Settings(), providers={"emulated": fake})
    assert svc.provider("emulated") is fake
    other = FakeProvider([], name="fake")
    svc.providers_by_name.add(other)
    assert svc.provider("fake") is other
    assert svc.provider("emulated") is fake
    fresh = services_module.build(Settings())
    assert isinstance(fresh.provider("emulated"), EmulatedProvider)
    with pytest.raises(ProviderError):
        fresh.provider("fake")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), ProviderError),
        (httpx.Response(404, json=["machine_not_found"]), MachineGone),
    ],
)
def test_malformed_market_answers_are_typed(
    market: respx.MockRouter,
    provider: EmulatedProvider,
    response: httpx.Response,
    expected: type[Exception],
) -> None:
    market.get("/machines/m-1").mock(return_value=response)
    with pytest.raises(expected):
        provider.status("m-1")
