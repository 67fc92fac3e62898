"""The dispatch policy: safety net, progress, batching, caps (pure; no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from subconscious.models import JobSpec, Offer
from subconscious.planner import policy as policy_module
from subconscious.planner.costs import Rates
from subconscious.planner.policy import (
    DEFER_S,
    DISPATCH_LATENCY_S,
    TICK_S,
    Limits,
    LiveMachine,
    OpenOrder,
    PlanState,
    Release,
    Rent,
    Wait,
    _closing,
    _net,
    _ranked,
    decide,
    edf,
    feasible,
    keepable,
)
from subconscious.throughput_model import ThroughputModel
from tests import builders

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
RATES = Rates(ThroughputModel())


def job(images: int = 100, **overrides: Any) -> JobSpec:
    return JobSpec.model_validate({"prompts": [{"text": "a cat", "count": images}], **overrides})


def offer(
    offer_id: str,
    gpu: str = "RTX 3090",
    price: str = "0.20",
    bid: str | None = None,
    memory: int = 24,
    startup_s: int = 300,
    provider: str = "vast",
) -> Offer:
    return builders.offer(
        offer_id, gpu, price, bid=bid, memory=memory, startup_s=startup_s, provider=provider
    )


CHEAP = offer("3090", bid="0.08")
FAST = offer("4090", "RTX 4090", "0.40", provider="tensordock", startup_s=420)
ON_DEMAND_ONLY = offer("3090-od")


def order(images: int, within: timedelta, order_id: str = "o1", **job_fields: Any) -> OpenOrder:
    # images left may exceed one order's maximum: the backlog of several orders of one job
    return OpenOrder(order_id, job(min(images, 10_000), **job_fields), images, NOW + within)


def state(
    orders: list[OpenOrder],
    offers: list[Offer],
    machines: list[LiveMachine] | None = None,
    **kw: Any,
) -> PlanState:
    return PlanState(NOW, orders, machines or [], offers, RATES, **kw)


def rents(decisions: list[Any]) -> list[Rent]:
    return [d for d in decisions if isinstance(d, Rent)]


def test_no_work_releases_every_machine_or_waits() -> None:
    machine = LiveMachine("m1", CHEAP, False, NOW)
    assert decide(state([], [CHEAP], [machine])) == [Release("m1", "no work left")]
    assert decide(state([], [CHEAP])) == [Wait("no work waiting")]
    done = OpenOrder("o1", job(), 0, NOW + timedelta(hours=1))
    assert decide(state([done], [CHEAP])) == [Wait("no work waiting")]


def test_small_work_with_slack_waits_to_share_a_start_up() -> None:
    [decision] = decide(state([order(10, timedelta(days=1))], [CHEAP]))
    assert isinstance(decision, Wait)


def test_enough_work_rents_interruptible_while_slack_allows() -> None:
    [decision] = rents(decide(state([order(5000, timedelta(days=1))], [ON_DEMAND_ONLY, CHEAP])))
    assert decision.offer == CHEAP and decision.interruptible


def first_rent(
    work: list[OpenOrder], offers: list[Offer], **kw: Any
) -> tuple[datetime, list[Rent]]:
    """Ticks on, a minute at a time, until the policy rents: when, and what."""
    at = NOW
    while at < min(o.deadline for o in work):
        decided = rents(decide(PlanState(at, work, [], offers, RATES, **kw)))
        if decided:
            return at, decided
        at += timedelta(minutes=1)
    raise AssertionError("never rented")


def test_without_interruptible_offers_work_waits_while_it_can_then_rents_on_demand() -> None:
    """Uniform Progress (Can't Be Late): on-demand capacity only once the promises need it.
    Work that could wait rented on-demand machines as soon as it paid a start-up back, or
    as soon as its deadline was three hours away, in markets whose interruptible capacity
    came back within the hour at a seventh of the price."""
    seen = {"RTX 3090": 0.6}  # the market has listed 3090s interruptible before
    [waits] = decide(state([order(5000, timedelta(days=1))], [ON_DEMAND_ONLY], spot_shares=seen))
    assert isinstance(waits, Wait)
    work = [order(5000, timedelta(hours=2))]
    [still] = decide(state(work, [ON_DEMAND_ONLY], spot_shares=seen))
    assert isinstance(still, Wait) and "the net keeps the promises" in still.reason
    # the safety net rents it once waiting longer would need a second machine: one, on-demand
    at, [decision] = first_rent(work, [ON_DEMAND_ONLY, offer("3090-b")], spot_shares=seen)
    assert decision.reason.startswith("safety net") and not decision.interruptible
    assert at > NOW + timedelta(minutes=10)  # it waited
    ready = at + timedelta(seconds=DISPATCH_LATENCY_S + 300)
    assert feasible(work, [LiveMachine("m", ON_DEMAND_ONLY, False, ready)], RATES, at)
    # a market that never listed the card interruptible has nothing to wait for: the work
    # starts on-demand as the batching rule says (due within three hours)
    [now] = rents(decide(state(work, [ON_DEMAND_ONLY])))
    assert now.reason.startswith("batch") and not now.interruptible
    # the same work with interruptible capacity on offer rents it at once
    [spot] = rents(decide(state([order(5000, timedelta(days=1))], [ON_DEMAND_ONLY, CHEAP])))
    assert spot.offer == CHEAP and spot.interruptible


def test_the_safety_net_waits_only_while_waiting_costs_no_extra_machine() -> None:
    """Counting on every machine the caps allow, the net waited until the backlog needed five
    on-demand machines at once, each paying a start-up for minutes of rendering one machine
    rented earlier would have done. It fires while one machine still makes it."""
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    work = [order(int(per_s * 3600), timedelta(hours=6))]
    offers = [offer(f"3090-{i}") for i in range(8)]
    at, decided = first_rent(work, offers, spot_shares={"RTX 3090": 0.5})
    assert len(decided) == 1 and decided[0].reason.startswith("safety net")
    # the eight-machine net would still have waited then
    assert keepable(work, [], offers, RATES, at, Limits(), delay_s=TICK_S)


def test_a_new_tight_order_goes_to_interruptible_capacity_on_offer_not_to_the_net() -> None:
    """The net's stricter count (no more machines than renting now would need) is for work
    that waits for interruptible capacity. Made the first rule, it rented four on-demand
    machines for a new order due in an hour while 31 interruptible offers were listed (tune
    market 17, tight: 12 on-demand machines where there had been none)."""
    cards = [offer(f"3090-{i}", bid="0.08") for i in range(8)]
    per_s = RATES.speed(cards[0], job()).images_per_s
    for minutes in range(60, 240, 5):
        work = [order(int(per_s * 3 * 3600), timedelta(minutes=minutes))]
        st = state(work, cards, spot_shares={"RTX 3090": 0.9})
        if keepable(work, [], cards, RATES, NOW, Limits(), delay_s=TICK_S) and not keepable(
            work, [], cards, RATES, NOW, _net(st, []), delay_s=TICK_S
        ):
            break
    else:
        raise AssertionError("no window where only the stricter count fails")
    rented = rents(decide(st))
    assert rented and all(r.interruptible for r in rented)
    assert not any(r.reason.startswith("safety net") for r in rented)


def test_a_tight_promise_starts_at_once_even_for_little_work() -> None:
    [decision] = rents(decide(state([order(10, timedelta(minutes=20))], [CHEAP])))
    assert decision.offer == CHEAP


def test_safety_net_rents_on_demand_when_interruptible_capacity_cannot_be_relied_on() -> None:
    # The only machine is interruptible. One on-demand 3090 rented now would still make the
    # deadline (45 min, ready after 390 s), rented a tick later it would not (ready after
    # 450 s): the net rents on-demand now, whatever interruptible capacity is on offer.
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    spot = LiveMachine("m1", CHEAP, True, NOW)
    work = order(int(per_s * 1890), timedelta(minutes=45))
    decisions = decide(state([work], [CHEAP, ON_DEMAND_ONLY], [spot]))
    assert rents(decisions)
    assert all(not r.interruptible for r in rents(decisions))
    assert all(r.reason.startswith("safety net") for r in rents(decisions))


def test_on_track_fleet_waits() -> None:
    machine = LiveMachine("m1", ON_DEMAND_ONLY, False, NOW)
    [decision] = decide(state([order(100, timedelta(hours=3))], [CHEAP], [machine]))
    assert isinstance(decision, Wait) and "on track" in decision.reason


def test_a_fleet_falling_behind_gets_more_capacity() -> None:
    slow = LiveMachine("m1", ON_DEMAND_ONLY, False, NOW)
    work = order(14_000, timedelta(hours=4))
    decisions = rents(decide(state([work], [CHEAP, FAST], [slow])))
    assert decisions
    planned = [
        slow,
        *(LiveMachine(r.offer.offer_id, r.offer, r.interruptible, NOW) for r in decisions),
    ]
    assert feasible(edf([work]), planned, RATES, NOW)


def test_caps_bound_machines_and_hourly_spend() -> None:
    many = [offer(f"o{i}") for i in range(10)]
    impossible = order(100_000, timedelta(minutes=30))
    decisions = rents(decide(state([impossible], many, limits=Limits(max_machines=3))))
    assert len(decisions) == 3
    spend = rents(
        decide(state([impossible], many, limits=Limits(max_spend_micros_per_hour=500_000)))
    )
    assert len(spend) == 2  # 0.20 $/h each: a third would pass 0.50 $/h


def test_an_offer_already_rented_is_not_rented_again() -> None:
    machine = LiveMachine("m1", ON_DEMAND_ONLY, False, NOW)
    decisions = rents(
        decide(state([order(100_000, timedelta(hours=1))], [ON_DEMAND_ONLY], [machine]))
    )
    assert decisions == []


def test_offers_that_cannot_run_every_open_job_are_skipped() -> None:
    small = offer("small", "RTX 3060", "0.05", memory=8)
    sdxl = order(5000, timedelta(hours=2), "o2", model_family="sdxl", width=1024, height=1024)
    decisions = rents(decide(state([order(5000, timedelta(hours=2)), sdxl], [small, FAST])))
    assert [r.offer for r in decisions] == [FAST]


def test_no_offer_is_a_wait_with_a_reason() -> None:
    [decision] = decide(state([order(100, timedelta(minutes=20))], []))
    assert isinstance(decision, Wait) and "no offer" in decision.reason


def test_edf_orders_by_deadline_then_id_and_drops_finished() -> None:
    a = order(1, timedelta(hours=2), "b")
    b = order(1, timedelta(hours=1), "z")
    c = order(1, timedelta(hours=2), "a")
    done = OpenOrder("d", job(), 0, NOW)
    assert edf([a, b, c, done]) == [b, c, a]


def test_feasible_counts_start_up_and_deadlines_in_order() -> None:
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    hour = int(per_s * 3600)
    ready_now = LiveMachine("m", ON_DEMAND_ONLY, False, NOW)
    booting = LiveMachine("m", ON_DEMAND_ONLY, False, NOW + timedelta(hours=1))
    assert feasible([order(hour // 2, timedelta(hours=1))], [ready_now], RATES, NOW)
    assert not feasible([order(hour // 2, timedelta(hours=1))], [booting], RATES, NOW)
    assert not feasible([order(hour, timedelta(hours=1))], [ready_now], RATES, NOW)
    # the second order is due later but both must fit before it
    both = edf(
        [order(hour // 2, timedelta(hours=1)), order(hour * 3 // 2, timedelta(hours=2), "o2")]
    )
    assert not feasible(both, [ready_now], RATES, NOW)
    assert not feasible(both, [], RATES, NOW)
    assert feasible([], [], RATES, NOW)


def test_keepable_counts_only_on_demand_capacity() -> None:
    per_s = RATES.speed(CHEAP, job()).images_per_s
    work = [order(int(per_s * 1800), timedelta(hours=1))]
    spot = LiveMachine("m", CHEAP, True, NOW)
    steady = LiveMachine("m", CHEAP, False, NOW)
    assert keepable(work, [steady], [], RATES, NOW, Limits())
    assert not keepable(work, [spot], [], RATES, NOW, Limits())
    assert keepable(work, [spot], [ON_DEMAND_ONLY], RATES, NOW, Limits())


@pytest.mark.parametrize("delay_h", [0, 2])
def test_keepable_after_a_delay(delay_h: int) -> None:
    work = [order(3000, timedelta(hours=3))]
    ok = keepable(work, [], [ON_DEMAND_ONLY], RATES, NOW, Limits(), delay_s=delay_h * 3600)
    assert ok is (delay_h == 0)


def test_idle_machines_are_released_and_no_longer_count() -> None:
    idle = LiveMachine("m1", ON_DEMAND_ONLY, False, NOW, idle=True)
    busy = LiveMachine("m2", CHEAP, False, NOW)
    decisions = decide(state([order(100, timedelta(hours=3))], [FAST], [idle, busy]))
    assert decisions[0] == Release("m1", "idle: nothing left it could start")
    assert isinstance(decisions[1], Wait) and "1 machine(s)" in decisions[1].reason
    # with only the idle machine, the order needs a new one
    alone = decide(state([order(3000, timedelta(minutes=50))], [FAST, CHEAP], [idle]))
    assert alone[0] == Release("m1", "idle: nothing left it could start")
    assert rents(alone)


def test_small_work_due_within_hours_starts_rather_than_wait_for_company() -> None:
    # waiting would still be safe for a while, but a hedge later costs more than the wait saves
    [decision] = rents(decide(state([order(10, timedelta(hours=2))], [CHEAP])))
    assert decision.offer == CHEAP
    [waits] = decide(state([order(10, timedelta(hours=4))], [CHEAP]))
    assert isinstance(waits, Wait)


def test_offers_are_ranked_by_what_the_whole_backlog_would_cost() -> None:
    # per SD 1.5 image the 3090 is cheaper; per SDXL image the 4090 is: the backlog decides
    sd15_cheap = offer("3090", "RTX 3090", "0.20", bid="0.10")
    sdxl_cheap = offer("4090", "RTX 4090", "0.38", bid="0.19")
    urgent_sd15 = order(100, timedelta(minutes=30), "o1")
    big_sdxl = order(2000, timedelta(hours=8), "o2", model_family="sdxl", width=1024, height=1024)
    first = rents(decide(state([urgent_sd15, big_sdxl], [sd15_cheap, sdxl_cheap])))[0]
    assert first.offer == sdxl_cheap
    alone = rents(decide(state([urgent_sd15], [sd15_cheap, sdxl_cheap])))[0]
    assert alone.offer == sd15_cheap


def test_interruptible_capacity_that_would_need_a_hedge_before_it_renders_is_not_rented() -> None:
    # 45 minutes, work for ~1700 s of one 3090, two machines at most: one on-demand 3090 rented
    # within a tick makes it, one rented after an interruptible machine's start-up (7.5 min)
    # would not. Renting the interruptible host would have the safety net hedge at once, so
    # the work goes to an on-demand machine instead.
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    work = [order(int(per_s * 1700), timedelta(minutes=45))]
    limits = Limits(max_machines=2)
    assert keepable(work, [], [ON_DEMAND_ONLY], RATES, NOW, limits, delay_s=60)
    assert not keepable(work, [], [ON_DEMAND_ONLY], RATES, NOW, limits, delay_s=450)
    decisions = rents(decide(state(work, [CHEAP, ON_DEMAND_ONLY], limits=limits)))
    assert decisions and all(not r.interruptible for r in decisions)
    assert all(r.reason.startswith("batch") for r in decisions)  # not the safety net
    # with a whole day (and work enough to pay a start-up back) it goes to the interruptible one
    relaxed = [order(int(per_s * 4000), timedelta(hours=24))]
    later = rents(decide(state(relaxed, [CHEAP, ON_DEMAND_ONLY], limits=limits)))
    assert [r.interruptible for r in later] == [True]


DEAR = offer("h100", "H100 SXM", "2.50", memory=80)


def test_a_dear_machine_the_deadlines_no_longer_need_is_released() -> None:
    cheap = LiveMachine("m-cheap", CHEAP, True, NOW)
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    decisions = decide(state([order(200, timedelta(hours=6))], [ON_DEMAND_ONLY], [cheap, dear]))
    assert decisions == [Release("m-dear", "trim: H100 SXM not needed on time")]


def test_no_trim_when_the_rest_would_be_late_or_the_machine_is_still_starting() -> None:
    cheap = LiveMachine("m-cheap", CHEAP, False, NOW)
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    per_s = RATES.speed(CHEAP, job()).images_per_s
    # the 3090 alone would need 50 of the 60 minutes: over the reserve, so both keep going
    tight = [order(int(per_s * 3000), timedelta(hours=1))]
    assert not any(isinstance(d, Release) for d in decide(state(tight, [], [cheap, dear])))
    booting = LiveMachine("m-dear", DEAR, False, NOW + timedelta(minutes=3))
    easy = [order(200, timedelta(hours=6))]
    assert not any(isinstance(d, Release) for d in decide(state(easy, [], [cheap, booting])))


def test_no_trim_between_machines_of_about_the_same_cost_per_image() -> None:
    twin = offer("3090-b", bid="0.085")
    machines = [LiveMachine("a", CHEAP, True, NOW), LiveMachine("b", twin, True, NOW)]
    decisions = decide(state([order(200, timedelta(hours=6))], [ON_DEMAND_ONLY], machines))
    assert not any(isinstance(d, Release) for d in decisions)


def test_while_the_dearest_machine_still_starts_no_cheaper_one_is_trimmed_in_its_place() -> None:
    """Only a rendering machine can be released, and the dearest of those was: a 4090 that had
    rendered for minutes went while an on-demand H100 (dearer per image) still booted, and
    the next tick rented a 4090 again as a card much cheaper than the fleet's dearest (the
    simulator did, a start-up paid twice)."""
    cheap = LiveMachine("m-cheap", CHEAP, True, NOW)
    mid = LiveMachine("m-mid", FAST, False, NOW)
    easy = [order(2000, timedelta(hours=6))]
    booting = LiveMachine("m-dear", DEAR, False, NOW + timedelta(minutes=3))
    assert not any(
        isinstance(d, Release) for d in decide(state(easy, [ON_DEMAND_ONLY], [cheap, mid, booting]))
    )
    # once it renders, the dearest goes
    rendering = LiveMachine("m-dear", DEAR, False, NOW)
    assert decide(state(easy, [ON_DEMAND_ONLY], [cheap, mid, rendering])) == [
        Release("m-dear", "trim: H100 SXM not needed on time")
    ]
    # and without it, the 4090 is the dearest: it goes as before
    assert decide(state(easy, [ON_DEMAND_ONLY], [cheap, mid])) == [
        Release("m-mid", "trim: RTX 4090 not needed on time")
    ]


DEAR_SPOT = offer("h100", "H100 SXM", "2.50", bid="2.00", memory=80)


def test_a_much_cheaper_card_on_offer_again_joins_a_dear_fleet() -> None:
    dear = LiveMachine("m-dear", DEAR_SPOT, True, NOW)
    big = [order(20_000, timedelta(days=2))]
    [decision] = decide(state(big, [CHEAP, ON_DEMAND_ONLY], [dear]))
    assert isinstance(decision, Rent) and decision.offer == CHEAP and decision.interruptible
    assert decision.reason.startswith("cheaper: interruptible RTX 3090")
    # then, once it renders, the dear machine is released
    joined = LiveMachine("m-cheap", CHEAP, True, NOW)
    assert decide(state(big, [ON_DEMAND_ONLY], [dear, joined])) == [
        Release("m-dear", "trim: H100 SXM not needed on time")
    ]


def test_an_on_demand_machine_no_promise_needs_goes_when_interruptible_capacity_is_back() -> None:
    """The safety net rented an on-demand 5090 while the pools were down; it went on to render
    the whole backlog, work due in a day included, at 2.6 times the optimum's cost."""
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    big = [order(20_000, timedelta(days=2))]
    assert decide(state(big, [CHEAP], [dear])) == [
        Release("m-dear", "park: H100 SXM on-demand, interruptible on offer")
    ]
    # the tick after, the interruptible card is rented for the backlog
    [rent] = rents(decide(state(big, [CHEAP, ON_DEMAND_ONLY])))
    assert rent.offer == CHEAP and rent.interruptible
    # kept: no interruptible capacity on offer, or a promise that needs it within DEFER_S
    assert not any(isinstance(d, Release) for d in decide(state(big, [ON_DEMAND_ONLY], [dear])))
    per_s = RATES.speed(DEAR, job()).images_per_s
    urgent = [order(int(per_s * 1800), timedelta(hours=1))]
    assert not any(isinstance(d, Release) for d in decide(state(urgent, [CHEAP], [dear])))
    # nor for an interruptible card that would cost more than the machine it has
    dear_card = offer("a100", "A100 80GB", "3.00", bid="2.90", memory=80)
    kept = decide(state([order(300, timedelta(days=2))], [dear_card], [dear]))
    assert not any(isinstance(d, Release) for d in kept)


