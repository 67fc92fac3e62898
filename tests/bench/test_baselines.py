"""naive and greedy do what their definitions say."""

from __future__ import annotations

from bench.planner.baselines import Naive, greedy
from bench.planner.sim import simulate
from tests.bench.helpers import RATES, acceptances, market, offer, order, pool, pooled

CHEAP_SLOW = offer("o-v100", "V100 16GB", "0.10", memory=16, bid="0.05")
FAST = offer("o-4090", "RTX 4090", "0.36", bid="0.18")


def test_naive_rents_one_on_demand_machine_per_order_cheapest_that_meets_the_deadline() -> None:
    specs = [order("a", 100), order("b", 100, arrival_s=30), order("c", 3000, deadline_s=1800)]
    spot_everywhere = pool("1" * 10, name="always")
    tiny = market(pooled(CHEAP_SLOW, spot_everywhere), pooled(FAST, spot_everywhere),
                  offer("o-5090", "RTX 5090", "0.50"))  # fmt: skip
    result = simulate(specs, tiny, RATES, Naive(), acceptances=acceptances(specs))
    assert all(not m.interruptible for m in result.machines)
    by_order = {m.dedicated: m for m in result.machines}
    assert set(by_order) == {"a", "b", "c"} and len(result.machines) == 3
    assert by_order["a"].offer.offer_id == "o-v100"  # cheapest for a small order
    # b arrives while a holds the V100 (one machine per offer): next cheapest
    assert by_order["b"].offer.offer_id == "o-4090"
    # c cannot be done in 30 min by anything left: the fastest remaining offer
    assert by_order["c"].offer.offer_id == "o-5090"
    assert all(m.end_reason == "order done" for m in result.machines)


def test_naive_on_a_deadline_picks_a_faster_card_than_the_cheapest() -> None:
    spec = order("a", 3300, deadline_s=3600)  # V100: 300 + 3300/0.95 s > 1 h
    result = simulate([spec], market(CHEAP_SLOW, FAST), RATES, Naive(),
                      acceptances=acceptances([spec]))  # fmt: skip
    assert [m.offer.offer_id for m in result.machines] == ["o-4090"]
    assert result.deadline_attainment == 1.0


def test_greedy_takes_interruptible_capacity_when_its_pool_has_some() -> None:
    spec = order("a", 500, deadline_s=6 * 3600)
    tiny = market(pooled(CHEAP_SLOW, pool("1" * 20, gap_s=3600)))
    state_result = simulate([spec], tiny, RATES, greedy, acceptances=acceptances([spec]))
    (machine,) = state_result.machines
    assert machine.interruptible and machine.end_reason == "released"


def test_greedy_rents_on_demand_when_no_pool_has_capacity_and_adds_no_safety_net() -> None:
    spec = order("a", 500, deadline_s=6 * 3600)
    tiny = market(pooled(CHEAP_SLOW, pool("0" * 20, gap_s=3600)), FAST)
    result = simulate([spec], tiny, RATES, greedy, acceptances=acceptances([spec]))
    assert [m.interruptible for m in result.machines] == [False]
    assert result.machines[0].offer.offer_id == "o-v100"  # cheapest per image


def test_greedy_does_not_add_machines_while_the_fleet_suffices() -> None:
    spec = order("a", 100, deadline_s=6 * 3600)
    tiny = market(CHEAP_SLOW, FAST)
    result = simulate([spec], tiny, RATES, greedy, acceptances=acceptances([spec]))
    assert len(result.machines) == 1


def test_greedy_releases_everything_when_no_order_is_open() -> None:
    state = simulate([order("a", 10)], market(FAST), RATES, greedy,
                     acceptances=acceptances([order("a", 10)]))  # fmt: skip
    assert not any(m.live for m in state.machines)
    assert all(m.end_reason == "released" for m in state.machines)
