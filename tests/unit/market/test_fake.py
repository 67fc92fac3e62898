"""The in-memory provider the other tiers rely on, and machine labels."""

from __future__ import annotations

from decimal import Decimal

import pytest

from subconscious.errors import MachineGone, OfferGone, ProviderError
from subconscious.market.fake import FakeProvider
from subconscious.models import MachineStatus
from subconscious.models.labels import LABEL_PREFIX, run_label
from tests.conftest import offer


def test_run_label() -> None:
    assert LABEL_PREFIX == "subc-"
    assert run_label("r-42") == "subc-r-42"


def test_list_offers_and_outage() -> None:
    provider = FakeProvider([offer(), offer("o-3090", "RTX 3090", "0.20")])
    assert [o.offer_id for o in provider.list_offers()] == ["o-4090", "o-3090"]
    provider.fail_offers = True
    with pytest.raises(ProviderError, match="fake provider down"):
        provider.list_offers()


def test_launch_records_a_running_machine() -> None:
    provider = FakeProvider([offer()], url="http://127.0.0.1:7860")
    machine = provider.launch(offer(), label="subc-r-1", api_auth="subc:pw")
    assert machine.model_dump() == {
        "provider": "fake",
        "machine_id": "fm-1",
        "offer_id": "o-4090",
        "label": "subc-r-1",
        "status": MachineStatus.RUNNING,
        "url": "http://127.0.0.1:7860",
        "usd_per_hour": Decimal("0.40"),
    }
    assert provider.launched == [machine]
    assert provider.status("fm-1") == machine
    second = provider.launch(offer(), label="subc-r-2", api_auth="subc:pw")
    assert second.machine_id == "fm-2"


def test_launch_of_an_unknown_offer_is_offer_gone() -> None:
    provider = FakeProvider([offer()])
    with pytest.raises(OfferGone):
        provider.launch(offer("o-gone"), label="subc-r-1", api_auth="subc:pw")
    assert provider.launched == []


def test_terminate_is_idempotent_and_status_says_terminated() -> None:
    provider = FakeProvider([offer()])
    machine = provider.launch(offer(), label="subc-r-1", api_auth="subc:pw")
    provider.terminate(machine.machine_id)
    provider.terminate(machine.machine_id)
    provider.terminate("fm-unknown")
    assert provider.terminated == ["fm-1"]
    assert provider.status("fm-1").status is MachineStatus.TERMINATED
    assert provider.machines() == []


def test_status_of_an_unknown_machine_is_machine_gone() -> None:
    with pytest.raises(MachineGone):
        FakeProvider([]).status("fm-9")


def test_machines_by_label() -> None:
    provider = FakeProvider([offer()])
    a = provider.launch(offer(), label="subc-r-1", api_auth="")
    b = provider.launch(offer(), label="subc-r-2", api_auth="")
    assert provider.machines() == [a, b]
    assert provider.machines("subc-r-2") == [b]
    assert provider.machines("subc-r-3") == []
