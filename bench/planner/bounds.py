"""Hindsight bounds: the cheapest way to serve a set of orders knowing everything in advance.

Knowing every order (arrival, deadline, job, images), every price and every pool's
availability, what is the least a schedule can cost that delivers every order by its
deadline? We write it as a time-indexed mixed-integer program over slots of ``slot_s``
seconds (``slot_s`` ≥ every start-up time) and solve it with HiGHS (``scipy.optimize.milp``):

Machine types ``k``: every offer on-demand, and every offer with a pool interruptible (its
bid price, usable only while its pool has capacity). Per type ``k`` and slot ``t``:

* ``m[k,t]`` ∈ ℤ≥0: machines of type ``k`` alive at some point of slot ``t``;
* ``s[k,t]`` ∈ ℤ≥0: machines started (rented) in slot ``t``;
* ``u[k,t]`` ≥ 0: seconds billed in slot ``t`` (all machines of the type together);
* ``y[o,k,t]`` ≥ 0: images of order ``o`` rendered on type ``k`` in slot ``t``, for the slots
  that overlap the order's window ``[arrival, deadline]`` and the types that can run its job.

Minimise ``Σ price_k(t) · u[k,t] + Σ_{k on-demand} price_k · TEARDOWN_S · s[k,t]`` subject to

1. ``Σ_{k,t} y[o,k,t] = images_o`` (every order delivered in its window);
2. ``m[k,t] ≤ m[k,t-1] + s[k,t]`` (a machine alive in ``t`` was alive in ``t-1`` or started);
3. ``u[k,t] ≥ Δ·(m[k,t+1] − s[k,t+1] − s[k,t])`` (a machine alive in ``t+1`` that was not
   started in ``t`` or ``t+1`` was alive all of slot ``t``, and is billed for it);
4. ``u[k,t] ≤ avail_k(t)·m[k,t]`` (``avail`` = seconds of the slot the pool has capacity;
   ``Δ`` for on-demand);
5. ``render[k,t] = Σ_o y[o,k,t] / rate(k, o) ≤ u[k,t]``, and start-ups are billed:
   ``Σ_{t'≤t} (render − u)[k,t'] + startup_k · Σ_{t'<t} s[k,t'] ≤ 0`` for every ``t``
   (a machine started before slot ``t`` has finished its start-up by the end of ``t``,
   as ``startup ≤ Δ``), and over the whole horizon with every start;
6. ``y[o,k,t] · max(1 / (rate(k, o) · overlap(o, t)), 1 / images_o) ≤ m[k,t]``: a machine
   renders an order only within the part of the slot inside the order's window, and any
   rendering at all needs a whole machine alive (``y ≤ images_o · m``; this cut is what keeps
   the LP relaxation from running a small order on a sliver of a machine with a sliver of its
   start-up).
7. ``Σ_{k of offer h} u[k,t] ≤ Δ`` for every offer ``h``: the simulated market lists each
   offer as one host, rented by one machine at a time (on-demand or interruptible, never both),
   so the machines of one offer are held one after another and bill at most a slot per slot;
8. ``Σ_{k of offer h} y[o,k,t] / rate(k, o) ≤ overlap(o, t)``: one host renders an order only
   inside the part of the slot that lies in the order's window (constraint 6 alone would let
   two machines of the host, one after the other, each use the whole overlap).
9. ``s[k,t] = 0`` in the slots during which offer ``k`` is not listed at all (generated
   markets list and delist offers; a machine is rented only while its offer is listed, and a
   rented host stays rented).
10. ``u[k,t] ≤ avail_k(t)`` for every interruptible type (with 7): its one host bills at
   most the seconds of the slot its pool has capacity, whatever number of its machines live
   in the slot one after another (4 alone let three of them, each restarted, bill three times
   the pool's capacity: on a tight instance the optimum rendered half its work on capacity
   that was not there, and came out at 0.54 of this bound).

**Prices.** An interruptible machine pays the bid at the moment it is rented for its whole
life (the simulator's rule; a cycling bid changes once an hour), and it lives inside one run
of its pool's capacity (a drop preempts every machine of the pool). A second billed at ``τ``
therefore costs at least the lowest bid between the start of ``τ``'s run (or 0) and ``τ``;
``price_k(t)`` is the lowest of those over the seconds of slot ``t`` with capacity, never
above what any machine billed in the slot pays. (Pricing every slot at the trough, as this
bound did before, let the optimum rent at the afternoon's peak for the price of the night.)
On-demand prices do not move.

**Why it is a lower bound on what any dispatcher pays in the simulator** for schedules that
meet every deadline: map a simulated schedule to the program by keeping only the machines that
rendered something (the others cost ≥ 0): ``m``, ``s`` count them, ``u`` is their billed time
in each slot without the teardown (which only on-demand machines surely pay), ``y`` what they
rendered. Every constraint holds (10: an interruptible machine lives only while its pool has
capacity, as a drop preempts it, and one host's machines follow one another), and the
objective is at most the simulated cost, which adds billing increments, teardowns of
interruptible machines, lost batches, idle time at the ends of a machine's life and machines
that never rendered. Constraint 5 needs ``startup ≤ Δ``.

**The LP relaxation** (``integral=False``) drops the integrality of ``m`` and ``s``: a
fraction of a machine may then run, which makes start-ups nearly free; it is a lower bound on
the MILP and so on every schedule. ``python -m bench.planner`` reports the LP on full runs
(too big for the MILP) and the MILP's exact optimum on small instances (≤ 20 orders, one day).

Without constraint 7 (``one_host_per_offer=False``: an offer as a pool of identical machines)
types dominated by another of the same mode and pool (price, start-up and every job's rate no
better) are left out first: any schedule on a dominated type can move to its dominator for no
more cost, so the optimum does not change. With it, no type is left out: the dominator's one
host may be busy. Leaving 7 out gives a weaker bound (it may rent the cheapest card many times
over at once, which the market does not allow): on the small tight instances the optimum it
reports was about a third below the one with hosts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from bench.planner.simulated_market import PRICE_STEP_S, Market
from subconscious.models import JobSpec, Offer
from subconscious.planner.costs import TEARDOWN_S, Rates, price_micros_per_hour, usable

DISP = False  # HiGHS's log, for looking into a slow solve
MIP_GAP = 1e-4  # relative gap at which HiGHS calls a MILP solved
DAY_HOURS = 24  # a cycling bid repeats daily


@dataclass(frozen=True)
class Demand:
    """An order as the bound sees it."""

    order_id: str
    job: JobSpec
    images: int
    arrival_s: float
    deadline_s: float


@dataclass(frozen=True)
class Bound:
    cost_micros: float  # the objective (a lower bound in micro-dollars)
    optimal: bool  # solved to optimality (MILP: within mip_rel_gap)
    dual_micros: float  # the solver's proven lower bound (= cost when optimal)
    integral: bool
    seconds: float
    variables: int
    rows: int
    types: int
    message: str


@dataclass(frozen=True)
class _Type:
    offer: Offer
    interruptible: bool
    price_per_s: float  # micros; interruptible: the trough bid
    pool: str | None
    peak_per_s: float  # micros; the dearest bid of a cycling price (= price_per_s without)


def _job_key(job: JobSpec) -> tuple[str, int, int, int]:
    return (job.model_family.value, job.width, job.height, job.steps)


def machine_types(
    market: Market, rates: Rates, jobs: Sequence[JobSpec], *, prune: bool = True
) -> list[tuple[_Type, dict[tuple[str, int, int, int], float]]]:
    """Every (offer, mode) with its rate per job kind; with ``prune``, dominated types left
    out (valid only where a type may run any number of machines at once)."""
    kinds = {_job_key(j): j for j in jobs}
    out: list[tuple[_Type, dict[tuple[str, int, int, int], float]]] = []
    for listed in market.offers:
        modes = [(listed.on_demand, False)]
        if listed.pool is not None:
            modes.append((listed.spot, True))
        for offer, interruptible in modes:
            speed = {
                key: rates.speed(offer, job).images_per_s if usable(offer, job) else 0.0
                for key, job in kinds.items()
            }
            if not any(speed.values()):
                continue
            price = price_micros_per_hour(offer, interruptible) / 3600
            pool = listed.pool.name if interruptible and listed.pool is not None else None
            peak = max(_bids_per_s(market, offer.offer_id, DAY_HOURS)) if interruptible else price
            out.append((_Type(offer, interruptible, price, pool, peak), speed))

    def covers(a: _Type, b: _Type) -> bool:  # same mode, a's availability includes b's
        return a.interruptible == b.interruptible and a.pool == b.pool

    def dominates(a: tuple[_Type, dict[tuple[str, int, int, int], float]], b: tuple[
        _Type, dict[tuple[str, int, int, int], float]
    ]) -> bool:  # fmt: skip
        (ta, ra), (tb, rb) = a, b
        if not covers(ta, tb):
            return False
        no_worse = (
            ta.peak_per_s <= tb.price_per_s  # dearer nowhere, whatever the hour
            and ta.offer.startup_s <= tb.offer.startup_s
            and all(ra[key] >= rb[key] for key in rb)
        )
        if not no_worse:
            return False
        same = (
            ta.price_per_s == tb.price_per_s
            and ta.offer.startup_s == tb.offer.startup_s
            and all(ra[key] == rb[key] for key in rb)
            and ta.pool == tb.pool
            and ta.interruptible == tb.interruptible
        )
        name_a = (ta.offer.offer_id, ta.interruptible)
        return not same or name_a < (tb.offer.offer_id, tb.interruptible)

    if not prune:
        return out
    return [b for b in out if not any(a is not b and dominates(a, b) for a in out)]


def _bids_per_s(market: Market, offer_id: str, hours: int) -> list[float]:
    """The interruptible bid (micro-dollars a second) a machine of the offer rented in each
    of the first ``hours`` hours pays, as the simulator charges it."""
    return [
        price_micros_per_hour(market.offer_at(offer_id, h * PRICE_STEP_S, True), True) / 3600
        for h in range(hours)
    ]


def slot_prices(market: Market, kind: _Type, slots: int, slot_s: float) -> list[float]:
    """``price_k(t)`` for every slot (micro-dollars a second). On-demand: its price. An
    interruptible machine pays the bid of the moment it was rented, and lives only inside one
    run of its pool's capacity (a drop preempts every machine of the pool): a second billed at
    ``τ`` costs at least the lowest bid since the start of ``τ``'s run (or 0), and the slot's
    price is the lowest of those over the slot's seconds with capacity."""
    listed = market.by_id[kind.offer.offer_id]
    pool = listed.pool
    if not kind.interruptible or pool is None:
        return [kind.price_per_s] * slots
    end_s = slots * slot_s
    bids = _bids_per_s(market, kind.offer.offer_id, math.ceil(end_s / PRICE_STEP_S))
    prices = [math.inf] * slots
    run_low = math.inf  # the lowest bid since the current run started
    last_hour = -1  # the last hour folded into run_low
    for tick in range(math.ceil(end_s / pool.gap_s)):
        start, stop = tick * pool.gap_s, min((tick + 1) * pool.gap_s, end_s)
        if not pool.available_at(start):
            run_low, last_hour = math.inf, -1
            continue
        hour = math.ceil(stop / PRICE_STEP_S) - 1  # the last hour a rent can fall in
        first = int(start // PRICE_STEP_S) if last_hour < 0 else last_hour + 1
        for h in range(first, hour + 1):
            run_low = min(run_low, bids[h])
        last_hour = max(last_hour, hour)
        for t in range(int(start // slot_s), min(slots, math.ceil(stop / slot_s))):
            prices[t] = min(prices[t], run_low)
    # a slot with no capacity bills nothing (constraint 4); any price will do
    return [kind.price_per_s if math.isinf(p) else p for p in prices]


def solve(
    demands: Sequence[Demand],
    market: Market,
    rates: Rates,
    *,
    slot_s: float = 900.0,
    integral: bool = True,
    time_limit_s: float = 60.0,
    window_rows: bool = True,
    one_host_per_offer: bool = True,
) -> Bound:
    started = time.perf_counter()
    demands = [d for d in demands if d.images > 0]
    if not demands:
        return Bound(0.0, True, 0.0, integral, 0.0, 0, 0, 0, "no demand")
    types = machine_types(market, rates, [d.job for d in demands], prune=not one_host_per_offer)
    if any(t.offer.startup_s > slot_s for t, _ in types):
        raise ValueError("slot_s must be at least every start-up time")
    program = _Program(demands, types, slot_s)
    cost, integrality = program.objective(market, integral)
    program.demand_rows(window_rows)  # 1 and 6
    program.machine_rows(market)  # 2 to 5
    if one_host_per_offer:
        program.host_rows()  # 7 and 8
    result = milp(
        cost,
        constraints=program.constraint(),
        integrality=integrality,
        bounds=Bounds(0, program.upper_bounds(market, one_host_per_offer)),
        options={
            "time_limit": time_limit_s,
            "mip_rel_gap": MIP_GAP,
            "presolve": True,
            "disp": DISP,
        },
    )
    seconds = time.perf_counter() - started
    n_vars, n_rows, n_types = program.n_vars, len(program.lower), len(types)
    if result.x is None:
        return Bound(math.nan, False, math.nan, integral, seconds, n_vars, n_rows,
                     n_types, str(result.message))  # fmt: skip
    value = float(result.fun)
    dual = getattr(result, "mip_dual_bound", None)
    dual_value = value if dual is None or not integral else float(dual)
    return Bound(
        cost_micros=value,
        optimal=result.status == 0,
        dual_micros=dual_value,
        integral=integral,
        seconds=seconds,
        variables=n_vars,
        rows=n_rows,
        types=n_types,
        message=str(result.message),
    )


class _Program:
    """The mixed-integer program of the module docstring, built row by row. Variable layout:
    per (type k, slot t): m, s, u; then the y's, one per (order, type, slot) that can render."""

    def __init__(
        self,
        demands: Sequence[Demand],
        types: list[tuple[_Type, dict[tuple[str, int, int, int], float]]],
        slot_s: float,
    ) -> None:
        self.demands = demands
        self.types = types
        self.slot_s = slot_s
        self.slots = max(1, math.ceil(max(d.deadline_s for d in demands) / slot_s))
        self.n_machine_vars = len(types) * self.slots * 3
        # (order, type, slot, 1/rate, overlap)
        self.y_index: list[tuple[int, int, int, float, float]] = [
            (o, k, t, 1.0 / speed[_job_key(d.job)], overlap)
            for o, d in enumerate(demands)
            for k, (_, speed) in enumerate(types)
            if speed[_job_key(d.job)] > 0
            for t, overlap in self._overlaps(d)
        ]
        self.n_vars = self.n_machine_vars + len(self.y_index)
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.per_type_slot: dict[tuple[int, int], list[tuple[int, float]]] = {}
        self.available: dict[int, list[float]] = {}  # per type (``_available``)

    def _overlaps(self, d: Demand) -> list[tuple[int, float]]:
        """The slots that overlap the order's window, with how many seconds they overlap."""
        slot_s = self.slot_s
        first = max(0, math.floor(d.arrival_s / slot_s))
        last = min(self.slots - 1, math.ceil(d.deadline_s / slot_s) - 1)
        overlaps = [
            (t, min(d.deadline_s, (t + 1) * slot_s) - max(d.arrival_s, t * slot_s))
            for t in range(first, last + 1)
        ]
        return [(t, overlap) for t, overlap in overlaps if overlap > 0]

    def index_m(self, k: int, t: int) -> int:
        return (k * self.slots + t) * 3

    def row(self, entries: Sequence[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(self.lower)
        for c, v in entries:
            self.rows.append(r)
            self.cols.append(c)
            self.vals.append(v)
        self.lower.append(lo)
        self.upper.append(hi)

    def objective(self, market: Market, integral: bool) -> tuple[np.ndarray, np.ndarray]:
        """Billed seconds at the type's price in the slot, on-demand teardowns; m and s
        integral."""
        cost = np.zeros(self.n_vars)
        integrality = np.zeros(self.n_vars, dtype=np.int8)
        for k, (kind, _) in enumerate(self.types):
            prices = slot_prices(market, kind, self.slots, self.slot_s)
            for t in range(self.slots):
                base = self.index_m(k, t)
                cost[base + 2] = prices[t]
                if not kind.interruptible:
                    cost[base + 1] = kind.price_per_s * TEARDOWN_S
                if integral:
                    integrality[base] = integrality[base + 1] = 1
        return cost, integrality

    def demand_rows(self, window_rows: bool) -> None:
        """1. every order delivered; 6. (with ``window_rows``) a machine alive to render."""
        per_order: list[list[tuple[int, float]]] = [[] for _ in self.demands]
        for j, (o, k, t, inv_rate, overlap) in enumerate(self.y_index):
            col = self.n_machine_vars + j
            per_order[o].append((col, 1.0))
            self.per_type_slot.setdefault((k, t), []).append((col, inv_rate))
            if window_rows:
                images = self.demands[o].images
                entries = [(col, max(inv_rate / overlap, 1.0 / images)), (self.index_m(k, t), -1.0)]
                self.row(entries, -math.inf, 0.0)
        for o, d in enumerate(self.demands):
            self.row(per_order[o], d.images, d.images)

    def machine_rows(self, market: Market) -> None:
        """2 to 5 for every type: flow, billing, availability, rendering and start-ups."""
        for k, (kind, _) in enumerate(self.types):
            cumulative: list[tuple[int, float]] = []
            started_before: list[tuple[int, float]] = []
            for t, avail in enumerate(self._available(market, k)):
                self._slot_rows(k, t, avail, cumulative)
                self.row([*cumulative, *started_before], -math.inf, 0.0)
                started_before.append((self.index_m(k, t) + 1, float(kind.offer.startup_s)))
            self.row([*cumulative, *started_before], -math.inf, 0.0)

    def _available(self, market: Market, k: int) -> list[float]:
        """Per slot, the seconds type ``k`` can bill: its pool's capacity when interruptible
        (read once per type: rows 4 and 10 both use it), the whole slot on-demand."""
        if k not in self.available:
            kind = self.types[k][0]
            pool = market.by_id[kind.offer.offer_id].pool if kind.interruptible else None
            slots = [(t * self.slot_s, (t + 1) * self.slot_s) for t in range(self.slots)]
            self.available[k] = [
                self.slot_s if pool is None else pool.available_seconds(a, b) for a, b in slots
            ]
        return self.available[k]

    def _slot_rows(self, k: int, t: int, avail: float, cumulative: list[tuple[int, float]]) -> None:
        """2 to 5 for type ``k`` in slot ``t``; ``cumulative`` gains the slot's render − u."""
        inf, slot_s = math.inf, self.slot_s
        m, s, u = self.index_m(k, t), self.index_m(k, t) + 1, self.index_m(k, t) + 2
        # 2. flow
        previous = [(self.index_m(k, t - 1), -1.0)] if t else []
        self.row([(m, 1.0), (s, -1.0), *previous], -inf, 0.0)
        # 3. billed while alive all slot
        if t + 1 < self.slots:
            m2, s2 = self.index_m(k, t + 1), self.index_m(k, t + 1) + 1
            self.row([(u, 1.0), (m2, -slot_s), (s2, slot_s), (s, slot_s)], 0.0, inf)
        # 4. availability
        self.row([(u, 1.0), (m, -avail)], -inf, 0.0)
        # 5. render within billed time, start-ups billed
        render = self.per_type_slot.get((k, t), [])
        self.row([*render, (u, -1.0)], -inf, 0.0)
        cumulative += [*render, (u, -1.0)]

    def host_rows(self) -> None:
        """7. one host per offer: its machines are held one after another; 8. and it renders
        one order only inside its window: at most the overlap per slot."""
        by_offer: dict[str, list[int]] = {}
        for k, (kind, _) in enumerate(self.types):
            by_offer.setdefault(kind.offer.offer_id, []).append(k)
        for kinds in by_offer.values():
            for t in range(self.slots):
                self.row([(self.index_m(k, t) + 2, 1.0) for k in kinds], -math.inf, self.slot_s)
        per_host_order: dict[tuple[str, int, int], list[tuple[int, float]]] = {}
        overlap_of: dict[tuple[str, int, int], float] = {}
        for j, (o, k, t, inv_rate, overlap) in enumerate(self.y_index):
            host = (self.types[k][0].offer.offer_id, o, t)
            per_host_order.setdefault(host, []).append((self.n_machine_vars + j, inv_rate))
            overlap_of[host] = overlap
        for host, entries in per_host_order.items():
            self.row(entries, -math.inf, overlap_of[host])

    def upper_bounds(self, market: Market, one_host_per_offer: bool) -> np.ndarray:
        """9. A machine of an offer starts only in a slot during which the offer is listed
        (generated markets list and delist offers; a rented host stays rented): ``s = 0``
        in slots the offer is delisted throughout. 10. (with one host per offer) an
        interruptible host bills at most the seconds of the slot its pool has capacity."""
        upper = np.full(self.n_vars, np.inf)
        for k, (kind, _) in enumerate(self.types):
            listed = market.by_id[kind.offer.offer_id].listed
            if one_host_per_offer and kind.interruptible:
                for t, avail in enumerate(self._available(market, k)):
                    upper[self.index_m(k, t) + 2] = avail
            if listed is None:
                continue
            for t in range(self.slots):
                if listed.available_seconds(t * self.slot_s, (t + 1) * self.slot_s) <= 0:
                    upper[self.index_m(k, t) + 1] = 0.0
        return upper

    def constraint(self) -> LinearConstraint:
        shape = (len(self.lower), self.n_vars)
        matrix = coo_array((self.vals, (self.rows, self.cols)), shape=shape).tocsr()
        return LinearConstraint(matrix, np.array(self.lower), np.array(self.upper))
