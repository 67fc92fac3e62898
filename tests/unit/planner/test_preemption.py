"""The preemption rate the policy prices interruptible rentals at: what our machines saw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR
from subconscious.planner.policy import OpenOrder, PlanState, _ranked
from subconscious.planner.preemption import PRIOR_HOURS, WINDOW, Spell, observed_rate
from tests.unit.planner.test_policy import RATES, job, offer

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
H = timedelta(hours=1)


def test_no_history_is_the_default_rate() -> None:
    assert observed_rate([], NOW) == DEFAULT_PREEMPTIONS_PER_HOUR


def test_preemptions_per_machine_hour_with_the_default_as_a_prior() -> None:
    # 6 machine-hours, 6 preemptions: (6 + 0.25·2) / (6 + 2)
    spells = [Spell(NOW - (i + 1) * H, NOW - i * H, preempted=True) for i in range(6)]
    assert observed_rate(spells, NOW) == pytest.approx(
        (6 + DEFAULT_PREEMPTIONS_PER_HOUR * PRIOR_HOURS) / (6 + PRIOR_HOURS)
    )
    # a calm day: ten machine-hours and none preempted, below the default
    calm = [Spell(NOW - 10 * H, None, preempted=False)]
    assert observed_rate(calm, NOW) < DEFAULT_PREEMPTIONS_PER_HOUR


def test_only_the_last_window_counts() -> None:
    old = [Spell(NOW - WINDOW - 5 * H, NOW - WINDOW - H, preempted=True) for _ in range(9)]
    assert observed_rate(old, NOW) == DEFAULT_PREEMPTIONS_PER_HOUR
    # a live machine rented before the window counts from the window's start
    spanning = [Spell(NOW - WINDOW - 5 * H, None, preempted=False)]
    assert observed_rate(spanning, NOW) == pytest.approx(
        DEFAULT_PREEMPTIONS_PER_HOUR * PRIOR_HOURS / (24 + PRIOR_HOURS)
    )


def test_a_market_that_preempts_often_ranks_interruptible_rentals_below_on_demand() -> None:
    """An order quoted on an on-demand V100 cost more than its quote: the policy rented five
    interruptible cards in an hour, each preempted before it paid its start-up back, pricing
    them at a quarter of a preemption an hour while the market took two."""
    card = offer("a4500", "RTX A4500", "0.16", bid="0.10")
    v100 = offer("v100", "V100 16GB", "0.134", memory=16)
    work = [OpenOrder("o1", job(), 1131, NOW + H)]

    def first(rate: float) -> bool:
        state = PlanState(NOW, work, [], [card, v100], RATES, preemptions_per_hour=rate)
        return _ranked(state, [job()], interruptible=True)[0][1]

    assert first(DEFAULT_PREEMPTIONS_PER_HOUR)  # interruptible first at the default
    assert not first(6.0)  # on-demand first where machines are preempted every ten minutes
