"""Quotes: the price/completion-time frontier of a job, and the options we offer from it.

For every offer that can run the job we know what k machines of it would cost (start-ups,
rendering, teardown, billed as the provider bills; :mod:`subconscious.planner.costs`) and when
they would finish (dispatch latency, start-up, rendering, one batch in reserve, and the same
safety share of the window the dispatch policy keeps). From that frontier:

* ``requested``: the cheapest plan that meets the deadline and the budget, promised by the
  customer's deadline (so the dispatch may batch it with other work until then);
* otherwise counter-proposals: ``cheapest`` (the cheapest on time, over budget) and
  ``earliest_in_budget`` (the earliest within budget, after the deadline);
* ``earliest``: faster at a higher price, the earliest finish at any price, promised when it
  completes, where that is before the answer above (never priced below it);
* ``wait_1d`` / ``wait_3d``: "cheaper if you can wait". A window that leaves hours of slack lets
  the dispatch render on interruptible machines; we pass that saving on, as far as the market
  history says such capacity is there (``outlook``: a forecast from the S3 history; today's
  listing where there is none), but never price below what the work would cost us on
  on-demand machines, so the safety net can always be paid for;
* where no option meets either term: ``fastest`` (the earliest, so named) and
  ``lowest_price`` (the lowest price at the earliest it can be had), saying how far off each is.

Each trade-off is offered once (an option another beats or equals on both completion and price
is left out, the answer to the request never is): the answers to the request first, then the
others by promised completion. Every option also says when we expect it to end
(``expected_completion_at``: start-up and rendering at the modelled rate, no reserve) beside
the promise (``completes_at``, which keeps the reserves).

A quote is a promise the dispatch must keep: every option is checked against the backlog and
the live machines (all promised orders, earliest deadline first, must still fit with the
machines the caps allow) and dropped if it would break a promise already made.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from subconscious.catalogue import canonical
from subconscious.errors import NoCapacity
from subconscious.models import Constraints, JobSpec, Offer, QuoteOption
from subconscious.models.spot import SpotOutlook
from subconscious.money import ceil_div, to_micros, to_usd
from subconscious.planner.costs import (
    DEFAULT_PREEMPTIONS_PER_HOUR,
    Rates,
    fleet_cost_micros,
    fleet_seconds,
    job_cost_micros,
    price_micros_per_hour,
    usable,
)
from subconscious.planner.fleets import cheapest_fleet
from subconscious.planner.policy import (
    DISPATCH_LATENCY_S,
    SAFETY_SHARE,
    TICK_S,
    Limits,
    LiveMachine,
    OpenOrder,
    edf,
    keepable,
)

# Interruptible capacity is planned only where the window leaves this much beyond what
# on-demand machines would need: the spot traces flip availability several times a day.
SPOT_SLACK_S = 6 * 3600
WAIT_PREFIX = "wait_"
WAIT_OPTIONS = ((1, f"{WAIT_PREFIX}1d"), (3, f"{WAIT_PREFIX}3d"))
REQUESTED = "requested"
CHEAPEST = "cheapest"
EARLIEST_IN_BUDGET = "earliest_in_budget"
EARLIEST = "earliest"
FASTEST = "fastest"
LOWEST_PRICE = "lowest_price"
# Which of two identical options is shown (the first here: an earliest option within budget is
# ``earliest``, which says more), and the answers to the request, which come first in a quote;
# the others follow by promised completion.
PRIORITY = {
    label: rank
    for rank, label in enumerate(
        (
            REQUESTED,
            CHEAPEST,
            EARLIEST,
            EARLIEST_IN_BUDGET,
            FASTEST,
            LOWEST_PRICE,
            *(label for _, label in WAIT_OPTIONS),
        )
    )
}
ANSWERS = frozenset({REQUESTED, CHEAPEST, EARLIEST_IN_BUDGET})


@dataclass(frozen=True)
class Plan:
    offers: tuple[Offer, ...]  # the machines rented together; the first is the cheapest
    seconds: float  # from now until the last image, with the policy's reserves
    cost_micros: int

    @property
    def offer(self) -> Offer:
        return self.offers[0]

    @property
    def machines(self) -> int:
        return len(self.offers)

    def completes(self, now: datetime) -> datetime:
        return now + timedelta(seconds=int(self.seconds) + 1)


def _plan(job: JobSpec, images: int, offers: list[Offer], rates: Rates) -> Plan:
    speeds = [rates.speed(o, job) for o in offers]
    busy = fleet_seconds(speeds, images)
    guard = max(float(TICK_S), *(s.batch_s for s in speeds))
    start = DISPATCH_LATENCY_S + max(o.startup_s for o in offers)
    seconds = (start + busy + guard) / (1 - SAFETY_SHARE)
    return Plan(tuple(offers), seconds, fleet_cost_micros(job, offers, speeds, images))


def singles(
    job: JobSpec, offers: Sequence[Offer], rates: Rates, limits: Limits | None = None
) -> list[Plan]:
    """Each usable offer alone (within the hourly cap): a plan per offer, priced exactly."""
    cap = math.inf if limits is None else limits.max_spend_micros_per_hour
    return [
        _plan(job, job.total_images, [o], rates)
        for o in offers
        if usable(o, job) and price_micros_per_hour(o, False) <= cap
    ]


def fleet_plan(
    job: JobSpec,
    offers: Sequence[Offer],
    rates: Rates,
    limits: Limits,
    window_s: float,
    below: float = math.inf,
) -> Plan | None:
    """The cheapest fleet that finishes by ``window_s`` (:mod:`subconscious.planner.fleets`),
    as a plan that completes at the end of the window; None where none can, or where no
    fleet of several machines could cost less than ``below``."""
    fleet = cheapest_fleet(job, offers, rates, limits, window_s, below=below)
    if fleet is None:
        return None
    return Plan(fleet.offers, max(0.0, window_s - 1), fleet.cost_micros)


def frontier(
    job: JobSpec,
    offers: Sequence[Offer],
    rates: Rates,
    limits: Limits,
    alone: list[Plan] | None = None,
) -> list[Plan]:
    """On-demand plans for ``job``: each usable offer alone (``alone``, where the caller has
    them already), and the k offers cheapest per
    image together (each offer is one machine, as on the marketplaces), for k up to the
    machine cap and the hourly spend cap; only plans that no other beats on both cost and
    time are kept, fastest first. (Quick, and good enough for the options that have no
    deadline to meet: the earliest and the "cheaper if you can wait" ones.)"""
    fit = [o for o in offers if usable(o, job)]
    if not fit:
        return []
    hourly_of = {o.offer_id: price_micros_per_hour(o, False) for o in fit}
    by_value = sorted(
        fit, key=lambda o: (hourly_of[o.offer_id] / rates.speed(o, job).images_per_s, o.offer_id)
    )
    images = job.total_images
    plans = list(alone) if alone is not None else singles(job, fit, rates, limits)
    # fleets: the cheapest per image first, and (for tight windows) the quickest to start first
    rank = {o.offer_id: i for i, o in enumerate(by_value)}
    by_start = sorted(by_value, key=lambda o: (o.startup_s, rank[o.offer_id]))
    for order in (by_value, by_start):
        fleet: list[Offer] = [order[0]]
        hourly = hourly_of[order[0].offer_id]
        for offer in order[1:]:
            price = hourly_of[offer.offer_id]
            over_caps = (
                len(fleet) >= limits.max_machines
                or hourly + price > limits.max_spend_micros_per_hour
            )
            if over_caps or sum(rates.speed(o, job).batch for o in fleet) >= images:
                break  # another machine would pass a cap or have nothing to render
            fleet.append(offer)
            hourly += price
            plans.append(_plan(job, images, list(fleet), rates))
    return _unbeaten(plans)


def _unbeaten(plans: list[Plan]) -> list[Plan]:
    """The plans no other is both quicker (or as quick) and cheaper (or as cheap) than, fastest
    first: another's price can only be lower (more slack, less cost), so pricing these is
    enough."""
    kept: list[Plan] = []
    for plan in sorted(plans, key=lambda p: (p.seconds, p.cost_micros, p.offer.offer_id)):
        if not kept or plan.cost_micros < kept[-1].cost_micros:
            kept.append(plan)
    return kept


def _edf_key(order: OpenOrder) -> tuple[datetime, str]:
    return (order.deadline, order.order_id)


def spot_cost_micros(
    job: JobSpec,
    offers: Sequence[Offer],
    rates: Rates,
    outlook: SpotOutlook | None = None,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> int | None:
    """The cheapest expected cost of ``job`` on one interruptible machine, losses included
    (``preemptions_per_hour``): where the history says the card is interruptible only part of
    the time, the rest of the time it is rented on-demand
    (:mod:`subconscious.planner.forecast`)."""
    costs = []
    for o in offers:
        if o.min_bid_usd_per_hour is None or not usable(o, job):
            continue
        speed = rates.speed(o, job)
        spot = job_cost_micros(
            job,
            o,
            speed,
            job.total_images,
            interruptible=True,
            preemptions_per_hour=preemptions_per_hour,
        )
        share = 1.0 if outlook is None else outlook.share(o.gpu)
        if share < 1.0:
            steady = job_cost_micros(job, o, speed, job.total_images, interruptible=False)
            spot = math.ceil(share * spot + (1 - share) * steady)
        costs.append(spot)
    return min(costs) if costs else None


def plan_quote(
    job: JobSpec,
    constraints: Constraints,
    offers: Sequence[Offer],
    now: datetime,
    margin_percent: int,
    rates: Rates,
    *,
    backlog: Sequence[OpenOrder] = (),
    machines: Sequence[LiveMachine] = (),
    limits: Limits | None = None,
    outlook: SpotOutlook | None = None,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> list[QuoteOption]:
    """The options for ``job`` (see the module's docstring). ``preemptions_per_hour``: how
    often our interruptible machines were preempted lately (``planner.preemption``); the
    "cheaper if you can wait" discount is priced at that rate, or at the default where the
    default is higher: a quote is a promise, and a calm day is no reason to promise more."""
    limits = limits or Limits()
    every_alone = singles(job, offers, rates, limits)
    plans = frontier(job, offers, rates, limits, every_alone)
    if not plans:
        raise NoCapacity("no GPU on the market can run this job right now")
    quoting = _Quoting(
        job,
        constraints,
        offers,
        now,
        margin_percent,
        rates,
        machines,
        limits,
        spot=spot_cost_micros(
            job, offers, rates, outlook, max(preemptions_per_hour, DEFAULT_PREEMPTIONS_PER_HOUR)
        ),
        promised=edf(backlog),  # sorted once; each check slots the new order in
    )
    candidates = quoting.candidates(plans, every_alone)
    met = quoting.on_time(candidates)
    if not met:
        quoting.earliest_in_budget(plans)
    quoting.earliest([*plans, *candidates])
    quoting.waits(plans)
    quoting.extremes(plans)
    options = quoting.options()
    if not options:
        raise NoCapacity("no plan fits beside the work already promised; try later")
    return options


class _Quoting:
    """One quote's steps, sharing what every step needs: the job, the market, the promises
    already made, and the options offered so far (each later option is offered only if it
    beats those)."""

    def __init__(
        self,
        job: JobSpec,
        constraints: Constraints,
        offers: Sequence[Offer],
        now: datetime,
        margin_percent: int,
        rates: Rates,
        machines: Sequence[LiveMachine],
        limits: Limits,
        *,
        spot: int | None,
        promised: list[OpenOrder],
    ) -> None:
        self.job = job
        self.offers = offers
        self.now = now
        self.margin_percent = margin_percent
        self.rates = rates
        self.machines = machines
        self.limits = limits
        self.spot = spot
        self.promised = promised
        self.images = job.total_images
        budget = constraints.max_price_per_image_usd
        self.budget_micros = None if budget is None else to_micros(budget)
        self.deadline = constraints.deadline
        self.offered: list[_Offered] = []

    def price(self, plan: Plan, by: datetime) -> int:
        """Per image, margin included; interruptible pricing where the window allows it."""
        margin, images = self.margin_percent, self.images
        on_demand = ceil_div(plan.cost_micros * (100 + margin), 100 * images)
        slack = (by - plan.completes(self.now)).total_seconds()
        if self.spot is None or slack < SPOT_SLACK_S or plan.machines > 1:
            return on_demand
        # never below what on-demand would cost us plus half our margin: the safety net may
        # have to hedge with on-demand machines, dearer cards than this plan's
        floor = ceil_div(plan.cost_micros * (200 + margin), 200 * images)
        with_margin = ceil_div(self.spot * (100 + margin), 100 * images)
        return min(on_demand, max(floor, with_margin))

    def within_budget(self, per_image: int) -> bool:
        return self.budget_micros is None or per_image <= self.budget_micros

    def keeps(self, promise: datetime, plan: Plan) -> bool:
        """Whether promising ``plan`` by ``promise`` still keeps every earlier promise."""
        new = OpenOrder("quote", self.job, self.images, promise)
        at = bisect.bisect_right(self.promised, (new.deadline, new.order_id), key=_edf_key)
        orders = [*self.promised[:at], new, *self.promised[at:]]
        return keepable(
            orders, self.machines, self.offers, self.rates, self.now, self.limits, plan.offers
        )

    def add(self, label: str, plan: Plan, by: datetime, per_image: int) -> None:
        self.offered.append(_Offered(label, plan, by, per_image))

    def meets_deadline(self, item: _Offered) -> bool:
        return self.deadline is None or item.by <= self.deadline

    def expected(self, plan: Plan, by: datetime) -> datetime:
        """When ``plan``'s work would end if its machines were rented now: each renders at its
        rate from when it is ready (dispatch latency + start-up), no reserve; never after the
        promise ``by`` (where the backlog check counted on more machines than the plan's)."""
        ready = sorted(
            (DISPATCH_LATENCY_S + o.startup_s, self.rates.speed(o, self.job).images_per_s)
            for o in plan.offers
        )
        # the machines ready first, k of them alone, would finish at (N + Σ r·ready) / Σ r;
        # the fleet finishes at the least of these (a machine ready after that adds nothing)
        rate = weighted = 0.0
        finish = math.inf
        for at, per_s in ready:
            rate += per_s
            weighted += per_s * at
            finish = min(finish, (self.images + weighted) / rate)
        return min(by, self.now + timedelta(seconds=math.ceil(finish)))

    def options(self) -> list[QuoteOption]:
        """What was offered, each once (see :func:`_distinct`), in the documented order."""
        kept = _distinct(self.offered)
        kept.sort(key=lambda i: (i.label not in ANSWERS, i.by, i.per_image, PRIORITY[i.label]))
        return [self.option(item) for item in kept]

    def option(self, item: _Offered) -> QuoteOption:
        label, plan, by, per_image, now = item.label, item.plan, item.by, item.per_image, self.now
        digest = hashlib.sha256(
            f"{label}/{plan.offer.provider}/{plan.offer.offer_id}/{now.isoformat()}".encode()
        )
        return QuoteOption(
            option_id=f"opt-{digest.hexdigest()[:12]}",
            label=label,
            provider=plan.offer.provider,
            gpu=canonical(plan.offer.gpu),
            machines=plan.machines,
            start_at=now,
            expected_completion_at=self.expected(plan, by),
            completes_at=by,
            price_per_image_usd=to_usd(per_image),
            total_usd=to_usd(per_image * self.images),
            meets_deadline=self.meets_deadline(item),
            meets_budget=self.within_budget(per_image),
        )

    def candidates(self, plans: list[Plan], every_alone: list[Plan]) -> list[Plan]:
        """The plans to meet the deadline with. Against a deadline these are every offer
        alone and the exact cheapest fleet, so a market that gains an offer never quotes the
        same terms higher (a rule-of-thumb fleet could)."""
        deadline, now = self.deadline, self.now
        if deadline is None:
            return plans
        alone = _unbeaten([p for p in every_alone if p.completes(now) <= deadline])
        below = min((p.cost_micros for p in alone), default=math.inf)
        exact = self.exact_fleet((deadline - now).total_seconds(), below)
        if alone or exact:
            return [*alone, *([exact] if exact else [])]
        # The exact search rounds start-ups, call lengths and rates against us: seconds from
        # the window's end it can find no fleet where one the frontier times exactly is on
        # time. Answer with that one rather than call the request unmet while the earliest
        # option meets it (hypothesis found it: 4,310 images, two cards, 2 s to spare).
        return [p for p in plans if p.completes(now) <= deadline]

    def exact_fleet(self, window_s: float, below: float) -> Plan | None:
        """The cheapest fleet for the window, sized for what the live machines leave of the
        caps, on the offers they do not already hold."""
        machines, limits = self.machines, self.limits
        taken = {m.offer.offer_id for m in machines}
        left = Limits(
            limits.max_machines - len(machines),
            limits.max_spend_micros_per_hour
            - sum(price_micros_per_hour(m.offer, m.interruptible) for m in machines),
        )
        if left.max_machines <= 0 or left.max_spend_micros_per_hour <= 0:
            return None
        free = [o for o in self.offers if o.offer_id not in taken]
        return fleet_plan(self.job, free, self.rates, left, window_s, below)

    def on_time(self, candidates: list[Plan]) -> bool:
        """Offer the cheapest candidate meeting the deadline, promised by the deadline itself
        (``requested``, or ``cheapest`` where over budget); True where that option is within
        budget, so no later-but-affordable one is needed."""
        deadline, now = self.deadline, self.now
        on_time = sorted(
            (
                (self.price(p, deadline or p.completes(now)), p.seconds, p)
                for p in candidates
                if deadline is None or p.completes(now) <= deadline
            ),
            key=lambda item: item[:2],
        )
        best = next((i for i in on_time if self.keeps(deadline or i[2].completes(now), i[2])), None)
        if best is None:
            return False
        per_image, _, plan = best
        within = self.within_budget(per_image)
        label = REQUESTED if within else CHEAPEST
        self.add(label, plan, deadline or plan.completes(now), per_image)
        return within

    def earliest_in_budget(self, plans: list[Plan]) -> None:
        """Where the terms cannot both be met: the earliest plan within the budget (after the
        deadline: one on time and within budget would have been ``requested``), promised
        when it completes."""
        if self.budget_micros is None:
            return  # no budget: the earliest at any price is the answer
        now, deadline = self.now, self.deadline
        affordable = [
            (self.price(p, p.completes(now)), p)
            for p in plans
            if deadline is None or p.completes(now) > deadline
        ]
        affordable = [(c, p) for c, p in affordable if self.within_budget(c)]
        for per_image, plan in sorted(affordable, key=lambda cp: (cp[1].seconds, cp[0])):
            if self.keeps(plan.completes(now), plan):
                self.add(EARLIEST_IN_BUDGET, plan, plan.completes(now), per_image)
                return

    def earliest(self, plans: list[Plan]) -> None:
        """Offer the earliest plan at any price, promised when it completes: only where it
        completes before the answer to the request (else that answer is the earliest), and
        never priced below it (a faster promise leaves the dispatch less room; and the price
        on time stays that of the answer, which only falls as the market grows)."""
        now = self.now
        answer = next((i for i in self.offered if i.label in (REQUESTED, CHEAPEST)), None)
        for plan in sorted(plans, key=lambda p: (p.seconds, p.cost_micros, p.offer.offer_id)):
            by = plan.completes(now)
            if answer is not None and by >= answer.by:
                return
            if self.keeps(by, plan):
                per_image = self.price(plan, by)
                floor = 0 if answer is None else answer.per_image
                self.add(EARLIEST, plan, by, max(per_image, floor))
                return

    def waits(self, plans: list[Plan]) -> None:
        """Offer "cheaper if you can wait" options, each only where cheaper than every option
        already given."""
        cheapest = min((i.per_image for i in self.offered), default=None)
        plan = min(plans, key=lambda p: (p.cost_micros, p.seconds))
        for days, label in WAIT_OPTIONS:
            by = self.now + timedelta(days=days)
            if self.deadline is not None and by <= self.deadline:
                continue  # the requested window is already this long
            per_image = self.price(plan, by)
            if cheapest is not None and per_image >= cheapest:
                continue  # not cheaper than an option already given
            if self.keeps(by, plan):
                self.add(label, plan, by, per_image)
                cheapest = per_image

    def extremes(self, plans: list[Plan]) -> None:
        """Where neither term can be met by any option (no plan on time, none within budget,
        even by waiting), say how far off each is: the earliest option becomes ``fastest``
        (the soonest finish, at its price), and ``lowest_price`` is the lowest price at the
        earliest it can be had: the cheapest plan promised when it completes, or the cheapest
        "wait" option where waiting is cheaper still (which it then replaces)."""
        if self.deadline is None or self.budget_micros is None:
            return  # a term not asked for never fails
        if any(self.meets_deadline(i) or self.within_budget(i.per_image) for i in self.offered):
            return
        offered = self.offered
        self.offered = [_relabel(i, FASTEST) if i.label == EARLIEST else i for i in offered]
        plan = min(plans, key=lambda p: (p.cost_micros, p.seconds))
        by = plan.completes(self.now)
        lowest = [i for i in self.offered if i.label.startswith(WAIT_PREFIX)]
        if self.keeps(by, plan):
            lowest.append(_Offered(LOWEST_PRICE, plan, by, self.price(plan, by)))
        if not lowest:
            return
        best = min(lowest, key=lambda i: (i.per_image, i.by))
        self.offered = [i for i in self.offered if i is not best]
        self.add(LOWEST_PRICE, best.plan, best.by, best.per_image)


@dataclass(frozen=True)
class _Offered:
    """An option before it is written out: its label, the plan it was priced on, its promise
    and its price per image (micro-dollars, margin included)."""

    label: str
    plan: Plan
    by: datetime
    per_image: int


def _relabel(item: _Offered, label: str) -> _Offered:
    return _Offered(label, item.plan, item.by, item.per_image)


def _distinct(offered: list[_Offered]) -> list[_Offered]:
    """Each trade-off once: an option that another finishes as early (or earlier) at as low
    (or lower) a price is left out; of two identical ones, the one whose label comes first in
    :data:`PRIORITY` is kept. The answer to the request (``requested`` / ``cheapest``) is
    always kept: it is what the customer asked for, even when a faster option costs the same.
    """
    ranked = sorted(offered, key=lambda i: PRIORITY[i.label])
    kept = []
    for rank, item in enumerate(ranked):
        beaten = any(
            other.by <= item.by
            and other.per_image <= item.per_image
            and (other.by < item.by or other.per_image < item.per_image or j < rank)
            for j, other in enumerate(ranked)
            if other is not item
        )
        if item.label in (REQUESTED, CHEAPEST) or not beaten:
            kept.append(item)
    return kept
