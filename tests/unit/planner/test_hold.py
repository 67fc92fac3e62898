"""``latest_start``: while small work waits to share a start-up, when the dispatch rents for
it at the latest (what a held order tells its customer). Checked against ``decide`` itself:
a tick before that time still waits, a tick after it rents."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from subconscious.planner.policy import (
    MIN_DEFER_WINDOW,
    TICK_S,
    PlanState,
    Rent,
    Wait,
    decide,
    latest_start,
)
from tests.unit.planner.test_policy import CHEAP, NOW, ON_DEMAND_ONLY, order, state


def _at(plan: PlanState, delta: timedelta) -> PlanState:
    return replace(plan, now=plan.now + delta)


def _waits_for_company(plan: PlanState) -> bool:
    return any(isinstance(d, Wait) and d.shares_startup for d in decide(plan))


def test_small_work_with_a_day_of_slack_waits_until_three_hours_before_its_deadline() -> None:
    plan = state([order(10, timedelta(days=1))], [CHEAP, ON_DEMAND_ONLY])
    assert _waits_for_company(plan)

    until = latest_start(plan)

    assert until == NOW + timedelta(days=1) - MIN_DEFER_WINDOW
    assert _waits_for_company(_at(plan, until - NOW - timedelta(seconds=TICK_S)))
    later = decide(_at(plan, until - NOW + timedelta(seconds=TICK_S)))
    assert any(isinstance(d, Rent) for d in later)


def test_the_earliest_deadline_sets_the_time() -> None:
    plan = state([order(5, timedelta(days=2), "o1"), order(5, timedelta(hours=10), "o2")], [CHEAP])
    assert _waits_for_company(plan)
    assert latest_start(plan) == NOW + timedelta(hours=10) - MIN_DEFER_WINDOW


def test_where_waiting_stops_being_safe_before_the_window_the_time_is_found_to_a_tick() -> None:
    # the only card is slow to start: the safety test fails long before the window
    slow = ON_DEMAND_ONLY.model_copy(update={"offer_id": "slow", "startup_s": 6 * 3600})
    plan = state([order(10, timedelta(hours=12))], [slow])
    assert _waits_for_company(plan)

    until = latest_start(plan)

    assert NOW < until < NOW + timedelta(hours=12) - MIN_DEFER_WINDOW
    assert _waits_for_company(_at(plan, until - NOW - timedelta(seconds=TICK_S)))
    assert not _waits_for_company(_at(plan, until - NOW + timedelta(seconds=1)))


def test_past_the_window_it_is_now() -> None:
    plan = state([order(10, timedelta(hours=2))], [CHEAP])
    assert latest_start(plan) == NOW