def test_an_on_demand_machine_is_not_parked_if_the_net_would_rent_it_back_before_the_end() -> None:
    """Parking let the promises wait ``DEFER_S``, but not until the interruptible machine had
    rendered the backlog: the net then rented an on-demand machine again near the deadline
    (tune tight m3: the same cards parked and rented back within the hour, start-ups paid three
    times). An hour of 3090 work due in two hours: the H100 keeps rendering, and the cheaper
    card joins it instead; with half the work, it is parked as before."""
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    per_s = RATES.speed(CHEAP, job()).images_per_s
    hour = [order(int(per_s * 3600), timedelta(hours=2))]
    assert keepable(hour, [], [CHEAP], RATES, NOW, Limits(), delay_s=DEFER_S)
    [decision] = decide(state(hour, [CHEAP], [dear]))
    assert isinstance(decision, Rent) and decision.reason.startswith("cheaper: interruptible")
    half = [order(int(per_s * 1800), timedelta(hours=2))]
    assert decide(state(half, [CHEAP], [dear])) == [
        Release("m-dear", "park: H100 SXM on-demand, interruptible on offer")
    ]


def test_no_cheaper_card_for_a_short_backlog_or_while_a_machine_starts() -> None:
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    # a few minutes of work: the new card's start-up would not pay back
    assert not rents(decide(state([order(300, timedelta(days=2))], [CHEAP], [dear])))
    starting = LiveMachine("m-dear", DEAR, False, NOW + timedelta(minutes=2))
    big = [order(20_000, timedelta(days=2))]
    assert not rents(decide(state(big, [CHEAP], [starting])))
    # a card only a fifth cheaper per image than the fleet's is no reason to rent
    same = offer("h100-b", "H100 SXM", "2.00", memory=80)
    assert not rents(decide(state(big, [same], [dear])))


