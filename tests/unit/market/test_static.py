"""Static servers: handed out as they are, never stopped, their own credential."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr

from subconscious import services as services_module
from subconscious.errors import MachineGone, OfferGone
from subconscious.market.static import StaticProvider
from subconscious.models.servers import StaticServer
from tests.conftest import offer


def provider() -> StaticProvider:
    return StaticProvider(
        [
            StaticServer(url="http://10.0.0.5:7860", gpu="RTX 3090", api_auth=SecretStr("me:pw")),
            StaticServer(url="http://10.0.0.6:7860", gpu="A10", usd_per_hour=Decimal("0.2")),
        ]
    )


def test_offers_machines_and_credentials() -> None:
    p = provider()
    offers = p.list_offers()
    assert [o.offer_id for o in offers] == ["static-0", "static-1"]
    assert offers[1].usd_per_hour == Decimal("0.2")
    machine = p.launch(offers[0], label="subc-r-1", api_auth="ignored:secret")
    assert machine.url == "http://10.0.0.5:7860"
    assert machine.label == ""  # never carries our label: the reaper cannot count it
    assert p.credential("static-0") == ("me", "pw")
    assert p.credential("static-1") is None
    assert p.credential("static-9") is None
    p.terminate("static-0")
    assert p.status("static-0").status.value == "running"
    assert p.machines() == []


def test_unknown_servers_are_typed_errors() -> None:
    p = provider()
    with pytest.raises(OfferGone):
        p.launch(offer("nope"), label="subc-r-1", api_auth="x:y")
    with pytest.raises(MachineGone):
        p.status("static-9")


def test_registry_builds_it_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SUBC_STATIC_SERVERS", '[{"url": "http://10.0.0.5:7860", "gpu": "RTX 3090"}]'
    )
    services_module.reset()
    built = services_module.services().provider("static")
    assert isinstance(built, StaticProvider)
    assert [o.gpu for o in built.list_offers()] == ["RTX 3090"]
