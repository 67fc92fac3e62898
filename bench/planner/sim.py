"""A discrete-event market simulator that runs the real quote and dispatch code.

Simulated clock, in seconds after ``START``. Events, in this order when they fall at the same
instant: a batch finishes, a machine becomes ready, a pool loses capacity (preemption), an order
arrives, a dispatch tick.

* **Arrival.** Without given acceptances the customer asks the real quote
  (:func:`bench.planner.quoting.quote`, timed) at that instant, with the offers then listed and
  the open orders as the backlog, and accepts or declines (:func:`quoting.choose`). With given
  acceptances (the baselines replay the policy run's) the same orders are accepted with the
  same promises, so every dispatcher serves the same work. The accepted option's
  ``completes_at`` is the order's deadline from then on.
* **Dispatch tick**, every 60 s while anything is open or live: the dispatcher sees a
  :class:`PlanState` (open orders with the images not yet rendered, live machines, the offers
  listed now, the rates, the limits) and its decisions take effect at once. A ``Rent`` of an
  offer already rented, or interruptible while its pool has no capacity, is refused and
  counted in ``invalid_decisions``; so is a rent of an offer not listed then (generated
  markets list and delist offers). An interruptible machine pays the bid listed at its rent.
* **Machines.** Billed from the rent; ready after the offer's ``startup_s``; then render batch by
  batch, each time taking the open order with the earliest deadline that the card can run
  (``usable``), ``min(speed.batch, images not yet taken)`` images at ``rates.speed(offer,
  job).images_per_s`` (times the machine's :class:`SpeedError` draw: 1 unless the run says the
  model is wrong). Several machines may share an order. A machine that a baseline rented
  for one order renders only that order and is released when it is done.
* **Release**: the batch in flight is lost (its images go back to the order) and billing runs
  ``TEARDOWN_S`` longer. **Preemption** (the machine's pool loses capacity): the batch in flight
  is lost and billing stops at that instant.
* **Cost**: ``cost_for(provider, price, held seconds)`` per machine (the provider's billing
  increment). Each machine's cost is split over orders pro rata to the seconds it rendered
  each (lost batches included); a machine that rendered nothing is split over the orders open
  when it was rented, pro rata to their images left (remainders to the earliest deadline).
  AWS's cost of serving (:mod:`bench.planner.aws`) is split the same way per machine, and
  each order adds its images' part. An order is **over quote** when its GPU share plus its
  AWS cost exceeds the accepted option's total; it is
  **on time** when its last image is done by the accepted ``completes_at``.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.planner.aws import serving_micros
from bench.planner.quoting import Acceptance, accept, choose, timed_quote
from bench.planner.simulated_market import Market
from bench.planner.workloads import OrderSpec
from subconscious.catalogue import canonical
from subconscious.models import Constraints, Offer
from subconscious.models.spot import SpotOutlook
from subconscious.money import MICROS_PER_USD
from subconscious.planner.costs import (
    TEARDOWN_S,
    Rates,
    cost_for,
    price_micros_per_hour,
    usable,
)
from subconscious.planner.forecast import Tally
from subconscious.planner.policy import (
    Decision,
    Limits,
    LiveMachine,
    OpenOrder,
    PlanState,
    Release,
    Rent,
)
from subconscious.planner.preemption import Spell, observed_rate

START = datetime(2026, 11, 26, tzinfo=UTC)
TICK_S = 60
# After the last requested deadline the simulation runs this long at most (late work).
OVERRUN_S = 3 * 24 * 3600

_BATCH_DONE, _READY, _DROP, _ARRIVAL, _TICK = range(5)
# The days of market history the dispatch's outlook holds when a run begins (the settings'
# forecast_days).
OUTLOOK_DAYS = 7


@dataclass(frozen=True)
class DedicatedRent:
    """A baseline's rent of a machine that renders one order only, released when it is done."""

    offer: Offer
    interruptible: bool
    reason: str
    order_id: str


SimDecision = Decision | DedicatedRent
Dispatcher = Callable[[PlanState], Sequence[SimDecision]]