def test_a_machine_asked_to_stop_is_no_capacity_but_still_counts_against_the_caps() -> None:
    per_s = RATES.speed(CHEAP, job()).images_per_s
    work = [order(int(per_s * 1800), timedelta(hours=2))]
    leaving = LiveMachine("m-leaving", ON_DEMAND_ONLY, False, NOW, leaving=True)
    staying = LiveMachine("m-leaving", ON_DEMAND_ONLY, False, NOW)
    assert keepable(work, [staying], [], RATES, NOW, Limits())
    assert not keepable(work, [leaving], [], RATES, NOW, Limits())
    # the order needs a machine of its own; the leaving one still holds the only slot
    assert rents(decide(state(work, [CHEAP], [leaving])))
    capped = decide(state(work, [CHEAP], [leaving], limits=Limits(max_machines=1)))
    assert not rents(capped)


def test_a_dear_machine_goes_while_its_replacement_starts_only_if_on_demand_could_cover() -> None:
    dear = LiveMachine("m-dear", DEAR, False, NOW)
    booting = LiveMachine("m-cheap", CHEAP, True, NOW + timedelta(minutes=5))
    easy = [order(200, timedelta(hours=6))]
    # on-demand 3090s on offer could still keep the promise if the replacement never renders
    assert decide(state(easy, [ON_DEMAND_ONLY], [dear, booting])) == [
        Release("m-dear", "trim: H100 SXM not needed on time")
    ]
    # nothing on offer: the dear machine is the promise's only on-demand capacity
    assert not any(isinstance(d, Release) for d in decide(state(easy, [], [dear, booting])))


