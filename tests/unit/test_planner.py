"""Pure planning: the quote for a job, and what to rent for the backlog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from subconscious.errors import NoCapacity
from subconscious.models import Constraints, JobSpec, RenderRun
from subconscious.planner.dispatch import Backlog, Rent, Wait, decide
from subconscious.planner.quote import (
    cheapest_offer,
    machine_cost_micros,
    plan_quote,
    render_seconds,
    usable,
)
from tests.conftest import offer

NOW = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
# RTX 4090 renders SD 1.5 512² at 3.95 images/s; an unknown card at 0.5 images/s.
FAST = offer("o-4090", "RTX 4090", "0.40")
SLOW_CHEAP_PER_HOUR = offer("o-mystery", "Mystery GPU", "0.30")


def job(count: int = 100, **overrides: Any) -> JobSpec:
    body: dict[str, Any] = {"prompts": [{"text": "a fox", "count": count}]}
    body.update(overrides)
    return JobSpec.model_validate(body)


# --- costs ---
def test_render_seconds_and_machine_cost() -> None:
    spec = job(100)
    assert render_seconds(FAST, spec) == Decimal(100) / Decimal("3.95")
    # (60 s start-up + 25.316 s rendering) at $0.40/h = 9479.6 micros, rounded up
    assert machine_cost_micros(FAST, spec) == 9480
    # (60 + 200 s) at $0.30/h = 21666.7 micros
    assert machine_cost_micros(SLOW_CHEAP_PER_HOUR, spec) == 21667


def test_cheapest_machine_cost_wins_over_cheapest_hourly_price() -> None:
    assert cheapest_offer([SLOW_CHEAP_PER_HOUR, FAST], job(100)) == FAST


def test_cheapest_hourly_price_wins_when_start_up_dominates() -> None:
    # 7 images: the slow card costs 6167 micros, the fast one 6864
    assert cheapest_offer([FAST, SLOW_CHEAP_PER_HOUR], job(7)) == SLOW_CHEAP_PER_HOUR


def test_equal_cost_breaks_ties_by_offer_id() -> None:
    b = offer("o-b")
    a = offer("o-a")
    assert cheapest_offer([b, a], job()).offer_id == "o-a"


@pytest.mark.parametrize(
    ("family", "side", "memory", "ok"),
    [
        ("sd15", 512, 8, True),
        ("sd15", 512, 7, False),
        ("sdxl", 1024, 12, True),
        ("sdxl", 1024, 11, False),
    ],
)
def test_usable_needs_memory_per_family(family: str, side: int, memory: int, ok: bool) -> None:
    candidate = offer("o-x", "RTX 4090", "0.40", memory)
    spec = job(model_family=family, width=side, height=side)
    assert usable([candidate], spec) == ([candidate] if ok else [])


# --- plan_quote ---
def test_plan_quote_prices_the_cheapest_machine_with_margin() -> None:
    [option] = plan_quote(job(100), Constraints(), [SLOW_CHEAP_PER_HOUR, FAST], NOW, 30)
    assert option.provider == "fake"
    assert option.gpu == "RTX 4090"
    # ceil(9480 * 1.30 / 100) = ceil(123.24) = 124 micros per image
    assert option.price_per_image_usd == Decimal("0.000124")
    assert option.total_usd == Decimal("0.012400")
    assert type(option.price_per_image_usd) is Decimal
    assert type(option.total_usd) is Decimal
    assert option.start_at == NOW
    # (90 dispatch + 60 start-up + 25.3 render) * 1.25 = 219.1 s
    assert option.completes_at == NOW + timedelta(seconds=219)
    assert option.meets_budget is True
    assert option.meets_deadline is True
    assert option.label == "requested"
    assert option.interruptible is False
    assert option.machines == 1


def test_plan_quote_without_margin_and_several_prompts() -> None:
    spec = JobSpec.model_validate(
        {"prompts": [{"text": "a", "count": 3}, {"text": "b", "count": 4}]}
    )
    [option] = plan_quote(spec, Constraints(), [FAST, SLOW_CHEAP_PER_HOUR], NOW, 0)
    assert option.gpu == "Mystery GPU"
    assert option.price_per_image_usd == Decimal("0.000881")  # 6167 / 7 = 881
    assert option.total_usd == Decimal("0.006167")


def test_total_is_price_times_images_so_rounding_is_on_the_price() -> None:
    # 9480 * 1.3 = 12324 micros would be the exact total; the price per image is rounded up
    # first (123.24 -> 124), so the total is 124 * 100 = 12400, not 12324
    [option] = plan_quote(job(100), Constraints(), [FAST], NOW, 30)
    assert option.total_usd == option.price_per_image_usd * 100 == Decimal("0.0124")


def test_option_id_is_deterministic_per_offer_and_time() -> None:
    [a] = plan_quote(job(), Constraints(), [FAST], NOW, 30)
    [b] = plan_quote(job(), Constraints(), [FAST], NOW, 30)
    [c] = plan_quote(job(), Constraints(), [FAST], NOW + timedelta(seconds=1), 30)
    assert a.option_id == b.option_id
    assert a.option_id != c.option_id
    assert a.option_id.startswith("opt-")
    assert len(a.option_id) == len("opt-") + 12


@pytest.mark.parametrize(
    ("budget", "meets"), [("0.000124", True), ("0.000123", False), ("1", True), ("0", False)]
)
def test_meets_budget(budget: str, meets: bool) -> None:
    constraints = Constraints(max_price_per_image_usd=Decimal(budget))
    [option] = plan_quote(job(100), constraints, [FAST], NOW, 30)
    assert option.meets_budget is meets
    assert option.meets_deadline is True
    assert option.label == ("requested" if meets else "cheapest")


@pytest.mark.parametrize(("seconds", "meets"), [(219, True), (3600, True), (218, False)])
def test_meets_deadline(seconds: int, meets: bool) -> None:
    constraints = Constraints(deadline=NOW + timedelta(seconds=seconds))
    [option] = plan_quote(job(100), constraints, [FAST], NOW, 30)
    assert option.meets_deadline is meets
    assert option.meets_budget is True
    assert option.label == ("requested" if meets else "cheapest")


def test_no_usable_offer_is_no_capacity() -> None:
    small = offer("o-small", "RTX 3060", "0.10", 8)
    sdxl = job(model_family="sdxl", width=1024, height=1024)
    with pytest.raises(NoCapacity):
        plan_quote(sdxl, Constraints(), [small], NOW, 30)
    with pytest.raises(NoCapacity):
        plan_quote(job(), Constraints(), [], NOW, 30)


# --- dispatch.decide ---
def live_run(run_id: str = "r-1") -> RenderRun:
    return RenderRun(run_id=run_id, offer=FAST, started_at=NOW)


def backlog(waiting: int = 10, in_flight: int = 0, budget: int = 50_000, jobs: int = 1) -> Backlog:
    return Backlog(
        waiting_tasks=waiting,
        in_flight_tasks=in_flight,
        jobs=[job(100) for _ in range(jobs)],
        budget_left_micros=budget,
    )


def test_wait_when_no_work() -> None:
    assert decide(backlog(waiting=0), [], [FAST], 1) == [Wait("no work waiting")]
    assert decide(backlog(jobs=0), [], [FAST], 1) == [Wait("no work waiting")]


def test_wait_when_a_run_is_live() -> None:
    assert decide(backlog(), [live_run()], [FAST], 1) == [Wait("1 run(s) live, limit 1")]
    assert decide(backlog(), [live_run(), live_run("r-2")], [FAST], 2) == [
        Wait("2 run(s) live, limit 2")
    ]


@pytest.mark.parametrize("budget", [0, -1])
def test_wait_when_no_budget_left(budget: int) -> None:
    assert decide(backlog(budget=budget), [], [FAST], 1) == [
        Wait("open orders have no budget left")
    ]


def test_wait_when_no_usable_offer() -> None:
    assert decide(backlog(), [], [], 1) == [Wait("no offer on the market can run every open job")]
    tiny = offer("o-tiny", memory=4)
    assert decide(backlog(), [], [tiny], 1) == [
        Wait("no offer on the market can run every open job")
    ]


def test_rent_the_cheapest_with_the_budget_as_spend_cap() -> None:
    decisions = decide(
        backlog(waiting=3, in_flight=2, budget=12_345), [], [SLOW_CHEAP_PER_HOUR, FAST], 1
    )
    assert decisions == [
        Rent(offer=FAST, spend_cap_micros=12_345, reason="5 task(s) waiting, no run live")
    ]


def test_in_flight_work_alone_still_rents() -> None:
    [decision] = decide(backlog(waiting=0, in_flight=1), [], [FAST], 1)
    assert isinstance(decision, Rent)
    assert decision.offer == FAST


def test_rent_below_the_live_limit() -> None:
    [decision] = decide(backlog(), [live_run()], [FAST], 2)
    assert isinstance(decision, Rent)
    assert decision.spend_cap_micros == 50_000


def test_the_oldest_job_picks_the_gpu() -> None:
    sdxl = job(model_family="sdxl", width=1024, height=1024)
    small = offer("o-small", "RTX 3060", "0.05", 8)
    work = Backlog(waiting_tasks=1, in_flight_tasks=0, jobs=[sdxl, job()], budget_left_micros=1)
    [decision] = decide(work, [], [small, FAST], 1)
    assert isinstance(decision, Rent)
    assert decision.offer == FAST  # the 8 GB card cannot run the SDXL job that comes first


def test_the_machine_must_suit_every_open_job_not_only_the_oldest() -> None:
    sdxl = job(model_family="sdxl", width=1024, height=1024)
    small = offer("o-small", "RTX 3060", "0.05", 8)
    # the oldest job is SD 1.5 (the small card could run it) but an SDXL task waits behind it
    work = Backlog(waiting_tasks=2, in_flight_tasks=0, jobs=[job(), sdxl], budget_left_micros=1)
    [decision] = decide(work, [], [small, FAST], 1)
    assert isinstance(decision, Rent)
    assert decision.offer == FAST


@pytest.mark.parametrize(("failures", "rents"), [(0, True), (2, True), (3, False), (9, False)])
def test_repeated_failed_runs_stop_the_renting(failures: int, rents: bool) -> None:
    work = Backlog(
        waiting_tasks=1,
        in_flight_tasks=0,
        jobs=[job()],
        budget_left_micros=50_000,
        recent_failed_runs=failures,
    )
    [decision] = decide(work, [], [FAST], 1)
    assert isinstance(decision, Rent) is rents