@dataclass
class SimOrder:
    spec: OrderSpec
    acceptance: Acceptance
    unassigned: int
    done: int = 0
    done_at: float | None = None
    allocated_micros: int = 0  # GPU: its share of the machines' bills
    aws_micros: int = 0  # AWS: its share of the machines' serving cost, and its images'

    @property
    def order_id(self) -> str:
        return self.spec.order_id

    @property
    def images(self) -> int:
        return self.spec.images

    @property
    def left(self) -> int:
        return self.images - self.done

    @property
    def deadline_s(self) -> float:
        return self.acceptance.deadline_s

    @property
    def on_time(self) -> bool:
        return self.done_at is not None and self.done_at <= self.deadline_s

    @property
    def cost_micros(self) -> int:
        """What serving the order cost us: GPU and AWS."""
        return self.allocated_micros + self.aws_micros

    @property
    def over_quote(self) -> bool:
        return self.cost_micros > self.acceptance.quoted_micros


@dataclass
class Batch:
    order_id: str
    images: int
    started: float
    token: int


@dataclass(frozen=True)
class SpeedError:
    """How far the machines' real speed is from the throughput model the policy plans with:
    each machine renders at ``factor × (1 + u × spread)`` of the model's speed, ``u`` its own
    draw in [-1, 1) (uniform, from its id and offer: the same run gives the same draws). The
    default is the model exactly, which flatters every dispatcher that plans with it: a
    dispatcher keeping no reserve meets its deadlines only because the simulator renders at
    the speeds it planned with.

    With ``learn``, as production does (``logic.throughput.learn_from_run``), each machine that
    rendered and was not preempted moves its card's factor in the model the quote and the
    dispatcher plan with (``ThroughputModel.with_correction``, by the share it rendered at) when
    it ends; without, every machine is its card's first (the worst case)."""

    factor: float = 1.0
    spread: float = 0.0
    learn: bool = True

    def __post_init__(self) -> None:
        if self.factor <= 0 or not 0 <= self.spread < 1:
            raise ValueError("speed factor must be > 0 and spread in [0, 1)")

    @property
    def exact(self) -> bool:
        return self.factor == 1.0 and not self.spread

    def of(self, machine_id: str, offer_id: str) -> float:
        if not self.spread:
            return self.factor
        u = zlib.crc32(f"{machine_id}/{offer_id}".encode()) / 2**31 - 1
        return self.factor * (1 + u * self.spread)


EXACT = SpeedError()


@dataclass
class SimMachine:
    machine_id: str
    offer: Offer
    interruptible: bool
    price_micros_per_hour: int
    rented_at: float
    ready_at: float
    reason: str
    dedicated: str | None = None
    open_at_rent: list[tuple[str, int]] = field(default_factory=list)
    ended_at: float | None = None
    end_reason: str = ""
    batch: Batch | None = None
    render_s: dict[str, float] = field(default_factory=dict)
    images_rendered: int = 0
    images_lost: int = 0
    cost_micros: int = 0
    held_s: float = 0.0
    speed_factor: float = 1.0  # its real speed ÷ the model's (``SpeedError``)

    @property
    def live(self) -> bool:
        return self.ended_at is None