def test_renting_for_work_one_machine_cannot_finish_rents_enough_at_once() -> None:
    """Each machine rented counted twice towards the deadline (two names for one list), so a
    fleet came one machine a tick, half the size it had to be."""
    h100s = [offer(f"h{i}", "H100 SXM", "2.00", memory=80) for i in range(4)]
    work = [order(22_750, timedelta(hours=1, seconds=1))]
    at, rented = first_rent(work, h100s)
    assert len(rented) >= 2
    fleet = [
        LiveMachine(f"m{i}", r.offer, False, at + timedelta(seconds=390))
        for i, r in enumerate(rented)
    ]
    assert feasible(work, fleet, RATES, at)
    assert not feasible(work, fleet[:-1], RATES, at)


def test_a_small_backlog_goes_to_the_machine_cheapest_to_start_and_render_it() -> None:
    """Rentals were ranked by rendering cost alone, interruptible first: 65 images due soon
    went to an interruptible 4090 whose start-up alone cost more than a V100 rendering them
    on-demand, and the order ended over its quote (a market with short available runs)."""
    v100 = offer("v100", "V100 16GB", "0.0956", memory=16)
    fast = offer("4090", "RTX 4090", "0.40", bid="0.12")
    small = [order(65, timedelta(minutes=40))]
    [decision] = rents(decide(state(small, [fast, v100])))
    assert decision.offer == v100 and not decision.interruptible
    # with hours of rendering the 4090's bid is the cheaper rental again
    big = [order(20_000, timedelta(days=1))]
    [decision] = rents(decide(state(big, [fast, v100])))
    assert decision.offer == fast and decision.interruptible


