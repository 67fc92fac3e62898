"""Simulator mechanics: start-up, batches, preemption, billing, cost allocation."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.planner.sim import (
    START,
    DedicatedRent,
    SimDecision,
    SpeedError,
    allocate,
    simulate,
)
from subconscious.planner.costs import (
    DEFAULT_PREEMPTIONS_PER_HOUR,
    TEARDOWN_S,
    cost_for,
    micros_per_hour,
    price_micros_per_hour,
)
from subconscious.planner.policy import Release, Rent, decide
from tests.bench.helpers import (
    RATES,
    Script,
    acceptances,
    accepted,
    market,
    offer,
    order,
    pool,
    pooled,
)

FAST = offer("o-4090", "RTX 4090", "0.36")
SLOW = offer("o-3090", "RTX 3090", "0.20", bid="0.10")


def test_machine_renders_after_its_start_up_batch_by_batch() -> None:
    spec = order("a", 40)
    script = Script({0: [Rent(FAST.on_demand, False, "t")], 1200: [Release("m00000", "t")]})
    result = simulate([spec], market(FAST), RATES, script, acceptances=acceptances([spec]))
    speed = RATES.speed(FAST.on_demand, spec.job)
    (done,) = result.orders
    assert done.done == 40 and done.on_time
    assert done.done_at == pytest.approx(300 + 40 / speed.images_per_s)
    (machine,) = result.machines
    assert machine.rented_at == 0 and machine.ready_at == 300
    assert machine.images_rendered == 40 and machine.images_lost == 0
    price = price_micros_per_hour(FAST.on_demand, False)
    assert machine.cost_micros == cost_for("vast", price, 1200 + TEARDOWN_S)
    # the dispatcher saw the machine as not ready before its start-up ended
    state = script.seen[1]
    assert state.machines[0].ready_at > state.now


@pytest.mark.parametrize("factor", [0.5, 0.85, 1.25])
def test_a_machine_renders_at_the_speed_errors_share_of_the_models_speed(factor: float) -> None:
    spec = order("a", 40)
    script = Script({0: [Rent(FAST.on_demand, False, "t")], 3600: [Release("m00000", "t")]})
    error = SpeedError(factor)
    result = simulate(
        [spec], market(FAST), RATES, script, acceptances=acceptances([spec]), speed_error=error
    )
    speed = RATES.speed(FAST.on_demand, spec.job)
    (done,) = result.orders
    assert done.done == 40
    # start-up as listed, rendering at factor × the model's rate
    assert done.done_at == pytest.approx(300 + 40 / (speed.images_per_s * factor))
    assert result.machines[0].speed_factor == factor


def test_each_machine_draws_its_own_speed_within_the_spread_and_the_same_each_run() -> None:
    error = SpeedError(0.9, 0.2)
    draws = [error.of(f"m{i:05d}", "o-4090") for i in range(400)]
    assert all(0.9 * 0.8 <= d < 0.9 * 1.2 for d in draws)
    assert min(draws) < 0.9 * 0.85 and max(draws) > 0.9 * 1.15  # spread over the range
    assert draws == [error.of(f"m{i:05d}", "o-4090") for i in range(400)]
    assert SpeedError(0.9).of("m00001", "o-4090") == 0.9  # no spread: the factor itself


@pytest.mark.parametrize("learn", [True, False])
def test_the_planning_model_learns_a_cards_speed_from_finished_machines(learn: bool) -> None:
    """Each machine's run moves the card's factor by the newest run's weight (0.3 of the log)
    towards what it measured against the model's prediction *now*, as production's
    learn_from_run does: after two machines at half speed, 0.5 ** (1 - 0.7 ** 2)."""
    spec = order("a", 10_000, deadline_s=6 * 3600)
    script = Script({
        0: [Rent(FAST.on_demand, False, "t")],
        1200: [Release("m00000", "t")],
        1260: [Rent(FAST.on_demand, False, "t")],
        2400: [Release("m00001", "t")],
        2460: [Rent(FAST.on_demand, False, "t")],
        4800: [Release("m00002", "t")],
    })  # fmt: skip
    error = SpeedError(0.5, learn=learn)
    result = simulate(
        [spec], market(FAST), RATES, script, acceptances=acceptances([spec]), speed_error=error
    )
    prior = RATES.speed(FAST.on_demand, spec.job).images_per_s
    seen = {(state.now - START).total_seconds(): state for state in script.seen}

    def planned(second: int) -> float:
        return seen[second].rates.speed(FAST.on_demand, spec.job).images_per_s

    assert planned(1140) == prior
    if learn:
        assert planned(1260) == pytest.approx(
            prior * 0.5**0.3, rel=1e-4
        )  # factors are stored as decimals
        assert planned(2460) == pytest.approx(
            prior * 0.5 ** (1 - 0.7**2), rel=1e-4
        )  # factors are stored as decimals
    else:
        assert planned(1260) == planned(2460) == prior
    # what the machines really render at does not follow the planning model
    assert [m.speed_factor for m in result.machines] == [0.5, 0.5, 0.5]
    speed = RATES.speed(FAST.on_demand, spec.job)
    rendering = (4800 - 2460 - 300) * prior * 0.5  # its start-up, then half the prior's speed
    assert rendering - 2 * speed.batch <= result.machines[2].images_rendered <= rendering


def test_a_preempted_machine_teaches_the_planning_model_nothing() -> None:
    """Production learns only from runs that ended without an error; a preemption is one."""
    spot = pooled(FAST, pool("1110", gap_s=600))  # capacity until 1800 s
    spec = order("a", 5000, deadline_s=6 * 3600)
    script = Script({0: [Rent(spot.spot, True, "t")], 1860: [Rent(SLOW.on_demand, False, "t")]})
    result = simulate([spec], market(spot, SLOW), RATES, script, acceptances=acceptances([spec]),
                      speed_error=SpeedError(0.5))  # fmt: skip
    preempted = result.machines[0]
    assert preempted.end_reason == "preempted" and preempted.images_rendered > 0
    after = next(s for s in script.seen if (s.now - START).total_seconds() == 1860)
    assert after.rates.speed(FAST.on_demand, spec.job) == RATES.speed(FAST.on_demand, spec.job)


@pytest.mark.parametrize(("factor", "spread"), [(0.0, 0.0), (-1.0, 0.0), (1.0, 1.0), (1.0, -0.1)])
def test_a_speed_error_that_cannot_render_is_refused(factor: float, spread: float) -> None:
    with pytest.raises(ValueError, match="speed factor"):
        SpeedError(factor, spread)


def test_with_machines_slower_than_the_model_the_policy_still_keeps_its_promises() -> None:
    # the policy plans with the model and keeps a reserve; it sees only the images left
    specs = [order("a", 3000, deadline_s=2 * 3600), order("b", 1500, arrival_s=600)]
    specs = [replace(s, deadline_s=s.arrival_s + 2 * 3600) for s in specs]
    exact = simulate(specs, market(FAST, SLOW), RATES, decide)
    slow = simulate(specs, market(FAST, SLOW), RATES, decide, speed_error=SpeedError(0.8))
    assert len(exact.orders) == len(slow.orders) == 2  # the same quotes: arrival precedes speed
    assert slow.deadline_attainment == exact.deadline_attainment == 1.0
    assert all(m.speed_factor == 0.8 for m in slow.machines)
    assert slow.cost_micros > exact.cost_micros  # slower machines are held longer


def test_preemption_loses_exactly_the_batch_in_flight_and_stops_billing() -> None:
    p = pool("1110", gap_s=600)  # capacity until 1800 s
    spot = pooled(FAST, p)
    spec = order("a", 5000, deadline_s=6 * 3600)
    script = Script(
        {
            0: [Rent(spot.spot, True, "t")],
            1860: [Rent(SLOW.on_demand, False, "t")],
        }
    )
    result = simulate([spec], market(spot, SLOW), RATES, script, acceptances=acceptances([spec]))
    speed = RATES.speed(FAST.on_demand, spec.job)
    preempted, rescue = result.machines
    assert preempted.end_reason == "preempted" and preempted.ended_at == 1800
    batches_done = math.floor((1800 - 300) / speed.batch_s)
    assert preempted.images_rendered == batches_done * speed.batch
    assert preempted.images_lost == speed.batch
    price = price_micros_per_hour(spot.spot, True)
    assert preempted.cost_micros == cost_for("vast", price, 1800)  # no teardown, nothing after
    # the lost images were rendered again by the rescue machine; none counted twice
    (done,) = result.orders
    assert done.done == 5000
    assert rescue.images_rendered == 5000 - preempted.images_rendered
    assert result.preemptions == 1 and result.images_lost == speed.batch


def test_interruptible_rent_without_capacity_and_double_rent_are_refused() -> None:
    spot = pooled(FAST, pool("0", gap_s=600))
    spec = order("a", 10, deadline_s=2 * 3600)
    script = Script(
        {
            0: [Rent(spot.spot, True, "no capacity"), Rent(spot.on_demand, False, "ok")],
            60: [Rent(spot.on_demand, False, "already rented"), Release("m00000", "t")],
        }
    )
    result = simulate([spec], market(spot), RATES, script, acceptances=acceptances([spec]))
    assert result.invalid_decisions == 2
    assert len(result.machines) == 1 and not result.machines[0].interruptible


def test_billing_rounds_up_to_the_provider_increment() -> None:
    per_minute = offer("o-rp", "RTX 4090", "0.72", provider="runpod", startup_s=240)
    spec = order("a", 10)
    script = Script({0: [Rent(per_minute.on_demand, False, "t")], 300: [Release("m00000", "t")]})
    result = simulate([spec], market(per_minute), RATES, script, acceptances=acceptances([spec]))
    # held 300 s + 30 s teardown = 330 s, billed as 6 whole minutes
    assert result.machines[0].cost_micros == math.ceil(720_000 * 360 / 3600)


def test_release_mid_batch_returns_the_images_and_bills_the_teardown() -> None:
    spec = order("a", 2000)
    script = Script({0: [Rent(FAST.on_demand, False, "t")], 600: [Release("m00000", "t")]})
    result = simulate([spec], market(FAST), RATES, script, acceptances=acceptances([spec]))
    (machine,) = result.machines
    (left,) = result.orders
    assert machine.images_lost > 0
    assert left.done == machine.images_rendered
    assert not left.on_time and left.done_at is None
    price = price_micros_per_hour(FAST.on_demand, False)
    assert machine.cost_micros == cost_for("vast", price, 600 + TEARDOWN_S)


def test_costs_are_allocated_by_render_seconds_and_sum_to_the_machines_cost() -> None:
    specs = [order("a", 100, deadline_s=3600 * 3), order("b", 300, arrival_s=0, deadline_s=7200)]
    script = Script(
        {
            0: [Rent(FAST.on_demand, False, "t"), Rent(SLOW.on_demand, False, "t")],
            3600: [Release("m00000", "t"), Release("m00001", "t")],
        }
    )
    given_ = {s.order_id: accepted(s, quoted_micros=1) for s in specs}
    result = simulate(specs, market(FAST, SLOW), RATES, script, acceptances=given_)
    assert all(o.done == o.images for o in result.orders)
    assert sum(o.allocated_micros for o in result.orders) == result.cost_micros
    assert result.orders_over_quote == 2  # quoted 1 micro each


def test_a_machine_that_rendered_nothing_is_charged_to_the_orders_open_at_its_rent() -> None:
    specs = [order("a", 100, deadline_s=7200), order("b", 300, deadline_s=3600)]
    script = Script({0: [Rent(FAST.on_demand, False, "t")], 120: [Release("m00000", "t")]})
    result = simulate(specs, market(FAST), RATES, script, acceptances=acceptances(specs))
    (machine,) = result.machines
    assert machine.images_rendered == 0
    shares = {o.order_id: o.allocated_micros for o in result.orders}
    assert sum(shares.values()) == machine.cost_micros
    assert shares["b"] == pytest.approx(3 * shares["a"], abs=2)


def test_a_dedicated_machine_renders_its_order_only_and_leaves_when_done() -> None:
    specs = [order("a", 20), order("b", 20)]
    script = Script({0: [DedicatedRent(FAST.on_demand, False, "t", "b")]})
    result = simulate(specs, market(FAST), RATES, script, acceptances=acceptances(specs))
    (machine,) = result.machines
    assert set(machine.render_s) == {"b"} and machine.end_reason == "order done"
    by_id = {o.order_id: o for o in result.orders}
    assert by_id["b"].done == 20 and by_id["a"].done == 0


def test_declined_orders_are_not_served() -> None:
    specs = [order("a", 20), order("b", 20)]
    only_a = {"a": accepted(specs[0])}
    script = Script({0: [Rent(FAST.on_demand, False, "t")], 600: [Release("m00000", "t")]})
    result = simulate(specs, market(FAST), RATES, script, acceptances=only_a)
    assert [o.order_id for o in result.orders] == ["a"]
    assert [o.order_id for o in result.declined] == ["b"]


def test_the_real_quote_and_policy_run_end_to_end() -> None:
    specs = [order("a", 200, deadline_s=6 * 3600), order("b", 50, arrival_s=600)]
    specs = [replace(s, deadline_s=s.arrival_s + 6 * 3600) for s in specs]
    result = simulate(specs, market(FAST, SLOW), RATES, decide)
    assert len(result.orders) + len(result.declined) == 2
    assert len(result.quote_latencies_ms) == 2
    assert all(o.done == o.images for o in result.orders)
    assert sum(o.allocated_micros for o in result.orders) == result.cost_micros
    assert not any(m.live for m in result.machines)


@given(
    st.integers(0, 10**9),
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=12),
)
def test_allocate_splits_exactly_and_pro_rata(total: int, weights: list[float]) -> None:
    named = [(f"k{i}", w) for i, w in enumerate(weights)]
    shares = allocate(total, named)
    whole = sum(w for w in weights if w > 0)
    if whole == 0 or total == 0:
        assert shares == {}
        return
    assert sum(shares.values()) == total
    for key, w in named:
        if w > 0:
            assert abs(shares[key] - total * w / whole) <= 1 + total * 1e-12


def test_the_policy_sees_the_market_history_and_our_own_preemptions() -> None:
    """What the dispatch reads from its outlook and its runs, the simulator gives the policy
    from the market and its machines: per card, the share of hourly snapshots over the week
    before the run (then one a tick) that listed it interruptible; and the preemption rate
    our interruptible machines saw."""
    p = pool("1110", gap_s=3600)  # capacity three hours of four
    spot = pooled(FAST, p)
    spec = order("a", 5000, deadline_s=12 * 3600)
    plan: dict[float, list[SimDecision]] = {
        9000: [Rent(spot.spot, True, "t")],
        10860: [Rent(SLOW.on_demand, False, "t")],
    }
    script = Script(plan)  # the 4090 is preempted at 10,800 s, when the pool loses capacity
    simulate([spec], market(spot, SLOW), RATES, script, acceptances=acceptances([spec]))
    first = script.seen[0]
    later = next(st for st in script.seen if st.now >= START + timedelta(seconds=10860))
    # the week before: the pool was up at 3 of every 4 hourly snapshots (the trace wraps)
    assert first.spot_shares["RTX 4090"] == pytest.approx(0.75, abs=0.01)
    assert first.spot_shares["RTX 3090"] == 0  # SLOW has no pool here: never interruptible
    # its capacity gone an hour at a time, at its one bid whenever it had capacity
    assert first.spot_gaps["RTX 4090"] == pytest.approx(3600)
    bid = spot.spot.min_bid_usd_per_hour
    assert bid is not None and first.spot_bids == {"RTX 4090": micros_per_hour(bid)}
    assert first.preemptions_per_hour == DEFAULT_PREEMPTIONS_PER_HOUR
    # after the 4090 was preempted at 1800 s, the rate priced in is above the default
    assert later.preemptions_per_hour > DEFAULT_PREEMPTIONS_PER_HOUR


def test_two_different_pools_under_one_name_are_refused() -> None:
    # a drop is matched to machines by pool name and scheduled once per name: the second
    # trace's outages would never preempt anything
    with pytest.raises(ValueError, match="two different pools named 'p'"):
        market(pooled(FAST, pool("1100")), pooled(SLOW, pool("1010")))
    same = pool("1100")
    assert len(market(pooled(FAST, same), pooled(SLOW, pool("1100"))).pools) == 1