@dataclass
class SimResult:
    orders: list[SimOrder]
    declined: list[OrderSpec]
    machines: list[SimMachine]
    quote_latencies_ms: list[float]
    invalid_decisions: int
    rent_reasons: Counter[str]
    end_s: float

    @property
    def acceptances(self) -> dict[str, Acceptance]:
        return {o.order_id: o.acceptance for o in self.orders}

    @property
    def cost_micros(self) -> int:
        return sum(m.cost_micros for m in self.machines)

    @property
    def images_delivered(self) -> int:
        return sum(o.done for o in self.orders)

    @property
    def cost_per_image_usd(self) -> float:
        delivered = self.images_delivered
        return self.cost_micros / MICROS_PER_USD / delivered if delivered else math.nan

    @property
    def deadline_attainment(self) -> float:
        if not self.orders:
            return math.nan
        return sum(o.on_time for o in self.orders) / len(self.orders)

    @property
    def late_orders(self) -> list[SimOrder]:
        return [o for o in self.orders if not o.on_time]

    @property
    def orders_over_quote(self) -> int:
        return sum(o.over_quote for o in self.orders)

    @property
    def preemptions(self) -> int:
        return sum(m.end_reason == "preempted" for m in self.machines)

    @property
    def images_lost(self) -> int:
        return sum(m.images_lost for m in self.machines)

    @property
    def aws_micros(self) -> int:
        return sum(o.aws_micros for o in self.orders)

    @property
    def quoted_micros(self) -> int:
        return sum(o.acceptance.quoted_micros for o in self.orders)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def allocate(total: int, weights: Sequence[tuple[str, float]]) -> dict[str, int]:
    """``total`` split pro rata to ``weights`` in whole units (largest remainder; ties go to
    the earlier entry), summing exactly to ``total``."""
    positive = [(key, w) for key, w in weights if w > 0]
    if not positive or total == 0:
        return {}
    whole = sum(w for _, w in positive)
    shares = {key: 0 for key, _ in positive}
    rests = []
    for index, (key, w) in enumerate(positive):
        exact = total * w / whole
        share = min(math.floor(exact), total)
        shares[key] += share
        rests.append((-(exact - share), index, key))
    missing = total - sum(shares.values())
    for _, _, key in sorted(rests)[:missing]:
        shares[key] += 1
    if missing < 0:  # float rounding overshot: take back from the last entries
        for key in reversed(list(shares)):
            take = min(shares[key], -missing)
            shares[key] -= take
            missing += take
    return shares