def test_an_interruptible_bid_is_not_preferred_for_being_interruptible() -> None:
    """Where bids are 90 % of on-demand, the same card on-demand elsewhere can be cheaper."""
    cheap_od = offer("3090-od", price="0.10")
    dear_bid = offer("3090-bid", price="0.20", bid="0.18")
    [decision] = rents(decide(state([order(5000, timedelta(hours=2))], [dear_bid, cheap_od])))
    assert decision.offer == cheap_od and not decision.interruptible


def test_the_net_counts_the_slots_interruptible_machines_would_free_when_they_vanish() -> None:
    """Two interruptible 3090s are on track. If both vanish, two on-demand 3090s rented a
    tick later still make it, in the very slots they leave: no hedge. Counting their slots as
    taken left one on-demand machine for the net, which then hedged at once."""
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    work = [order(int(per_s * 8000), timedelta(hours=2))]
    spot = [
        LiveMachine("s1", CHEAP, True, NOW),
        LiveMachine("s2", offer("3090-b", bid="0.08"), True, NOW),
    ]
    offers = [ON_DEMAND_ONLY, offer("3090-od2")]
    limits = Limits(max_machines=3)
    assert keepable(work, spot, offers, RATES, NOW, limits, delay_s=60)
    assert not keepable(work, spot, offers[:1], RATES, NOW, limits, delay_s=60)
    [decision] = decide(state(work, offers, spot, limits=limits))
    assert isinstance(decision, Wait) and "on track" in decision.reason
    # an on-demand machine holds its slot until it is gone (here: leaving, so no capacity)
    leaving = LiveMachine("d1", offer("a4000", "RTX A4000", "0.15"), False, NOW, leaving=True)
    steady = [leaving, *spot]
    assert not keepable(work, steady, offers, RATES, NOW, Limits(max_machines=2), delay_s=60)


