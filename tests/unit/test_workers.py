"""The server a machine runs is part of the rate lookup, and the planner compiles the lean
worker's UNet only where a run is long enough to pay for it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from subconscious.logic.planning import machine
from subconscious.logic.throughput import predicted_seconds
from subconscious.models import JobSpec, ModelFamily, Offer, RenderRun, RenderTask, RunStatus
from subconscious.planner.costs import Rates
from subconscious.planner.policy import OpenOrder, PlanState, Rent, _rent_until, decide
from subconscious.planner.workers import (
    COMPILE_S,
    WorkerKind,
    compile_pays,
    compile_seconds,
    shape,
    speedup,
)
from subconscious.throughput_model import ThroughputModel

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
MODEL = ThroughputModel()
A1111 = Rates(MODEL)
LEAN = Rates(MODEL, WorkerKind.LEAN)
SD15 = JobSpec.model_validate({"prompts": [{"text": "a cat", "count": 1000}]})
SDXL = JobSpec.model_validate(
    {
        "prompts": [{"text": "a cat", "count": 100}],
        "model_family": "sdxl",
        "width": 1024,
        "height": 1024,
    }
)


def offer(gpu: str = "H100 SXM", memory: int = 80, bid: str | None = None) -> Offer:
    return Offer(
        provider="vast",
        offer_id=f"o-{gpu}",
        gpu=gpu,
        gpu_memory_gb=memory,
        usd_per_hour=Decimal("2.00"),
        interruptible=bid is not None,
        min_bid_usd_per_hour=Decimal(bid) if bid else None,
        startup_s=300,
    )


def test_automatic1111_is_the_reference_the_throughput_data_describes() -> None:
    assert speedup(WorkerKind.AUTOMATIC1111, ModelFamily.SD15, 512 * 512, 5.5, True) == 1.0
    assert A1111.speed(offer(), SD15) == A1111.compiled(offer(), SD15)


def test_the_lean_worker_gains_what_encoding_cost_automatic1111_more_on_fast_cards() -> None:
    # an H100 at automatic1111's 5.5 images/s: 1 / (1 - 0.042 x 5.5) = 1.30 (we measured 1.28)
    h100 = speedup(WorkerKind.LEAN, ModelFamily.SD15, 512 * 512, 5.5, False)
    assert h100 == pytest.approx(1.30, abs=0.01)
    slow = speedup(WorkerKind.LEAN, ModelFamily.SD15, 512 * 512, 0.5, False)
    assert 1.0 < slow < 1.03
    # compiled: x 1.35 on SD 1.5 (9.52 against 7.05 images/s in one run), x 1.29 on SDXL
    compiled = speedup(WorkerKind.LEAN, ModelFamily.SD15, 512 * 512, 5.5, True)
    assert compiled / h100 == pytest.approx(1.35)
    assert speedup(WorkerKind.LEAN, ModelFamily.SDXL, 1024 * 1024, 1.0, True) > speedup(
        WorkerKind.LEAN, ModelFamily.SDXL, 1024 * 1024, 1.0, False
    )
    # never more than 2x from encoding alone, however fast the card
    assert speedup(WorkerKind.LEAN, ModelFamily.SD15, 512 * 512, 100.0, False) == 2.0


def test_rates_for_the_lean_worker_are_faster_at_the_same_batch() -> None:
    for card, job in ((offer(), SD15), (offer(), SDXL), (offer("RTX 3090", 24), SD15)):
        reference, lean, compiled = (
            A1111.speed(card, job),
            LEAN.speed(card, job),
            LEAN.compiled(card, job),
        )
        assert reference.batch == lean.batch == compiled.batch
        assert reference.images_per_s < lean.images_per_s < compiled.images_per_s


def test_compiling_pays_only_on_long_runs_of_the_lean_worker() -> None:
    # 80 s to compile SD 1.5, saving 26 % of the rendering: pays twice over past ~616 s
    assert not compile_pays(WorkerKind.LEAN, SD15, 500)
    assert compile_pays(WorkerKind.LEAN, SD15, 700)
    assert not compile_pays(WorkerKind.AUTOMATIC1111, SD15, 10**6)
    assert not compile_pays(WorkerKind.LEAN, SDXL, 900)  # 120 s to compile, 22 % saved
    assert compile_pays(WorkerKind.LEAN, SDXL, 1200)


def test_shapes_and_how_long_compiling_them_delays_a_machine() -> None:
    assert shape(SD15, 8) == "512x512x8"
    assert compile_seconds(()) == 0
    assert compile_seconds(("512x512x8",)) == COMPILE_S[ModelFamily.SD15]
    assert compile_seconds(("512x512x8", "1024x1024x4")) == sum(COMPILE_S.values())


def _plan(rates: Rates, images: int, within: timedelta) -> list[Rent]:
    order = OpenOrder("o1", SD15, images, NOW + within)
    cheap = offer("RTX 3090", 24, bid="0.10")
    decisions = decide(PlanState(NOW, [order], [], [cheap], rates))
    return [d for d in decisions if isinstance(d, Rent)]


def test_the_planner_compiles_for_a_long_run_on_the_lean_worker() -> None:
    [rent] = _plan(LEAN, 10_000, timedelta(hours=12))
    assert rent.compile_for == (SD15,)


def test_the_planner_does_not_compile_short_runs_close_deadlines_or_automatic1111() -> None:
    [short] = _plan(LEAN, 200, timedelta(minutes=30))
    assert short.compile_for == ()  # 30 minutes away: needed as soon as it boots
    [reference] = _plan(A1111, 10_000, timedelta(hours=12))
    assert reference.compile_for == ()


def test_a_safety_net_machine_never_compiles() -> None:
    # the same rent for the same long backlog: as progress it compiles, as the safety net
    # (needed the moment it boots) it does not
    order = OpenOrder("o1", SD15, 10_000, NOW + timedelta(hours=12))
    state = PlanState(NOW, [order], [], [offer()], LEAN)
    for why, expected in (("progress", (SD15,)), ("safety net", ())):
        [rent] = _rent_until(state, [order], [SD15], [], interruptible=False, why=why)
        assert isinstance(rent, Rent) and rent.compile_for == expected


def test_a_machine_compiling_is_expected_ready_that_much_later() -> None:
    run = RenderRun(
        run_id="r1",
        offer=offer(),
        status=RunStatus.PROVISIONING,
        started_at=NOW,
        machine_launched_at=NOW,
    )
    plain = machine(run, NOW)
    compiling = machine(run.model_copy(update={"compile_shapes": ("512x512x8",)}), NOW)
    assert compiling.ready_at - plain.ready_at == timedelta(seconds=COMPILE_S[ModelFamily.SD15])


def test_a_runs_prediction_counts_the_server_so_the_gpu_factor_stays_the_cards() -> None:
    task = RenderTask.model_validate(
        {
            "tenant_id": "t",
            "order_id": "o",
            "prompt_index": 0,
            "prompt": "a cat",
            "negative_prompt": "",
            "seed": 1,
            "batch_size": 8,
            "model_family": "sd15",
            "width": 512,
            "height": 512,
            "steps": 20,
            "cfg_scale": "7",
            "sampler": "Euler a",
        }
    )
    reference = predicted_seconds("H100 SXM", task, 800)
    lean = predicted_seconds("H100 SXM", task, 800, WorkerKind.LEAN)
    compiled = predicted_seconds("H100 SXM", task, 800, WorkerKind.LEAN, compiled=True)
    assert reference > lean > compiled
    per_s = MODEL.images_per_second("H100 SXM", ModelFamily.SD15, 512, 512, 20, 8)
    factor = speedup(WorkerKind.LEAN, ModelFamily.SD15, 512 * 512, float(per_s), False)
    assert float(reference / lean) == pytest.approx(factor)