class Simulation:
    def __init__(
        self,
        orders: Sequence[OrderSpec],
        market: Market,
        rates: Rates,
        dispatcher: Dispatcher,
        *,
        acceptances: Mapping[str, Acceptance] | None = None,
        limits: Limits | None = None,
        speed_error: SpeedError = EXACT,
    ) -> None:
        self.speed_error = speed_error
        # how fast machines really render (the model, before any learning) and what the quote
        # and the dispatcher plan with (the same, corrected by finished machines if learning)
        self.truth = rates
        self.specs = sorted(orders, key=lambda o: (o.arrival_s, o.order_id))
        self.market = market
        self.rates = rates
        self.dispatcher = dispatcher
        self.given = acceptances
        self.limits = limits or Limits()
        self.now = 0.0
        self.orders: dict[str, SimOrder] = {}
        self.open: dict[str, SimOrder] = {}
        self.declined: list[OrderSpec] = []
        self.machines: list[SimMachine] = []
        self.taken: set[str] = set()
        self.latencies: list[float] = []
        self.invalid = 0
        self.rent_reasons: Counter[str] = Counter()
        self._listed: Counter[str] = Counter()  # the market's history (``_outlook``)
        self._bids: Counter[str] = Counter()
        # The outlook's typical bids and gaps, counted as the price refresh counts them, from
        # hourly snapshots whether or not the dispatch ticks (the refresh keeps writing).
        self._next_hour = -OUTLOOK_DAYS * 24
        self._hourly = Tally()
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._tick_pending = False
        self._arrivals_left = len(self.specs)
        last = max((o.deadline_s for o in self.specs), default=0.0)
        self.horizon = last + OVERRUN_S

    # ---- events

    def _push(self, t: float, kind: int, ref: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, kind, self._seq, ref))

    def run(self) -> SimResult:
        self._seed_events()
        while self._events:
            t, kind, _, ref = heapq.heappop(self._events)
            if t > self.horizon:
                break
            self.now = t
            self._handle(kind, ref)
            if not self._arrivals_left and not self.open and not self._live():
                break
        for machine in self._live():
            self._end(machine, "end of simulation", teardown=True)
        self._allocate()
        return SimResult(
            orders=list(self.orders.values()),
            declined=self.declined,
            machines=self.machines,
            quote_latencies_ms=self.latencies,
            invalid_decisions=self.invalid,
            rent_reasons=self.rent_reasons,
            end_s=self.now,
        )

    def _seed_events(self) -> None:
        """What is known from the start: every arrival, and every pool's capacity drops."""
        for spec in self.specs:
            self._push(spec.arrival_s, _ARRIVAL, spec)
        for pool in self.market.pools:
            for t in pool.drops_between(0.0, self.horizon):
                self._push(t, _DROP, pool.name)

    def _handle(self, kind: int, ref: object) -> None:
        if kind == _ARRIVAL:
            assert isinstance(ref, OrderSpec)
            self._arrive(ref)
        elif kind == _TICK:
            self._tick()
        elif kind == _BATCH_DONE:
            assert isinstance(ref, tuple)
            self._batch_done(*ref)
        elif kind == _READY:
            assert isinstance(ref, SimMachine)
            self._feed(ref)
        elif kind == _DROP:
            self._drop(str(ref))

    def _live(self) -> list[SimMachine]:
        return [m for m in self.machines if m.live]

    def _schedule_tick(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            self._push(math.ceil(self.now / TICK_S) * TICK_S, _TICK, None)

    # ---- arrivals and quotes

    def open_orders(self) -> list[OpenOrder]:
        return [
            OpenOrder(o.order_id, o.spec.job, o.left, at(o.deadline_s))
            for o in self.open.values()
            if o.left > 0
        ]

    def _arrive(self, spec: OrderSpec) -> None:
        self._arrivals_left -= 1
        if self.given is not None:
            acceptance = self.given.get(spec.order_id)
        else:
            constraints = Constraints(
                deadline=at(spec.deadline_s),
                max_price_per_image_usd=spec.max_price_per_image_usd,
            )
            offers = self.market.offers_at(self.now, self.taken)
            options, ms = timed_quote(
                spec.job,
                constraints,
                offers,
                at(self.now),
                self.rates,
                self.open_orders(),
                self.live_machines(),
                self.limits,
                outlook=self._history(),
                preemptions_per_hour=self._preemption_rate(),
            )
            self.latencies.append(ms)
            option = choose(options)
            acceptance = None if option is None else accept(spec.order_id, option, START, ms)
        if acceptance is None:
            self.declined.append(spec)
            return
        order = SimOrder(spec=spec, acceptance=acceptance, unassigned=spec.images)
        self.orders[spec.order_id] = order
        self.open[spec.order_id] = order
        self._schedule_tick()
        self._feed_all()

    # ---- dispatch

    def live_machines(self) -> list[LiveMachine]:
        return [
            LiveMachine(m.machine_id, m.offer, m.interruptible, at(m.ready_at))
            for m in self._live()
        ]

    def state(self) -> PlanState:
        offers = self.market.offers_at(self.now, self.taken)
        shares = self._outlook(offers)  # counts this tick's snapshot (and the hours up to now)
        history = self._hourly.outlook()
        return PlanState(
            now=at(self.now),
            orders=self.open_orders(),
            machines=self.live_machines(),
            offers=offers,
            rates=self.rates,
            limits=self.limits,
            preemptions_per_hour=self._preemption_rate(),
            spot_shares=shares,
            spot_bids=history.bids,
            spot_gaps=history.gaps,
        )

    def _outlook(self, offers: Sequence[Offer]) -> dict[str, float]:
        """The market's history as the price refresh keeps it (``planner.forecast``): per
        card, the share of the snapshots listing it in which it took bids, from an hourly
        snapshot over the ``OUTLOOK_DAYS`` before the run (the traces wrap, so the market
        then is the same generator's) and one a tick since; and (``_hourly``, for ``state``)
        its typical lowest bid and how long its capacity stayed gone, from one an hour."""
        if not self._listed:  # the history the price refresh has kept when the run begins
            for hour in range(-OUTLOOK_DAYS * 24, 0):
                self._snapshot(self.market.offers_at(hour * 3600.0))
        self._snapshot(offers)
        self._catch_up_hours()
        return {card: self._bids[card] / seen for card, seen in self._listed.items()}

    def _catch_up_hours(self) -> None:
        while self._next_hour * 3600.0 <= self.now:
            hour_s = self._next_hour * 3600.0
            self._hourly.add(at(hour_s), self.market.offers_at(hour_s))
            self._next_hour += 1

    def _history(self) -> SpotOutlook:
        """The outlook production's quote reads: the price refresh's, from hourly snapshots
        (``planner.forecast``) up to now."""
        self._catch_up_hours()
        return self._hourly.outlook()

    def _snapshot(self, offers: Sequence[Offer]) -> None:
        for card in {canonical(o.gpu) for o in offers}:
            self._listed[card] += 1
        for card in {canonical(o.gpu) for o in offers if o.min_bid_usd_per_hour is not None}:
            self._bids[card] += 1

    def _preemption_rate(self) -> float:
        """What our interruptible machines have lived through, as the dispatch computes it
        from its runs (``logic.dispatch.preemption_rate``)."""
        spells = (
            Spell(
                rented_at=at(m.rented_at),
                ended_at=None if m.ended_at is None else at(m.ended_at),
                preempted=m.end_reason == "preempted",
            )
            for m in self.machines
            if m.interruptible
        )
        return observed_rate(spells, at(self.now))

    def _tick(self) -> None:
        self._tick_pending = False
        for decision in self.dispatcher(self.state()):
            if isinstance(decision, Rent | DedicatedRent):
                self._rent(decision)
            elif isinstance(decision, Release):
                machine = next(
                    (m for m in self._live() if m.machine_id == decision.machine_id), None
                )
                if machine is None:
                    self.invalid += 1
                else:
                    self._end(machine, "released", teardown=True)
        if self.open or self._live():
            self._tick_pending = True
            self._push(self.now + TICK_S, _TICK, None)

    def _rent(self, decision: Rent | DedicatedRent) -> None:
        listed = self.market.by_id.get(decision.offer.offer_id)
        if (
            listed is None
            or decision.offer.offer_id in self.taken
            or not listed.listed_at(self.now)
        ):
            self.invalid += 1
            return
        if decision.interruptible and not self.market.spot_available(
            decision.offer.offer_id, self.now
        ):
            self.invalid += 1
            return
        offer = self.market.offer_at(listed.on_demand.offer_id, self.now, decision.interruptible)
        dedicated = decision.order_id if isinstance(decision, DedicatedRent) else None
        machine_id = f"m{len(self.machines):05d}"
        machine = SimMachine(
            machine_id=machine_id,
            offer=offer,
            interruptible=decision.interruptible,
            price_micros_per_hour=price_micros_per_hour(offer, decision.interruptible),
            rented_at=self.now,
            ready_at=self.now + offer.startup_s,
            reason=decision.reason,
            dedicated=dedicated,
            open_at_rent=[(o.order_id, o.left) for o in self._edf() if o.left > 0],
            speed_factor=self.speed_error.of(machine_id, offer.offer_id),
        )
        self.machines.append(machine)
        self.taken.add(offer.offer_id)
        kind = "interruptible" if decision.interruptible else "on-demand"
        self.rent_reasons[f"{decision.reason.split(':')[0]} ({kind})"] += 1
        self._push(machine.ready_at, _READY, machine)

    # ---- machines

    def _edf(self) -> list[SimOrder]:
        return sorted(self.open.values(), key=lambda o: (o.deadline_s, o.order_id))

    def _feed_all(self) -> None:
        for machine in self._live():
            self._feed(machine)

    def _feed(self, machine: SimMachine) -> None:
        if not machine.live or machine.batch is not None or self.now < machine.ready_at:
            return
        candidates = [
            o
            for o in self.open.values()
            if o.unassigned > 0
            and usable(machine.offer, o.spec.job)
            and machine.dedicated in (None, o.order_id)
        ]
        if not candidates:
            return
        order = min(candidates, key=lambda o: (o.deadline_s, o.order_id))
        speed = self.truth.speed(machine.offer, order.spec.job)
        images = min(speed.batch, order.unassigned)
        order.unassigned -= images
        self._seq += 1
        machine.batch = Batch(order.order_id, images, self.now, self._seq)
        seconds = speed.seconds(images) / machine.speed_factor
        self._push(self.now + seconds, _BATCH_DONE, (machine, self._seq))

    def _batch_done(self, machine: SimMachine, token: int) -> None:
        batch = machine.batch
        if not machine.live or batch is None or batch.token != token:
            return
        order = self.orders[batch.order_id]
        machine.batch = None
        machine.render_s[order.order_id] = (
            machine.render_s.get(order.order_id, 0.0) + self.now - batch.started
        )
        machine.images_rendered += batch.images
        order.done += batch.images
        if order.left == 0:
            order.done_at = self.now
            del self.open[order.order_id]
        if machine.dedicated is not None and machine.dedicated not in self.open:
            self._end(machine, "order done", teardown=True)
            return
        self._feed(machine)

    def _drop(self, pool_name: str) -> None:
        for machine in self._live():
            listed = self.market.by_id[machine.offer.offer_id]
            pool = listed.pool
            if machine.interruptible and pool is not None and pool.name == pool_name:
                self._end(machine, "preempted", teardown=False)

    def _end(self, machine: SimMachine, reason: str, *, teardown: bool) -> None:
        batch = machine.batch
        if batch is not None:
            order = self.orders[batch.order_id]
            order.unassigned += batch.images
            machine.images_lost += batch.images
            machine.render_s[order.order_id] = (
                machine.render_s.get(order.order_id, 0.0) + self.now - batch.started
            )
            machine.batch = None
        machine.ended_at = self.now
        machine.end_reason = reason
        held = self.now - machine.rented_at + (TEARDOWN_S if teardown else 0)
        machine.held_s = held
        machine.cost_micros = cost_for(machine.offer.provider, machine.price_micros_per_hour, held)
        self.taken.discard(machine.offer.offer_id)
        self._learn(machine)
        if batch is not None:
            self._feed_all()

    def _learn(self, machine: SimMachine) -> None:
        """The card's factor in the planning model moves by what this machine rendered at
        against what the planning model predicts now (the prior × the card's factor so far),
        as a finished run moves it in production; a preempted machine teaches nothing there
        (a run that ended in an error is not learned from), nor here."""
        error = self.speed_error
        preempted = machine.end_reason == "preempted"
        if error.exact or not error.learn or not machine.images_rendered or preempted:
            return
        gpu = machine.offer.gpu
        now = self.rates.model.correction(gpu).factor
        # the draw is against the true model, which may carry corrections of its own
        measured = Decimal(repr(machine.speed_factor)) * self.truth.model.correction(gpu).factor
        model = self.rates.model.with_correction(gpu, measured, now)
        self.rates = Rates(model, self.rates.worker)

    # ---- accounting

    def _allocate(self) -> None:
        for machine in self.machines:
            startup = min(machine.held_s, float(machine.offer.startup_s))
            aws = serving_micros(images=0, width=512, height=512, machine_seconds=machine.held_s,
                                 machines=1, startup_seconds=startup)  # fmt: skip
            for order_id, micros in self._split(machine, machine.cost_micros).items():
                self.orders[order_id].allocated_micros += micros
            for order_id, micros in self._split(machine, aws).items():
                self.orders[order_id].aws_micros += micros
        for order in self.orders.values():
            job = order.spec.job
            order.aws_micros += serving_micros(images=order.done, width=job.width,
                                               height=job.height, machine_seconds=0.0,
                                               machines=0)  # fmt: skip

    def _split(self, machine: SimMachine, micros: int) -> dict[str, int]:
        """A machine's ``micros`` over orders, pro rata to the seconds it rendered each; a
        machine that rendered nothing: over the orders open at its rent, by images left."""
        weights: Iterable[tuple[str, float]] = sorted(
            machine.render_s.items(),
            key=lambda kv: (self.orders[kv[0]].deadline_s, kv[0]),
        )
        shares = allocate(micros, list(weights))
        if not shares:
            shares = allocate(micros, [(k, float(v)) for k, v in machine.open_at_rent])
        return shares


def simulate(
    orders: Sequence[OrderSpec],
    market: Market,
    rates: Rates,
    dispatcher: Dispatcher,
    *,
    acceptances: Mapping[str, Acceptance] | None = None,
    limits: Limits | None = None,
    speed_error: SpeedError = EXACT,
) -> SimResult:
    return Simulation(
        orders,
        market,
        rates,
        dispatcher,
        acceptances=acceptances,
        limits=limits,
        speed_error=speed_error,
    ).run()


def usd(micros: int | float) -> Decimal:
    return Decimal(str(micros)) / MICROS_PER_USD