def test_a_fleet_a_little_short_gets_the_card_cheapest_per_hour_that_closes_the_gap() -> None:
    """Ranked by what each card would cost to render the whole backlog alone, a fleet a few
    percent short got a fast card dear per hour (tune tight m4: a 4090 at eight times the
    price of the spot V100 beside it, released by the trim ten minutes after it booted). What
    the card adds is a share of the work and a start-up: a card cheaper per hour that closes
    the gap alone costs the fleet less."""
    v100 = LiveMachine("m1", offer("v100", "V100 16GB", "0.10", bid="0.03", memory=16), True, NOW)
    fast = offer("4090", "RTX 4090", "0.10")
    slow = offer("a4000", "RTX A4000", "0.05", memory=16)
    short = state([order(7_000, timedelta(hours=2))], [fast, slow], [v100])
    assert _ranked(short, [job()], interruptible=True)[0][0] == fast  # cheaper per image
    [decision] = rents(decide(short))
    assert decision.offer == slow
    # far short, no single cheaper card closes the gap: the ranking decides
    far = state([order(12_000, timedelta(hours=2))], [fast, slow], [v100])
    assert [r.offer for r in rents(decide(far))] == [fast]


def test_a_closing_machine_is_cheaper_per_hour_than_the_pick_and_cheaper_for_the_fleet() -> None:
    """Where the ranking's pick closes the gap too, a card cheaper per hour replaces it only
    if the whole fleet costs less with it (a slow card held long enough costs more); and a card
    dearer per hour than the pick never does, whatever the fleet's cost (one dear machine for
    what several cheap ones would do: the net's on-demand B200s)."""
    v100 = LiveMachine("m1", offer("v100", "V100 16GB", "0.10", bid="0.03", memory=16), True, NOW)
    fast = offer("4090", "RTX 4090", "0.10")
    work = [order(7_000, timedelta(hours=2))]
    now = state(work, [], [v100])

    def closing(ranked: Offer, other: Offer) -> Offer | None:
        found = _closing(now, work, [v100], [v100], [(other, False)], (ranked, False), 10**9)
        return found[0] if found else None

    cheap = offer("a4000", "RTX A4000", "0.05", memory=16)  # the fleet costs less with it
    dearer_for_the_fleet = offer("a4000", "RTX A4000", "0.06", memory=16)
    assert closing(fast, cheap) == cheap
    assert closing(fast, dearer_for_the_fleet) is None
    # the 4090 costs the fleet less than that A4000, but is dearer per hour than it
    assert closing(dearer_for_the_fleet, fast) is None


