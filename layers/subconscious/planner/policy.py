"""Dispatch policy: state in, decisions out. Deterministic and pure, so the simulator in
``bench/`` runs exactly this code against replayed markets.

Uniform Progress with an on-demand safety net ("Can't Be Late", NSDI 2024), generalised to many
orders sharing machines:

1. **Safety net.** Orders are served earliest deadline first. If, waiting one more tick and
   then counting only on-demand machines (interruptible ones may vanish), some prefix of the
   EDF order could no longer finish by its deadline, rent on-demand machines now — the cheapest
   per image first — until it can.
2. **Cheap progress while slack allows.** Otherwise, when the current fleet alone would miss a
   deadline, or the backlog holds enough work to pay a start-up back, rent interruptible
   capacity if any is offered (else on-demand), cheapest per image first.
3. **Batching.** Small work waits, while it could still wait ``DEFER_S`` and be on time, so
   that one start-up serves many orders; so does work that only on-demand capacity would
   render now (Uniform Progress: on-demand only once the promises need it).
4. **Caps.** Never more than ``max_machines`` machines, never more than
   ``max_spend_micros_per_hour`` per hour across them; idle machines are released.

Feasibility is a fluid EDF check: for each deadline d (in order), the work of every order due
by d, each order at the rate the whole fleet renders its job, must fit in the time before d,
less a guard (a dispatch tick, the batch a preemption loses) and a safety share of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from subconscious.catalogue import canonical
from subconscious.models import JobSpec, Offer
from subconscious.models.servers import WorkerKind
from subconscious.money import MICROS_PER_USD
from subconscious.planner.costs import (
    DEFAULT_PREEMPTIONS_PER_HOUR,
    TEARDOWN_S,
    Rates,
    memory_needed,
    price_micros_per_hour,
)
from subconscious.planner.workers import (
    MAX_COMPILE_SHAPES,
    compile_pays,
    compile_seconds,
    kind_for,
)

# A decision takes effect within one tick (dispatch runs every minute) plus the state
# machine's start; a machine rented now renders after that and its start-up.
TICK_S = 60
DISPATCH_LATENCY_S = 90
# Share of each window kept in reserve (retries, a slower card than the model says).
SAFETY_SHARE = 0.15
# Rent for progress only once the backlog holds this many start-ups' worth of rendering on
# the chosen machine, so a start-up is at most ~1/(1+AMORTIZE) of what it costs.
AMORTIZE = 6.0
# A machine not needed for the deadlines is released when the backlog would cost this much
# more per image on it than on the cheapest machine kept.
TRIM_OVER_CHEAPEST = 1.1
# Rent a cheaper machine beside a rendering fleet when the backlog (start-up included) would
# cost at most this share of what it costs on the dearest machine rendering it now.
REPLACE_SHARE = 0.7
# Work waits to share a start-up only while it could still wait this long and be on time,
# and only while the most urgent promise is hours away: a short window that waits ends up
# hedged with on-demand machines, which costs more than the start-up it hoped to share.
DEFER_S = 900
MIN_DEFER_WINDOW = timedelta(hours=3)


@dataclass(frozen=True)
class OpenOrder:
    order_id: str
    job: JobSpec
    images_left: int
    deadline: datetime


@dataclass(frozen=True)
class LiveMachine:
    machine_id: str
    offer: Offer
    interruptible: bool
    ready_at: datetime  # when it renders (or started to)
    # Ready, and nothing is left that it could start: every open image is rendered or in
    # flight elsewhere. (A live render run ends itself then; the simulator asks the policy.)
    idle: bool = False
    # Asked to stop (trimmed): it finishes its batch in flight and goes. Still billed and
    # counted against the caps, never counted as capacity.
    leaving: bool = False


@dataclass(frozen=True)
class Limits:
    max_machines: int = 8
    max_spend_micros_per_hour: int = 20_000_000


@dataclass(frozen=True)
class PlanState:
    now: datetime
    orders: Sequence[OpenOrder]
    machines: Sequence[LiveMachine]
    offers: Sequence[Offer]
    rates: Rates
    limits: Limits = field(default_factory=Limits)
    # What our interruptible machines have lived through (planner.preemption.observed_rate).
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR
    # The market's history (planner.forecast.outlook): per canonical GPU, the share of the
    # snapshots listing it in which it took bids. A card not in it never has.
    spot_shares: Mapping[str, float] = field(default_factory=dict)
    # The same history's typical lowest bid per canonical GPU while it took bids (micro-dollars
    # an hour): what waiting for a card's interruptible capacity is expected to cost.
    spot_bids: Mapping[str, int] = field(default_factory=dict)
    # And how long, on average, a card's interruptible capacity stayed gone (seconds).
    spot_gaps: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Rent:
    offer: Offer
    interruptible: bool
    reason: str
    # The image settings whose UNet the lean worker compiles while it starts, where that pays
    # (the dispatch turns them into shapes at the batch its tasks are cut to).
    compile_for: tuple[JobSpec, ...] = ()


@dataclass(frozen=True)
class Release:
    machine_id: str
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str
    # The backlog waits for company, to share a machine start-up (rule 3): ``latest_start``
    # says until when at the latest.
    shares_startup: bool = False
    # The backlog waits for interruptible capacity to come back (``_wait_for_spot``):
    # ``latest_on_demand`` says when the safety net rents on-demand machines at the latest.
    for_interruptible: bool = False


Decision = Rent | Release | Wait


def edf(orders: Sequence[OpenOrder]) -> list[OpenOrder]:
    """Earliest deadline first; ties by id so the order is deterministic."""
    return sorted((o for o in orders if o.images_left > 0), key=lambda o: (o.deadline, o.order_id))


def _setting(job: JobSpec) -> tuple[object, ...]:
    return (job.model_family, job.width, job.height, job.steps)


def feasible(
    orders: Sequence[OpenOrder],
    machines: Sequence[LiveMachine],
    rates: Rates,
    now: datetime,
    *,
    start_after_s: float = 0.0,
) -> bool:
    """Whether ``machines`` finish every order by its deadline, EDF, with the guard and the
    safety share kept; ``start_after_s`` delays every machine's work (a tick of waiting).

    Fluid check in one sweep: orders come in deadline order and machines in ready order, so
    for each image setting the capacity a machine adds before deadline d is r·(d − ready),
    kept as running sums A = Σr and B = Σr·ready: O(orders + machines) per setting, which
    keeps a quote against a backlog of 10,000 tasks well inside its latency budget."""
    if not orders:
        return True
    if not machines:
        return False
    start = max(0.0, start_after_s)
    ready = sorted(
        (max(start, (m.ready_at - now).total_seconds()), m.offer.offer_id, m) for m in machines
    )
    # per image setting: [next machine index, A, B, guard]
    sweeps: dict[tuple[object, ...], list[float]] = {}
    speeds: dict[tuple[tuple[object, ...], int], tuple[float, float]] = {}
    needed = 0.0
    for order in orders:  # already in EDF order
        window = (order.deadline - now).total_seconds()
        if window <= 0:
            return False
        key = _setting(order.job)
        sweep = sweeps.get(key)
        if sweep is None:
            sweep = sweeps[key] = [0, 0.0, 0.0, float(TICK_S)]
        index = int(sweep[0])
        while index < len(ready) and ready[index][0] < window:
            offset, _, machine = ready[index]
            cached = speeds.get((key, index))
            if cached is None:
                speed = rates.speed(machine.offer, order.job)
                cached = speeds[(key, index)] = (speed.images_per_s, speed.batch_s)
            sweep[1] += cached[0]
            sweep[2] += cached[0] * offset
            sweep[3] = max(sweep[3], cached[1])
            index += 1
        sweep[0] = index
        rate = (window * sweep[1] - sweep[2]) / window
        if rate <= 0:
            return False
        needed += order.images_left / rate
        if needed > window * (1 - SAFETY_SHARE) - sweep[3]:
            return False
    return True


def _mix(orders: Sequence[OpenOrder]) -> list[tuple[JobSpec, int]]:
    """The backlog's images per image setting (one job stands for each setting)."""
    mix: dict[tuple[object, ...], tuple[JobSpec, int]] = {}
    for order in orders:
        key = _setting(order.job)
        job, images = mix.get(key, (order.job, 0))
        mix[key] = (job, images + order.images_left)
    return list(mix.values())


