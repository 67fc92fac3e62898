"""A run's measured rate moves the throughput model (stored per GPU in the prices table), and
what the planner quotes follows it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from subconscious.logic import render_run
from subconscious.logic.market_view import market_view
from subconscious.logic.throughput import current_model, learn_from_run, predicted_seconds, prior
from subconscious.models import ModelFamily, RenderTask, RunStatus
from subconscious.services import Services
from subconscious.throughput_model import Correction
from tests import builders
from tests.integration.workflow import boto_corrections, new_run

SD15 = (ModelFamily.SD15, 512, 512, 20, 8)


def task(batch: int = 8) -> RenderTask:
    return builders.render_task(1, batch, tenant_id="t", order_id="o", prompt="p")


def _finished_run(svc: Services, speedup: Decimal, images: int = 400) -> str:
    """A run on the fake market's RTX 4090 that rendered ``speedup`` × the prior's rate."""
    run = new_run(svc, "o-4090")
    predicted = predicted_seconds(run.offer.gpu, task(), images)
    svc.runs.save(
        run.model_copy(
            update={
                "status": RunStatus.RENDERING,
                "machine_launched_at": datetime.now(UTC),
                "images": images,
                "predicted_seconds": predicted,
                "render_seconds": predicted / speedup,
            }
        )
    )
    return run.run_id


def test_a_faster_run_than_predicted_raises_the_gpus_rate(svc: Services) -> None:
    before = current_model(svc).images_per_second("RTX 4090", *SD15)
    assert before == prior().images_per_second("RTX 4090", *SD15)

    render_run.record(svc, _finished_run(svc, Decimal(2)))

    stored = svc.corrections.load()
    assert stored["RTX 4090"].runs == 1
    after = current_model(svc).images_per_second("RTX 4090", *SD15)
    assert after > before
    # one run moves the factor by at most 2^0.3 (the model's weight per run)
    assert after / before <= Decimal("1.2312")
    # other cards are untouched
    assert current_model(svc).images_per_second("RTX 3090", *SD15) == prior().images_per_second(
        "RTX 3090", *SD15
    )


def test_runs_keep_moving_the_factor_towards_what_they_measure(svc: Services) -> None:
    for _ in range(6):
        render_run.record(svc, _finished_run(svc, Decimal("0.5")))
    factor = svc.corrections.load()["RTX 4090"]
    assert factor.runs == 6
    assert Decimal("0.5") < factor.factor < Decimal("0.7")  # converging on the measured half


def test_the_market_view_prices_images_at_the_corrected_rate(svc: Services) -> None:
    from subconscious.logic.prices import refresh

    refresh(svc)

    def price_4090() -> Decimal:
        view = market_view(svc)
        group = next(g for g in view.gpus if g.gpu == "RTX 4090")
        return group.offers[0].usd_per_image_sd15

    before = price_4090()
    render_run.record(svc, _finished_run(svc, Decimal(2)))
    assert price_4090() < before


def test_a_failed_run_teaches_nothing(svc: Services) -> None:
    run_id = _finished_run(svc, Decimal("0.5"))
    render_run.record(svc, run_id, {"Error": "RendererUnavailable", "Cause": "gone"})
    assert svc.corrections.load() == {}


def test_a_correction_that_cannot_be_stored_does_not_fail_the_runs_record(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*_: object) -> None:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(render_run, "learn_from_run", denied)
    run_id = _finished_run(svc, Decimal(2))
    assert render_run.record(svc, run_id) == {"status": "succeeded"}
    stored = svc.runs.get(run_id)
    assert stored is not None and stored.status is RunStatus.SUCCEEDED


def test_a_run_that_rendered_nothing_teaches_nothing(svc: Services) -> None:
    run = new_run(svc, "o-4090")
    assert learn_from_run(svc, run) is None
    assert svc.corrections.load() == {}


def test_a_correction_written_meanwhile_is_not_overwritten(svc: Services) -> None:
    first = svc.corrections.replace("RTX 4090", Correction(), Correction(Decimal("1.1"), 1))
    assert first
    # a writer that read before the first write loses, and must read again
    assert not svc.corrections.replace("RTX 4090", Correction(), Correction(Decimal("0.9"), 1))
    assert svc.corrections.load()["RTX 4090"] == Correction(Decimal("1.1"), 1)
    assert svc.corrections.replace(
        "RTX 4090", Correction(Decimal("1.1"), 1), Correction(Decimal("1.2"), 2)
    )
    # learning reads afresh, so it builds on the stored factor
    run = svc.runs.get(_finished_run(svc, Decimal(1)))
    assert run is not None
    learned = learn_from_run(svc, run)
    assert learned is not None and learned.runs == 3


@pytest.mark.moto  # reads or writes AWS itself
def test_factors_are_kept_per_server_and_per_model_version(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subconscious import services as services_module
    from subconscious.dal.prices import ThroughputCorrections

    render_run.record(svc, _finished_run(svc, Decimal(2)))
    assert svc.corrections.load()["RTX 4090"].runs == 1
    table = boto_corrections(svc)._table
    # what automatic1111's runs taught does not move the lean worker's rates
    monkeypatch.setenv("SUBC_WORKER", "lean")
    monkeypatch.setenv("SUBC_WORKER_CHECKPOINT", "runwayml/stable-diffusion-v1-5")
    services_module.reset()
    assert services_module.services().corrections.load() == {}
    # nor do factors learned before the model charged automatic1111 its encoding (version 1)
    table.put_item(
        Item={
            "provider": "#throughput",
            "offer_id": "RTX 3090",
            "factor": Decimal("0.7"),
            "runs": 4,
        }
    )
    assert set(ThroughputCorrections("unused", table).load()) == {"RTX 4090"}