def test_work_waits_for_a_cheaper_cards_interruptible_capacity_the_history_says_comes_back() -> (
    None
):
    """Interruptible capacity listed only on a dear card: the batch rented it (or an on-demand
    card) hours before the cheap card's capacity came back at a third of the price (tune
    steady m4). With the history's typical bid and gap for the cheap card, the work waits
    where that is expected to cost less and one such machine, back after the typical gap,
    still keeps the promise; otherwise it rents what is listed, as before."""
    dear_spot = offer("4090", "RTX 4090", "0.40", bid="0.25", provider="tensordock")
    offers = [ON_DEMAND_ONLY, dear_spot]
    work = [order(5000, timedelta(days=1))]
    shares = {"RTX 3090": 0.8, "RTX 4090": 0.5}

    def decided(bid: int, gap_s: float, work: list[OpenOrder] = work) -> list[Any]:
        return decide(
            state(
                work,
                offers,
                spot_shares=shares,
                spot_bids={"RTX 3090": bid},
                spot_gaps={"RTX 3090": gap_s},
            )
        )

    [waits] = decided(40_000, 3600)
    assert isinstance(waits, Wait) and waits.for_interruptible
    assert "waiting for RTX 3090 interruptible capacity" in waits.reason
    # what is listed, as before: no bids in the history, ...
    [rent] = rents(decide(state(work, offers, spot_shares=shares)))
    assert rent.offer == dear_spot and rent.interruptible
    # ... the cheap card's typical bid no cheaper than renting now, ...
    assert rents(decided(200_000, 3600)) == [rent]
    # ... or its capacity typically gone longer than the promise can wait
    assert rents(decided(40_000, 30 * 3600)) == [rent]
    # a card whose capacity is listed now is rented, not waited for, even above its typical bid
    cheap_listed = offer("3090-spot", bid="0.12")
    [listed] = rents(
        decide(
            state(
                work,
                [*offers, cheap_listed],
                spot_shares=shares,
                spot_bids={"RTX 3090": 40_000},
                spot_gaps={"RTX 3090": 3600.0},
            )
        )
    )
    assert listed.offer == cheap_listed and listed.interruptible
    # a card with bids but no ended spell to time (gone only now, or never) is not waited for
    assert rents(
        decide(state(work, offers, spot_shares=shares, spot_bids={"RTX 3090": 40_000}))
    ) == [rent]
    # a card the history never saw take bids is not waited for, whatever its bid
    assert rents(
        decide(
            state(
                work,
                offers,
                spot_shares={"RTX 3090": 0.0},
                spot_bids={"RTX 3090": 40_000},
                spot_gaps={"RTX 3090": 3600.0},
            )
        )
    ) == [rent]