def _backlog_cost(
    offer: Offer, interruptible: bool, mix: list[tuple[JobSpec, int]], rates: Rates
) -> float:
    """What rendering the whole backlog on this machine would cost (micro-dollars): a card
    cheap for the most urgent job may be dear for the rest (SD 1.5 vs SDXL)."""
    return price_micros_per_hour(offer, interruptible) * _render_s(offer, mix, rates) / 3600


def _render_s(offer: Offer, mix: list[tuple[JobSpec, int]], rates: Rates) -> float:
    """Seconds one machine of ``offer`` renders the whole backlog alone."""
    return sum(images / rates.speed(offer, job).images_per_s for job, images in mix)


def _rental_cost(
    offer: Offer,
    interruptible: bool,
    mix: list[tuple[JobSpec, int]],
    rates: Rates,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> float:
    """What renting this machine to render the whole backlog would cost (micro-dollars): its
    start-up, the rendering and teardown, and for an interruptible one its expected preemption
    losses (each a new start-up and the batch in flight) at the rate the quote assumes. For a
    small backlog the start-up is most of it: a card fast per image but dear per hour costs
    more than a slow cheap one (a 4090 for 65 images), and the ranking must say so. The
    preemption rate is the one our own machines have seen (``PlanState``)."""
    held = offer.startup_s + _render_s(offer, mix, rates) + TEARDOWN_S
    if interruptible:
        held += _preempted_s(offer, mix, rates, preemptions_per_hour, held)
    return price_micros_per_hour(offer, interruptible) * held / 3600


def _preempted_s(
    offer: Offer,
    mix: list[tuple[JobSpec, int]],
    rates: Rates,
    preemptions_per_hour: float,
    held_s: float,
) -> float:
    """The seconds an interruptible machine held ``held_s`` expects to lose to preemption:
    each preemption a new start-up and the batch in flight."""
    batch_s = max(rates.speed(offer, job).batch_s for job, _ in mix)
    return preemptions_per_hour * held_s / 3600 * (offer.startup_s + batch_s)


def _fits(state: PlanState, jobs: list[JobSpec], interruptible: bool) -> list[Offer]:
    taken = {m.offer.offer_id for m in state.machines}
    need = memory_needed(jobs)
    return [
        o
        for o in state.offers
        if o.offer_id not in taken
        and (not interruptible or o.min_bid_usd_per_hour is not None)
        and o.gpu_memory_gb >= need
    ]


def _ranked(
    state: PlanState, jobs: list[JobSpec], *, interruptible: bool, on_demand: bool = True
) -> list[tuple[Offer, bool]]:
    """(offer, interruptible) rentals every open job can run on, in one ranking by what each
    would cost for the whole backlog (:func:`_rental_cost`): an interruptible machine is not
    preferred for being interruptible, only where it is cheaper (a market whose bids are 90 %
    of on-demand, or whose cheapest card per image has no interruptible mode)."""
    mix = _mix(edf(state.orders)) or [(jobs[0], 1)]
    pairs = [(o, True) for o in _fits(state, jobs, True)] if interruptible else []
    if on_demand:
        pairs += [(o, False) for o in _fits(state, jobs, False)]
    return sorted(
        pairs,
        key=lambda p: (
            _rental_cost(p[0], p[1], mix, state.rates, state.preemptions_per_hour),
            p[0].offer_id,
            p[1],
        ),
    )


def _hourly(machines: Sequence[LiveMachine]) -> int:
    return sum(price_micros_per_hour(m.offer, m.interruptible) for m in machines)


def _virtual(offer: Offer, interruptible: bool, now: datetime) -> LiveMachine:
    ready = now + timedelta(seconds=DISPATCH_LATENCY_S + offer.startup_s)
    return LiveMachine(f"planned:{offer.offer_id}", offer, interruptible, ready)


def _working(state: PlanState) -> list[LiveMachine]:
    """The machines that can take work: neither idle (released this tick) nor leaving."""
    return [m for m in state.machines if not m.idle and not m.leaving]


def decide(state: PlanState) -> list[Decision]:
    orders = edf(state.orders)
    if not orders:
        released: list[Decision] = [Release(m.machine_id, "no work left") for m in state.machines]
        return released or [Wait("no work waiting")]
    idle: list[Decision] = [
        Release(m.machine_id, "idle: nothing left it could start") for m in state.machines if m.idle
    ]
    jobs = [o.job for o in orders]
    fleet = _working(state)
    return [*idle, *_decide(state, orders, jobs, fleet)]


def _decide(
    state: PlanState, orders: list[OpenOrder], jobs: list[JobSpec], fleet: list[LiveMachine]
) -> list[Decision]:
    now, rates = state.now, state.rates

    # 1. Safety net: after one more tick, could on-demand capacity alone still make it?
    if not keepable(orders, fleet, state.offers, rates, now, state.limits, delay_s=TICK_S):
        return _rent_until(state, orders, jobs, fleet, interruptible=False, why="safety net")

    # 2. Progress: the fleet as it is would miss a deadline (Uniform Progress), or there is
    # no fleet and the backlog holds enough work to pay a start-up back (batching).
    spot = bool(_fits(state, jobs, interruptible=True))
    if fleet and not feasible(orders, fleet, rates, now):
        if not spot and _spot_returns(state, jobs):
            return _wait_for_spot(state, orders, jobs, fleet, f"progress{GONE}")
        return _rent_until(state, orders, jobs, fleet, interruptible=spot, why="progress")
    # Waiting for company is worth it only with real slack: a promise that could not survive
    # DEFER_S of waiting starts now rather than at its last safe tick.
    defer_ok = orders[0].deadline - now >= MIN_DEFER_WINDOW and keepable(
        orders, fleet, state.offers, rates, now, _net(state, fleet), delay_s=DEFER_S
    )
    if not fleet and (not defer_ok or _worth_a_machine(state, orders, jobs)):
        awaited = _awaited_card(state, jobs) if spot else None
        if awaited:
            why = f"batch: waiting for {awaited} interruptible capacity, cheaper than what is on"
            return _wait_for_spot(state, orders, jobs, fleet, why)
        if not spot and _spot_returns(state, jobs):
            return _wait_for_spot(state, orders, jobs, fleet, f"batch{GONE}")
        return _rent_until(
            state, orders, jobs, fleet, interruptible=spot, why="batch", at_least_one=True
        )
    if fleet:
        trim = _trim(state, orders, fleet) or _park(state, orders, jobs, fleet)
        if trim is not None:
            return [trim]
        cheaper = _cheaper(state, orders, jobs, fleet)
        if cheaper is not None:
            return [cheaper]
        return [Wait(f"{len(orders)} order(s) on track with {len(fleet)} machine(s)")]
    return [Wait(f"{len(orders)} order(s) waiting to share a start-up", shares_startup=True)]


GONE = ": interruptible capacity is gone for now"


def _wait_for_spot(
    state: PlanState,
    orders: list[OpenOrder],
    jobs: list[JobSpec],
    fleet: list[LiveMachine],
    why: str,
) -> list[Decision]:
    """The work waits for interruptible capacity to come back, and on-demand machines come
    from the safety net, rented while waiting longer would not need more of them
    (:func:`_net`): at the last moment the caps allow, the net rented five machines at once
    for what one rented earlier would have done."""
    net = _net(state, fleet)
    if not keepable(orders, fleet, state.offers, state.rates, state.now, net, delay_s=TICK_S):
        return _rent_until(state, orders, jobs, fleet, interruptible=False, why="safety net")
    return [Wait(f"{why}; the net keeps the promises", for_interruptible=True)]


def latest_on_demand(state: PlanState) -> datetime:
    """While the backlog waits for interruptible capacity (a ``Wait`` with
    ``for_interruptible``): when the safety net rents on-demand machines for it at the latest,
    if none comes back and no more work arrives, by the test ``_wait_for_spot`` makes each
    tick (a bisection; asked only on ticks that wait)."""
    orders = edf(state.orders)
    fleet = _working(state)

    def can_wait(at: datetime) -> bool:
        then = replace(state, now=at)
        net = _net(then, fleet)
        return keepable(orders, fleet, state.offers, state.rates, at, net, delay_s=TICK_S)

    low, high = state.now, orders[0].deadline
    if high <= low or not can_wait(low):
        return low
    return _last_moment(low, high, can_wait)


def _last_moment(low: datetime, high: datetime, can_wait: Callable[[datetime], bool]) -> datetime:
    """Bisected to a tick: the first moment after ``low`` (which can wait) at which waiting is
    no longer safe (``high`` cannot)."""
    while high - low > timedelta(seconds=TICK_S):
        middle = low + (high - low) / 2
        if can_wait(middle):
            low = middle
        else:
            high = middle
    return high


def _spot_returns(state: PlanState, jobs: list[JobSpec]) -> bool:
    """No interruptible capacity for the backlog is listed now: has the market listed some
    for a card on offer that could run it? Then the work waits for it and on-demand machines
    come only from the safety net, once the promises need them (Uniform Progress): renting
    on-demand as soon as the backlog paid a start-up back, or three hours before a deadline,
    cost 1.5-8 times the optimum on markets whose pools came back within the hour at a
    seventh of the price. A market that never listed any (or no history at all) rents
    on-demand machines as the rules say, rather than wait for what does not come."""
    need = memory_needed(jobs)
    return any(
        state.spot_shares.get(canonical(o.gpu), 0.0) > 0
        for o in state.offers
        if o.gpu_memory_gb >= need
    )


def _awaited_card(state: PlanState, jobs: list[JobSpec]) -> str | None:
    """Interruptible capacity for the backlog is listed now (the caller's condition), but only
    where renting it costs more than waiting for a card whose capacity is gone is expected to:
    that card's typical bid where the history says it comes back (its share of the snapshots)
    and the net's on-demand machine where it does not, ``share × interruptible + (1 − share) ×
    on-demand`` as the quote expects (``planner.forecast``). The card to wait for, if any; the
    net keeps the promises meanwhile (Uniform Progress), as when none is listed at all. A
    history without bids (or none) rents what is listed, as before."""
    if not state.spot_bids:
        return None
    orders = edf(state.orders)
    mix = _mix(orders) or [(jobs[0], 1)]
    pph = state.preemptions_per_hour

    def cost(offer: Offer, interruptible: bool) -> float:
        return _rental_cost(offer, interruptible, mix, state.rates, pph)

    now_best = cost(*_ranked(state, jobs, interruptible=True)[0])
    net = min(cost(o, False) for o in _fits(state, jobs, False))
    listed = {canonical(o.gpu) for o in _fits(state, jobs, True)}
    net_limits = _net(state, [])
    keeps: dict[tuple[object, ...], bool] = {}  # one check per kind of machine (``_kind``)
    for offer in _fits(state, jobs, False):
        card = canonical(offer.gpu)
        share = state.spot_shares.get(card, 0.0)
        bid, gap = state.spot_bids.get(card), state.spot_gaps.get(card)
        if card in listed or not bid or gap is None:
            continue
        typical = offer.model_copy(update={"min_bid_usd_per_hour": Decimal(bid) / MICROS_PER_USD})
        if share * cost(typical, True) + (1 - share) * net >= now_best:
            continue
        # Only where one such machine, rented when its capacity typically comes back, still
        # keeps every promise (waiting must not leave a window only a fleet can make), and the
        # net could still wait until then (else it would rent on-demand machines meanwhile).
        back_s = gap + DISPATCH_LATENCY_S + offer.startup_s
        kind = _kind(offer)
        if kind not in keeps:
            ready = state.now + timedelta(seconds=back_s)
            awaited = LiveMachine("awaited", typical, True, ready)
            keeps[kind] = feasible(orders, [awaited], state.rates, state.now) and keepable(
                orders, [], state.offers, state.rates, state.now, net_limits, delay_s=back_s
            )
        if keeps[kind]:
            return offer.gpu
    return None


def latest_start(state: PlanState) -> datetime:
    """While the backlog waits to share a start-up (a ``Wait`` with ``shares_startup``): when
    the dispatch rents for it at the latest, whatever work arrives meanwhile: the first moment
    (to a tick) at which waiting ``DEFER_S`` more would no longer be safe, by the same test
    ``decide`` makes each tick. A few feasibility checks (a bisection): asked only on ticks
    that wait, never by ``decide``."""
    orders = edf(state.orders)
    fleet = _working(state)

    def can_wait(at: datetime) -> bool:
        net = _net(replace(state, now=at), fleet)  # as the tick at ``at`` will count it
        return orders[0].deadline - at >= MIN_DEFER_WINDOW and keepable(
            orders, fleet, state.offers, state.rates, at, net, delay_s=DEFER_S
        )

    low, high = state.now, orders[0].deadline - MIN_DEFER_WINDOW
    if high <= low or can_wait(high):
        return max(low, high)
    return _last_moment(low, high, can_wait)


def _trim(state: PlanState, orders: list[OpenOrder], fleet: list[LiveMachine]) -> Release | None:
    """The machine dearest per image of the backlog, when the rest of the fleet keeps every
    promise without it (with the reserve, and the safety net still able to wait a tick) and
    renders for clearly less: the work it would have done goes to cheaper cards. One a tick,
    so the fleet shrinks gently; the reserve keeps the progress rule from renting it back."""
    if len(fleet) < 2:
        return None
    # Only a rendering machine is trimmed (a run is told to stop between batches). A cheaper
    # replacement still starting counts in the rest: if it never renders (a failed boot, a
    # preemption) the deadlines still hold, because the rest must be keepable with on-demand
    # machines alone; what is lost is the dear machine's work meanwhile. Waiting for the
    # replacement to render first cost more in the simulator and left orders over quote.
    rendering = [m for m in fleet if m.ready_at <= state.now]
    if not rendering:
        return None
    mix = _mix(orders)
    cost = {m.machine_id: _backlog_cost(m.offer, m.interruptible, mix, state.rates) for m in fleet}
    dearest = max(fleet, key=lambda m: (cost[m.machine_id], m.machine_id))
    if dearest not in rendering:
        # the dearest still starts: releasing a cheaper machine that renders instead would
        # have ``_cheaper`` rent its like again a tick later (the simulator did, start-up
        # paid twice); the dearest goes once it renders, if the rest can do without it
        return None
    rest = [m for m in fleet if m is not dearest]
    if cost[dearest.machine_id] <= TRIM_OVER_CHEAPEST * min(cost[m.machine_id] for m in rest):
        return None
    # the rest must finish early enough that a safety net rented at the last moment would
    # never have been needed: slack shrinks linearly while they render, so if it lasts at both
    # ends (now: keepable; at the end: the lead) it lasts throughout
    lead = timedelta(seconds=TICK_S + DISPATCH_LATENCY_S + _slowest_start(state.offers))
    early = [replace(o, deadline=o.deadline - lead) for o in orders]
    if not feasible(early, rest, state.rates, state.now):
        return None
    if not keepable(
        orders, rest, state.offers, state.rates, state.now, state.limits, delay_s=TICK_S
    ):
        return None
    return Release(dearest.machine_id, f"trim: {dearest.offer.gpu} not needed on time")


def _park(
    state: PlanState, orders: list[OpenOrder], jobs: list[JobSpec], fleet: list[LiveMachine]
) -> Release | None:
    """An on-demand machine no promise needs now, released when interruptible capacity is on
    offer that would render the backlog for less, start-up included: the safety net rented it
    while the pools were down, and without this it renders the whole backlog, the work due in
    a day included, at the on-demand price. It goes only while the promises could still wait
    ``DEFER_S``, and until the rest with the interruptible machine would have rendered the
    backlog, and then be kept with on-demand machines alone; rules 2 and 3 then rent the
    interruptible machine (or let the backlog wait for company, the net covering it)."""
    steady = [m for m in fleet if not m.interruptible and m.ready_at <= state.now]
    if not steady:
        return None
    best = _ranked(state, jobs, interruptible=True)
    if not best or not best[0][1]:
        return None
    mix = _mix(orders)
    cost = {m.machine_id: _backlog_cost(m.offer, False, mix, state.rates) for m in steady}
    dearest = max(steady, key=lambda m: (cost[m.machine_id], m.machine_id))
    rental = _rental_cost(best[0][0], True, mix, state.rates, state.preemptions_per_hour)
    if rental >= cost[dearest.machine_id]:
        return None
    rest = [m for m in fleet if m is not dearest]
    # Not only DEFER_S: the net must not need to act before the rest and the interruptible
    # machine finish the backlog, or it rents this machine's like back (the simulator did on
    # tight orders in a market whose pools came and went, start-ups paid three times).
    finish_s = _finish_s(
        [*rest, _virtual(best[0][0], True, state.now)], mix, state.rates, state.now
    )
    wait_s = max(DEFER_S, finish_s)
    if not keepable(
        orders, rest, state.offers, state.rates, state.now, _net(state, rest), delay_s=wait_s
    ):
        return None
    return Release(
        dearest.machine_id, f"park: {dearest.offer.gpu} on-demand, interruptible on offer"
    )


def _finish_s(
    machines: Sequence[LiveMachine], mix: list[tuple[JobSpec, int]], rates: Rates, now: datetime
) -> float:
    """Seconds from ``now`` until ``machines`` render the whole backlog together, each from
    when it is ready (fluid: each renders at its speed until the backlog is done)."""
    starts = sorted(
        (
            max(0.0, (m.ready_at - now).total_seconds()),
            1 / _render_s(m.offer, mix, rates),
        )
        for m in machines
    )
    left, rate, at = 1.0, 0.0, 0.0
    for start, share_per_s in starts:
        if rate > 0 and left <= rate * (start - at):
            break
        left -= rate * (start - at)
        rate, at = rate + share_per_s, start
    return at + left / rate  # ``machines`` is never empty: rate > 0


def _cheaper(
    state: PlanState, orders: list[OpenOrder], jobs: list[JobSpec], fleet: list[LiveMachine]
) -> Rent | None:
    """A machine much cheaper per image than the dearest one rendering, when the backlog is
    long enough to pay its start-up back: capacity that was missing when the fleet was rented
    (a pool that had none, a preempted card) is on offer again. Once it renders, ``_trim``
    releases the dear machine if the rest keep every promise; until then the two share the
    work, which already costs less per image. One at a time: only while nothing is starting."""
    billed = _billed(state, fleet)
    if len(billed) >= state.limits.max_machines or any(m.ready_at > state.now for m in fleet):
        return None
    mix = _mix(orders)
    dearest = max(_backlog_cost(m.offer, m.interruptible, mix, state.rates) for m in fleet)
    budget = state.limits.max_spend_micros_per_hour - _hourly(billed)
    for offer, interruptible in _ranked(state, jobs, interruptible=True):
        price = price_micros_per_hour(offer, interruptible)
        if price > budget:
            continue
        backlog = _backlog_cost(offer, interruptible, mix, state.rates)
        startup = price * offer.startup_s / 3600
        if backlog + startup >= REPLACE_SHARE * dearest or backlog < AMORTIZE * startup:
            continue
        if interruptible and not _hedge_free(
            state, orders, [*fleet, _virtual(offer, True, state.now)], offer
        ):
            continue
        kind = "interruptible" if interruptible else "on-demand"
        why = f"cheaper: {kind} {offer.gpu} for {len(orders)} order(s)"
        planned = [*fleet, _virtual(offer, interruptible, state.now)]
        return Rent(offer, interruptible, why, _compile_for(state, orders, offer, planned))
    return None


def _compile_for(
    state: PlanState, orders: list[OpenOrder], offer: Offer, fleet: list[LiveMachine]
) -> tuple[JobSpec, ...]:
    """What is worth compiling on a new lean-worker machine of ``offer``: each image setting
    whose backlog would render on it long enough to pay the compile back ``COMPILE_PAYBACK``
    times (the most work first, at most ``MAX_COMPILE_SHAPES``), and only if every promise
    stays feasible with that machine ready as much later (``fleet``: the planned fleet, the
    machine included)."""
    if kind_for(offer.provider, state.rates.worker) is not WorkerKind.LEAN:
        return ()
    worth = []
    for job, images in _mix(orders):
        seconds = state.rates.speed(offer, job).seconds(images)
        if compile_pays(WorkerKind.LEAN, job, seconds):
            worth.append((seconds, job))
    worth.sort(key=lambda pair: -pair[0])
    chosen = tuple(job for _, job in worth[:MAX_COMPILE_SHAPES])
    if not chosen:
        return ()
    delayed = _compiling(fleet, offer, chosen)
    return chosen if feasible(orders, delayed, state.rates, state.now) else ()


def _compiling(
    fleet: list[LiveMachine], offer: Offer, compile_for: tuple[JobSpec, ...]
) -> list[LiveMachine]:
    """``fleet`` with the machine of ``offer`` ready as much later as compiling takes."""
    late = timedelta(seconds=compile_seconds(compile_for))
    return [
        replace(m, ready_at=m.ready_at + late) if m.offer.offer_id == offer.offer_id else m
        for m in fleet
    ]


def _billed(state: PlanState, fleet: list[LiveMachine]) -> list[LiveMachine]:
    """What the caps count: the fleet and the machines leaving it (still billed)."""
    return [*fleet, *(m for m in state.machines if m.leaving)]


def _slowest_start(offers: Sequence[Offer]) -> int:
    return max((o.startup_s for o in offers), default=0)


def keepable(
    orders: Sequence[OpenOrder],
    machines: Sequence[LiveMachine],
    offers: Sequence[Offer],
    rates: Rates,
    now: datetime,
    limits: Limits,
    prefer: Sequence[Offer] = (),
    *,
    delay_s: float = 0.0,
) -> bool:
    """Whether every order (in EDF order) still meets its deadline counting only on-demand
    capacity: the live on-demand machines, plus on-demand rentals made ``delay_s`` from now,
    as many as the caps allow, the ``prefer`` fleet first (a quote's plan) and then the
    cheapest per image. If that fails, once more with the live machines and the preferred
    offers alone (another machine's longer calls raise the guard)."""
    fleet = [m for m in machines if not m.interruptible and not m.leaving]
    if feasible(orders, fleet, rates, now):
        return True
    jobs = [o.job for o in orders]
    taken = {m.offer.offer_id for m in machines}
    need = memory_needed(jobs)
    fit = [o for o in offers if o.offer_id not in taken and o.gpu_memory_gb >= need]
    mix = _mix(orders)
    first = {o.offer_id: i for i, o in enumerate(prefer)}
    fit.sort(
        key=lambda o: (
            first.get(o.offer_id, len(first)),
            _backlog_cost(o, False, mix, rates),
            o.offer_id,
        )
    )
    # The case this guards against is every interruptible machine gone at once (a pool's
    # capacity goes as one): then their slots and their spend are free for the on-demand
    # machines that replace them. Counting them as taken made the net hedge a fleet of
    # interruptible machines with every on-demand slot left, at once, in a calm market.
    steady = [m for m in machines if not m.interruptible]
    room = limits.max_machines - len(steady)
    budget = limits.max_spend_micros_per_hour - _hourly(steady)
    at = now + timedelta(seconds=delay_s)
    added = preferred = 0
    # one check with every machine the caps allow; if that fails, one with the preferred
    # fleet alone (a machine with longer calls than the fleet's raises the guard)
    for offer in fit:
        if room <= 0:
            break
        price = price_micros_per_hour(offer, False)
        if price > budget:
            continue
        fleet.append(_virtual(offer, False, at))
        added += 1
        preferred += offer.offer_id in first and preferred == added - 1
        room -= 1
        budget -= price
    if added and feasible(orders, fleet, rates, now):
        return True
    cut = len(fleet) - added + preferred
    return 0 < preferred < added and feasible(orders, fleet[:cut], rates, now)


def _net(state: PlanState, machines: Sequence[LiveMachine]) -> Limits:
    """The caps as the safety net counts them: the on-demand machines the backlog would need
    if they were rented now, and one more for each interruptible machine it may have to
    replace (a pool's capacity goes as one). So, with nothing interruptible rendering, the
    net waits only while waiting costs no extra machine: counting on every machine the caps
    allow let it wait until the backlog needed five on-demand machines at once, each paying
    its start-up for a few minutes of rendering that one machine rented earlier would have
    done. With an interruptible fleet rendering, it still hedges only the fleet's loss."""
    limits = state.limits
    steady = sum(not m.interruptible for m in machines)
    spot = len(machines) - steady
    room = limits.max_machines - steady
    orders = edf(state.orders)
    need = 1
    while need < room and not keepable(
        orders, machines, state.offers, state.rates, state.now,
        replace(limits, max_machines=steady + need),
    ):  # fmt: skip
        need += 1
    return replace(limits, max_machines=steady + min(room, need + spot))


def _worth_a_machine(state: PlanState, orders: list[OpenOrder], jobs: list[JobSpec]) -> bool:
    """The backlog's rendering on the cheapest machine would be at least AMORTIZE start-ups
    long: renting now costs little more per image than waiting for more work would. Never
    when that machine is on-demand: while the promises can still wait (the caller's check),
    Uniform Progress rents on-demand capacity only once they need it, and meanwhile waits for
    interruptible capacity to come back (a market with a pool down for an hour at a fifth of
    the price paid five times as much for renting at once)."""
    best = _ranked(state, jobs, interruptible=True)
    if not best or not best[0][1]:
        return False
    offer = best[0][0]
    work_s = sum(state.rates.speed(offer, o.job).seconds(o.images_left) for o in orders)
    return work_s >= AMORTIZE * offer.startup_s


def _rent_until(
    state: PlanState,
    orders: list[OpenOrder],
    jobs: list[JobSpec],
    fleet: list[LiveMachine],
    *,
    interruptible: bool,
    why: str,
    at_least_one: bool = False,
) -> list[Decision]:
    """Rent, cheapest for the backlog first, until the planned fleet finishes every order in
    time; beside a fleet, a machine cheaper per hour that alone closes the gap comes before
    the ranking's pick (:func:`_closing`). An interruptible machine is rented only where the
    promises stay keepable with on-demand machines until it renders (its start-up, and a
    tick): one that would make the safety net hedge before it has rendered anything costs its
    start-up for nothing, so the work goes to on-demand machines instead."""
    decisions: list[Decision] = []
    billed = _billed(state, fleet)
    room = state.limits.max_machines - len(billed)
    budget = state.limits.max_spend_micros_per_hour - _hourly(billed)
    planned = list(fleet)
    # a safety-net machine must not vanish: only on-demand counts towards it
    # (a copy either way: both lists grow by each machine rented below)
    counted = [m for m in planned if not m.interruptible] if why == "safety net" else list(planned)
    candidates = _ranked(state, jobs, interruptible=interruptible)
    while candidates:
        done = feasible(orders, counted, state.rates, state.now)
        if done and (decisions or not at_least_one):
            break
        if room <= 0:
            break
        offer, spot = candidates.pop(0)
        if not _may_join(planned, offer, spot, budget):
            continue
        if spot and not _hedge_free(
            state, orders, [*planned, _virtual(offer, spot, state.now)], offer
        ):
            continue
        closing = _closing(state, orders, planned, counted, candidates, (offer, spot), budget)
        if closing is not None:
            candidates.insert(0, (offer, spot))  # still next in the ranking
            candidates.remove(closing)
            offer, spot = closing
        price = price_micros_per_hour(offer, spot)
        machine = _virtual(offer, spot, state.now)
        planned.append(machine)
        counted.append(machine)
        room -= 1
        budget -= price
        kind = "interruptible" if spot else "on-demand"
        reason = f"{why}: {kind} {offer.gpu} for {len(orders)} order(s)"
        decisions.append(Rent(offer, spot, reason))
    if not decisions:
        return [Wait(f"{why}: no offer fits within the caps")]
    if why == "safety net":  # needed as soon as it boots: never compiles
        return decisions
    return _with_compiling(state, orders, decisions, planned)


def _closing(
    state: PlanState,
    orders: list[OpenOrder],
    planned: list[LiveMachine],
    counted: list[LiveMachine],
    candidates: list[tuple[Offer, bool]],
    ranked: tuple[Offer, bool],
    budget: int,
) -> tuple[Offer, bool] | None:
    """With a fleet already there (live or planned this tick), a machine cheaper per hour
    than the one the ranking picks (``ranked``) that alone makes the plan keep every promise,
    the one that costs the whole fleet least (all of it held until the backlog is rendered,
    fluid; the new machine from now). The ranking by what a machine would cost for the whole
    backlog alone picks a fast card dear per hour (a 4090 beside a V100 a few percent short
    of the reserve); what the machine adds is a share of the work and its start-up, for which
    a card cheap per hour costs less. A card dearer per hour than the ranking's never comes
    from here: one dear machine that closes the gap alone is no cheaper than the ranking's
    several cheap ones (an on-demand B200 for the safety net). None when no cheaper machine
    closes the gap alone: the ranking decides."""
    if not planned:
        return None
    now, rates, mix = state.now, state.rates, _mix(orders)
    cap = price_micros_per_hour(*ranked)

    def fleet_cost(offer: Offer, spot: bool) -> float:
        with_it = [*planned, _virtual(offer, spot, now)]
        return _fleet_cost(with_it, mix, rates, now, state.preemptions_per_hour)

    closing: list[tuple[float, str, bool, Offer]] = []
    closes: dict[tuple[object, ...], bool] = {}  # one feasibility check per kind of machine
    for offer, spot in candidates:
        if price_micros_per_hour(offer, spot) >= cap or not _may_join(planned, offer, spot, budget):
            continue
        kind = _kind(offer)
        if kind not in closes:
            closes[kind] = feasible(orders, [*counted, _virtual(offer, spot, now)], rates, now)
        if not closes[kind]:
            continue
        closing.append((fleet_cost(offer, spot), offer.offer_id, spot, offer))
    if feasible(orders, [*counted, _virtual(*ranked, now)], rates, now):
        # the ranking's machine closes the gap too: a cheaper one must cost the fleet less
        limit = fleet_cost(*ranked)
        closing = [c for c in closing if c[0] < limit]
    for _, _, spot, offer in sorted(closing, key=lambda c: c[:3]):
        if not spot or _hedge_free(state, orders, [*planned, _virtual(offer, spot, now)], offer):
            return offer, spot
    return None


def _kind(offer: Offer) -> tuple[object, ...]:
    """What a machine's part in :func:`feasible` depends on: its speed (``Rates``' key) and
    when it is ready. A thousand offers are a few dozen kinds; the price is not in it."""
    return (offer.gpu, offer.gpu_count, offer.gpu_memory_gb, offer.provider, offer.startup_s)


def _may_join(planned: list[LiveMachine], offer: Offer, spot: bool, budget: int) -> bool:
    """One host per offer (not planned already, in either mode) and within the hourly spend
    left."""
    if any(m.offer.offer_id == offer.offer_id for m in planned):
        return False
    return price_micros_per_hour(offer, spot) <= budget


def _fleet_cost(
    machines: Sequence[LiveMachine],
    mix: list[tuple[JobSpec, int]],
    rates: Rates,
    now: datetime,
    preemptions_per_hour: float,
) -> float:
    """What ``machines`` cost from now until together they have rendered the backlog
    (micro-dollars, fluid: every one held until the end, each rendering from when it is
    ready), with the expected preemption losses of the interruptible ones as
    :func:`_rental_cost` counts them."""
    finish_s = _finish_s(machines, mix, rates, now)
    cost = 0.0
    for machine in machines:
        price = price_micros_per_hour(machine.offer, machine.interruptible)
        held_s = finish_s
        if machine.interruptible:
            held_s += _preempted_s(machine.offer, mix, rates, preemptions_per_hour, finish_s)
        cost += price * held_s / 3600
    return cost


def _with_compiling(
    state: PlanState,
    orders: list[OpenOrder],
    decisions: list[Decision],
    planned: list[LiveMachine],
) -> list[Decision]:
    """The rentals, each compiling where it pays and the whole planned fleet still keeps every
    promise with the compiling machines ready that much later."""
    compiled: list[Decision] = []
    for rent in decisions:
        assert isinstance(rent, Rent)
        compile_for = _compile_for(state, orders, rent.offer, planned)
        if compile_for:
            planned = _compiling(planned, rent.offer, compile_for)
            rent = replace(rent, compile_for=compile_for)
        compiled.append(rent)
    return compiled


def _hedge_free(
    state: PlanState, orders: list[OpenOrder], planned: list[LiveMachine], offer: Offer
) -> bool:
    """Whether, with ``planned`` rented, the safety net could still wait until a machine of
    ``offer`` renders: on-demand rentals made then must still keep every promise."""
    wait_s = DISPATCH_LATENCY_S + offer.startup_s + TICK_S
    return keepable(
        orders, planned, state.offers, state.rates, state.now, state.limits, delay_s=wait_s
    )
