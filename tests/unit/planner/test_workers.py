"""The server a machine runs is part of the rate lookup, and the planner compiles the lean
worker's UNet only where a run is long enough to pay for it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from subconscious.logic.planning import machine
from subconscious.logic.throughput import predicted_seconds
from subconscious.models import JobSpec, ModelFamily, Offer, RenderRun, RenderTask, RunStatus
from subconscious.models.servers import WorkerKind
from subconscious.planner.costs import Rates
from subconscious.planner.policy import (
    DISPATCH_LATENCY_S,
    LiveMachine,
    OpenOrder,
    PlanState,
    Rent,
    _rent_until,
    decide,
)
from subconscious.planner.workers import (
    COMPILE_S,
    compile_pays,
    compile_seconds,
    kind_for,
    server_share,
    shape,
    speedup,
)
from subconscious.settings import Settings
from subconscious.throughput_model import Correction, ThroughputModel
from tests import builders

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
    return builders.offer(f"o-{gpu}", gpu, "2.00", bid=bid, memory=memory)


def test_the_lean_worker_renders_at_the_prior_automatic1111_slower_and_compiled_faster() -> None:
    # the prior leaves out PNG encoding: the lean worker hides it, automatic1111 pays it
    for card, job, gain in ((offer(), SD15, 1.41), (offer(), SDXL, 1.29)):
        reference, lean, compiled = (
            A1111.speed(card, job),
            LEAN.speed(card, job),
            LEAN.compiled(card, job),
        )
        prior = float(
            MODEL.images_per_second(
                card.gpu, job.model_family, job.width, job.height, 20, lean.batch
            )
        )
        assert lean.images_per_s == pytest.approx(prior)
        assert reference.batch == lean.batch and reference == A1111.compiled(card, job)
        encode_s = 1 / reference.images_per_s - 1 / lean.images_per_s
        assert encode_s == pytest.approx(0.275 * job.width * job.height / 1e6)
        assert compiled.batch == lean.batch
        assert compiled.images_per_s == pytest.approx(lean.images_per_s * gain)
    assert speedup(WorkerKind.AUTOMATIC1111, ModelFamily.SD15, True) == 1.0


@pytest.mark.parametrize(
    ("width", "gpu_only", "with_png"),
    # h100-sd-throughput.jsonl, batch 8: images_per_s_gpu and images_per_s_with_png
    [(512, 6.349, 4.572), (1024, 1.134, 0.855)],
)
def test_automatic1111s_share_matches_the_measured_h100_on_the_slow_side(
    width: int, gpu_only: float, with_png: float
) -> None:
    delivered = gpu_only * server_share(WorkerKind.AUTOMATIC1111, gpu_only, width, width)
    assert with_png * 0.95 <= delivered <= with_png
    assert server_share(WorkerKind.LEAN, gpu_only, width, width) == 1.0


def test_a_learned_factor_scales_automatic1111s_whole_rate() -> None:
    # the share is taken on the prior, so learning stays a plain ratio of measured to predicted
    card = offer("RTX 4090", 24)
    slower = Rates(MODEL.corrected({"RTX 4090": Correction(Decimal("0.5"), 3)}))
    assert slower.speed(card, SD15).batch == A1111.speed(card, SD15).batch
    assert slower.speed(card, SD15).images_per_s == pytest.approx(
        0.5 * A1111.speed(card, SD15).images_per_s
    )


def test_a_static_server_is_automatic1111_whatever_our_images_run() -> None:
    static = offer().model_copy(update={"provider": "static"})
    assert kind_for("static", WorkerKind.LEAN) is WorkerKind.AUTOMATIC1111
    assert kind_for("runpod", WorkerKind.LEAN) is WorkerKind.LEAN
    assert LEAN.compiled(static, SD15) == LEAN.speed(static, SD15)


def test_compiling_pays_only_on_long_runs_of_the_lean_worker() -> None:
    # 80 s to compile SD 1.5, saving 29 % of the rendering: pays twice over past ~550 s
    assert not compile_pays(WorkerKind.LEAN, SD15, 500)
    assert compile_pays(WorkerKind.LEAN, SD15, 700)
    assert not compile_pays(WorkerKind.AUTOMATIC1111, SD15, 10**6)
    assert not compile_pays(WorkerKind.LEAN, SDXL, 2000)  # 240 s to compile, 22 % saved
    assert compile_pays(WorkerKind.LEAN, SDXL, 2200)
    # without guidance the worker's compiled (guided) batch never serves the calls
    unguided = SD15.model_copy(update={"cfg_scale": Decimal(1)})
    assert not compile_pays(WorkerKind.LEAN, unguided, 10**6)


def test_shapes_and_how_long_compiling_them_delays_a_machine() -> None:
    assert shape(SD15, 8) == "512x512x8"
    assert compile_seconds(()) == 0
    # each setting at its own family's compile; two jobs of one setting compile once
    assert compile_seconds((SD15,)) == COMPILE_S[ModelFamily.SD15] == 80
    assert compile_seconds((SD15, SD15.model_copy(update={"steps": 30}))) == 80
    assert compile_seconds((SD15, SDXL)) == 80 + COMPILE_S[ModelFamily.SDXL]


def _plan(rates: Rates, images: int, within: timedelta) -> list[Rent]:
    order = OpenOrder("o1", SD15, images, NOW + within)
    cheap = offer("RTX 3090", 24, bid="0.10")
    decisions = decide(PlanState(NOW, [order], [], [cheap], rates))
    return [d for d in decisions if isinstance(d, Rent)]


def test_the_planner_compiles_for_a_long_run_on_the_lean_worker() -> None:
    [rent] = _plan(LEAN, 10_000, timedelta(hours=12))
    assert rent.compile_for == (SD15,)


def test_the_planner_does_not_compile_short_runs_or_automatic1111() -> None:
    [short] = _plan(LEAN, 200, timedelta(hours=2))
    assert short.compile_for == ()  # 200 images: the compile would not pay
    [reference] = _plan(A1111, 10_000, timedelta(hours=12))
    assert reference.compile_for == ()


def test_the_planner_does_not_compile_where_the_delay_would_break_a_promise() -> None:
    """Found in review: a machine rented to just keep a promise compiled, and the next tick,
    seeing it ready minutes later, had to rent a second one. One H100 keeps 16,600 images due
    in an hour only if it renders from its first minute; 15,000 leave room to compile."""
    h100s = [offer().model_copy(update={"offer_id": f"h{i}"}) for i in range(4)]
    # interruptible capacity on offer, but dearer for this work than an on-demand H100: the
    # progress rules rent (the safety net alone would wait, and it never compiles)
    h100s.append(offer("RTX 3060", 12, bid="1.90"))
    due = NOW + timedelta(hours=1, seconds=1)
    for images, compiles in ((16_600, False), (15_000, True)):
        order = OpenOrder("o1", SD15, images, due)
        rents = [d for d in decide(PlanState(NOW, [order], [], h100s, LEAN)) if isinstance(d, Rent)]
        assert len(rents) == 1 and bool(rents[0].compile_for) is compiles
        # the next tick, with that machine starting (and compiling if it was told to), rents
        # nothing more
        late = compile_seconds((SD15,) if compiles else ())
        ready = NOW + timedelta(seconds=DISPATCH_LATENCY_S + 300 + late)
        machines = [LiveMachine("m0", rents[0].offer, False, ready)]
        later = decide(PlanState(NOW, [order], machines, h100s[1:], LEAN))
        assert not [d for d in later if isinstance(d, Rent)]


def test_at_most_two_settings_compile_the_most_work_first() -> None:
    jobs = [SD15.model_copy(update={"width": w, "height": w}) for w in (512, 576, 640)]
    orders = [
        OpenOrder(f"o{i}", job, images, NOW + timedelta(hours=12))
        for i, (job, images) in enumerate(zip(jobs, (3000, 9000, 6000), strict=True))
    ]
    state = PlanState(NOW, orders, [], [offer()], LEAN)
    [rent] = _rent_until(state, orders, jobs, [], interruptible=False, why="progress")
    assert isinstance(rent, Rent)
    assert [(j.width, j.height) for j in rent.compile_for] == [(576, 576), (640, 640)]


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
    compiling = machine(
        run.model_copy(update={"compile_shapes": ("512x512x8",), "compile_s": 80}), NOW
    )
    assert compiling.ready_at - plain.ready_at == timedelta(seconds=80)


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
    prior = MODEL.images_per_second("H100 SXM", ModelFamily.SD15, 512, 512, 20, 8)
    assert lean == pytest.approx(Decimal(800) / prior)
    # automatic1111 also encodes each PNG: 0.072 s per 512² image
    assert float(reference - lean) == pytest.approx(800 * 0.275 * 512 * 512 / 1e6)
    compiled = predicted_seconds("H100 SXM", task, 800, WorkerKind.LEAN, compiled=True)
    assert float(lean / compiled) == pytest.approx(1.41)


def test_lean_with_tensordock_needs_its_image() -> None:
    with pytest.raises(ValueError, match="SUBC_TENSORDOCK_IMAGE"):
        Settings(worker=WorkerKind.LEAN, providers=("tensordock",))
    assert Settings(worker=WorkerKind.LEAN, providers=("tensordock",), tensordock_image="x/y:1")


def test_the_market_view_prices_an_image_at_the_rate_quotes_count_on() -> None:
    from subconscious.logic.market_view import reference_job, usd_per_image

    card = offer()
    lean_rate = LEAN.speed(card, reference_job(ModelFamily.SD15)).images_per_s
    a1111 = usd_per_image(A1111, card.usd_per_hour, card, ModelFamily.SD15)
    lean = usd_per_image(LEAN, card.usd_per_hour, card, ModelFamily.SD15)
    assert float(lean) == pytest.approx(2.00 / 3600 / lean_rate, rel=0.01)
    # automatic1111's PNG encoding makes its image dearer by 1 + rate × encode seconds
    assert float(a1111 / lean) == pytest.approx(1 + lean_rate * 0.275 * 0.262144, rel=0.02)