def test_no_wait_for_a_fast_card_that_would_leave_the_net_short() -> None:
    """One awaited 4090, back after its typical hour, would still keep the promise, but the
    net (as many on-demand machines as renting now needs: one 3090, the cheapest per image)
    could not wait that long: waiting would make it rent on-demand machines meanwhile, while
    interruptible 3090s are listed now. So the batch rents now, what the ranking says."""
    fast_od = offer("4090-od", "RTX 4090", "0.40", provider="tensordock", startup_s=420)
    spot_3090 = offer("3090-spot", bid="0.15")
    per_s = RATES.speed(ON_DEMAND_ONLY, job()).images_per_s
    history: dict[str, Any] = {
        "spot_shares": {"RTX 4090": 0.8, "RTX 3090": 0.9},
        "spot_bids": {"RTX 4090": 50_000},
        "spot_gaps": {"RTX 4090": 3600.0},
    }
    offers = [ON_DEMAND_ONLY, fast_od, spot_3090]
    tight = [order(int(per_s * 4.1 * 3600), timedelta(hours=5))]
    [rented] = decide(state(tight, offers, **history))
    assert isinstance(rented, Rent) and rented.reason.startswith("batch")
    # with slack the net can wait an hour: the work waits for the 4090's capacity
    slack = [order(int(per_s * 4.1 * 3600), timedelta(hours=12))]
    [waits] = decide(state(slack, offers, **history))
    assert isinstance(waits, Wait) and "waiting for RTX 4090" in waits.reason


def test_closing_checks_each_kind_of_machine_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand offers are a few dozen kinds of machine (speed, start-up). Checked once per
    offer, each check linear in the orders, a tick with 10,000 open orders took 4 s. Offers
    of one kind differ only in price, which feasibility does not depend on."""
    v100 = LiveMachine("m1", offer("v100", "V100 16GB", "0.10", bid="0.03", memory=16), True, NOW)
    fast = offer("4090", "RTX 4090", "0.10")
    work = [order(7_000, timedelta(hours=2))]
    # 40 A4000s in two kinds (start-ups), prices apart; the cheapest one closes the gap
    cards = [
        offer(f"a4000-{i}", "RTX A4000", f"0.0{5 + i % 4}", memory=16, startup_s=300 + 60 * (i % 2))
        for i in range(40)
    ]
    checks = 0
    real = policy_module.feasible

    def counted(*args: Any, **kwargs: Any) -> bool:
        nonlocal checks
        checks += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_module, "feasible", counted)
    found = _closing(
        state(work, [], [v100]),
        work,
        [v100],
        [v100],
        [(c, False) for c in cards],
        (fast, False),
        10**9,
    )
    assert found is not None and found[0].usd_per_hour == min(c.usd_per_hour for c in cards)
    assert checks <= 2 + 1  # one a kind, and one for the ranking's pick
