"""The pure parts of order logic: ids, seeds, render tasks, ETA, the customer's view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from subconscious.logic.orders import (
    TASK_GPU_MEMORY_GB,
    eta,
    order_id_for,
    order_out,
    render_tasks,
    seed_bases,
)
from subconscious.logic.throughput import prior
from subconscious.models import Constraints, EndReason, JobSpec, ModelFamily, Order, OrderState
from subconscious.models.job import MAX_SEED
from subconscious.models.servers import WorkerKind

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def job(*counts: int, **overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "prompts": [{"text": f"prompt {i}", "count": c} for i, c in enumerate(counts or (4,))]
    }
    body.update(overrides)
    return JobSpec.model_validate(body)


def order(
    spec: JobSpec,
    bases: list[int],
    state: OrderState = OrderState.ACCEPTED,
    **overrides: Any,
) -> Order:
    fields: dict[str, Any] = {
        "order_id": "o-1",
        "quote_id": "q-1",
        "option_id": "opt-1",
        "state": state,
        "job": spec,
        "constraints": Constraints(),
        "price_per_image_usd": Decimal("0.000124"),
        "total_usd": Decimal("0.0124"),
        "images_total": spec.total_images,
        "seed_bases": bases,
        "gpu": "RTX 4090",
        "promised_at": NOW + timedelta(hours=1),
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW - timedelta(minutes=1),
    }
    fields.update(overrides)
    return Order(**fields)


# --- order ids ---
def test_order_id_is_deterministic_per_quote() -> None:
    assert order_id_for("q-123") == order_id_for("q-123")
    assert order_id_for("q-123") != order_id_for("q-124")
    assert re.fullmatch(r"o-[0-9a-f]{32}", order_id_for("q-123"))


# --- seed bases ---
def test_fixed_policy_gives_the_base_to_every_prompt() -> None:
    spec = job(3, 5, 1, seed={"kind": "fixed", "base": 1234})
    assert seed_bases("o-a", spec) == [1234, 1234, 1234]
    assert seed_bases("o-b", spec) == [1234, 1234, 1234]


def test_fixed_base_near_the_top_keeps_seeds_in_range() -> None:
    spec = job(3, 1, seed={"kind": "fixed", "base": MAX_SEED})
    bases = seed_bases("o-a", spec)
    assert bases == [MAX_SEED - 2, MAX_SEED]
    assert all(b + p.count - 1 <= MAX_SEED for b, p in zip(bases, spec.prompts, strict=True))


def test_random_policy_is_deterministic_per_order() -> None:
    spec = job(4, 4, 4)
    assert seed_bases("o-a", spec) == seed_bases("o-a", spec)


def test_random_policy_differs_between_orders_and_prompts() -> None:
    spec = job(4, 4, 4)
    a, b = seed_bases("o-a", spec), seed_bases("o-b", spec)
    assert a != b
    assert len(set(a)) == 3
    assert len(set(b)) == 3


def test_random_bases_leave_room_for_every_seed() -> None:
    spec = job(10_000)
    for order_id in (f"o-{i}" for i in range(200)):
        [base] = seed_bases(order_id, spec)
        assert base >= 0
        assert base + 10_000 - 1 <= MAX_SEED


# --- render tasks ---
@pytest.mark.parametrize(
    ("count", "batches"),
    [(20, [8, 8, 4]), (8, [8]), (9, [8, 1]), (1, [1]), (16, [8, 8]), (3, [3])],
)
def test_batches_are_at_most_8(count: int, batches: list[int]) -> None:
    tasks = render_tasks("t-1", order(job(count), [500]))
    assert [t.batch_size for t in tasks] == batches


def test_seeds_cover_each_prompt_exactly() -> None:
    spec = job(20, 3, 9)
    bases = [1000, 5000, 90]
    tasks = render_tasks("t-1", order(spec, bases))
    for index, (prompt, base) in enumerate(zip(spec.prompts, bases, strict=True)):
        seeds = [s for t in tasks if t.prompt_index == index for s in t.seeds]
        assert seeds == list(range(base, base + prompt.count))  # exact, in order, no overlap
    assert sum(t.batch_size for t in tasks) == spec.total_images


def test_tasks_carry_the_job() -> None:
    spec = job(
        20,
        negative_prompt="blurry",
        width=640,
        height=384,
        steps=30,
        cfg_scale="6.5",
        sampler="DDIM",
    )
    tasks = render_tasks("t-9", order(spec, [77], order_id="o-xyz"))
    assert [(t.seed, t.batch_size) for t in tasks] == [(77, 8), (85, 8), (93, 4)]
    first = tasks[0]
    assert (first.tenant_id, first.order_id, first.prompt_index, first.prompt) == (
        "t-9",
        "o-xyz",
        0,
        "prompt 0",
    )
    assert (first.width, first.height, first.steps, first.cfg_scale) == (
        640,
        384,
        30,
        Decimal("6.5"),
    )
    assert first.negative_prompt == "blurry"
    assert first.sampler.value == "DDIM"
    assert first.model_family.value == "sd15"
    assert [t.task_id for t in tasks] == ["o-xyz:0:77", "o-xyz:0:85", "o-xyz:0:93"]


def test_sdxl_1024_tasks_hold_what_fits_a_24_gb_card() -> None:
    # our H100 measurement: SDXL 1024² at batch 8 peaks at 21 GiB, within 90 % of 24 GB
    spec = job(20, model_family="sdxl", width=1024, height=1024)
    tasks = render_tasks("t-1", order(spec, [10]))
    assert prior().fitting_batch(ModelFamily.SDXL, 1024, 1024, TASK_GPU_MEMORY_GB) == 8
    assert [(t.seed, t.batch_size) for t in tasks] == [(10, 8), (18, 8), (26, 4)]


def test_task_ids_are_unique() -> None:
    spec = job(20, 20, seed={"kind": "fixed", "base": 0})
    tasks = render_tasks("t-1", order(spec, seed_bases("o-1", spec)))
    assert len({t.task_id for t in tasks}) == len(tasks) == 6


# --- eta and order_out ---
@pytest.mark.parametrize(
    "state",
    [
        OrderState.COMPLETED,
        OrderState.PARTIALLY_COMPLETED,
        OrderState.FAILED,
        OrderState.CANCELLED,
        OrderState.EXPIRED,
    ],
)
def test_no_eta_for_terminal_states(state: OrderState) -> None:
    assert eta(order(job(), [0], state), NOW) is None


@pytest.mark.parametrize("state", [OrderState.QUOTED, OrderState.ACCEPTED])
def test_eta_before_rendering_is_the_promise(state: OrderState) -> None:
    promised = NOW + timedelta(hours=2)
    assert eta(order(job(), [0], state, promised_at=promised), NOW) == promised
    late = NOW - timedelta(minutes=3)
    assert eta(order(job(), [0], state, promised_at=late), NOW) == NOW  # never in the past


def _eta_40_left_on_a_4090(
    steps: int = 20, worker: WorkerKind = WorkerKind.AUTOMATIC1111
) -> timedelta:
    per_s = float(prior().images_per_second("RTX 4090", ModelFamily.SD15, 512, 512, steps, 8))
    # automatic1111 also encodes each 512² PNG: 0.275 s per megapixel
    encode_s = 0.275 * 512 * 512 / 1e6 if worker is WorkerKind.AUTOMATIC1111 else 0.0
    return timedelta(seconds=40 * (1 / per_s + encode_s))


def _left(order: Order, worker: WorkerKind = WorkerKind.AUTOMATIC1111) -> float:
    at = eta(order, NOW, worker)
    assert at is not None
    return (at - NOW).total_seconds()


def test_eta_while_rendering_from_remaining_images() -> None:
    rendering = order(job(100), [0], OrderState.RENDERING, images_done=60)
    for worker in WorkerKind:
        expected = _eta_40_left_on_a_4090(worker=worker).total_seconds()
        assert _left(rendering, worker) == pytest.approx(expected)
    slower = order(job(100, steps=40), [0], OrderState.RENDERING, images_done=60)
    assert _left(slower) == pytest.approx(_eta_40_left_on_a_4090(40).total_seconds())
    # twice the steps, but the same PNG encoding per image: less than twice as long
    assert _left(rendering) < _left(slower) < 2 * _left(rendering)


def test_eta_while_rendering_with_nothing_left_is_now() -> None:
    rendering = order(job(100), [0], OrderState.RENDERING, images_done=100)
    assert eta(rendering, NOW) == NOW


def test_order_out() -> None:
    source = order(
        job(100), [0], OrderState.RENDERING, images_done=55, images_failed=5, spend_micros=1_234_567
    )
    out = order_out(source, NOW)
    assert out.model_dump() == {
        "order_id": "o-1",
        "quote_id": "q-1",
        "option_id": "opt-1",
        "state": OrderState.RENDERING,
        "images_total": 100,
        "images_done": 55,
        "images_failed": 5,
        "images_released": 0,  # open: nothing released yet
        "price_per_image_usd": Decimal("0.000124"),
        "total_usd": Decimal("0.0124"),
        "charge_usd": Decimal("0.006820"),  # 55 delivered x price: the given-up 5 are free
        # no spend_usd: our GPU cost (1.234567 here) is not the customer's business
        "promised_at": NOW + timedelta(hours=1),
        "eta": out.eta,  # 40 images neither delivered nor given up: checked below
        "held_until": None,
        "held_reason": None,
        "end_reason": None,
        "ended_at": None,
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW - timedelta(minutes=1),
        "webhook_url": None,
    }
    assert type(out.charge_usd) is Decimal
    hooked = order(job(4), [0], webhook_url="https://hooks.example.com/x")
    assert order_out(hooked, NOW).webhook_url == "https://hooks.example.com/x"
    assert out.eta is not None
    assert (out.eta - NOW).total_seconds() == pytest.approx(
        _eta_40_left_on_a_4090().total_seconds()
    )


def test_an_ended_order_shows_why_and_charges_only_what_it_delivered() -> None:
    ended_at = NOW - timedelta(seconds=30)
    source = order(
        job(100),
        [0],
        OrderState.PARTIALLY_COMPLETED,
        images_done=99,
        images_failed=1,
        end_reason=EndReason.TASKS_FAILED,
        ended_at=ended_at,
    )
    out = order_out(source, NOW)
    assert (out.end_reason, out.ended_at, out.eta) == (EndReason.TASKS_FAILED, ended_at, None)
    assert out.charge_usd == Decimal("0.000124") * 99 < out.total_usd
    assert out.images_released == 0
    failed = order(job(100), [0], OrderState.FAILED, images_failed=100)
    assert order_out(failed, NOW).charge_usd == 0
    # an order whose time ran out releases what it never got, and is charged for the rest
    expired = order(job(100), [0], OrderState.EXPIRED, images_done=30, images_failed=10)
    out = order_out(expired, NOW)
    assert (out.images_released, out.charge_usd) == (60, Decimal("0.000124") * 30)


def test_order_out_of_a_finished_order_has_no_eta() -> None:
    out = order_out(order(job(), [0], OrderState.COMPLETED, images_done=4), NOW)
    assert out.eta is None
    assert out.charge_usd == Decimal("0.000124") * 4
