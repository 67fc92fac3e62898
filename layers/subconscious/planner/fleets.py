"""The cheapest fleet that finishes a job by a deadline, found exactly, so that a market that
gains an offer can only quote lower.

Why exact. Picking fleets by a rule of thumb (the k offers cheapest per image) is not monotone:
a new, slower offer can push a faster one out of the fleet, and the quote for the same job goes
up because the market grew. Any rule that would pick a set of offers when that whole set is
the market can only be monotone if it finds the best fleet of every market, so this module
solves the problem outright — it is a knapsack (capacity against price under a machine cap),
made tractable by measuring rate in whole units, always rounded against us.

The model is the dispatch's own (:func:`subconscious.planner.policy.feasible`) for the order
alone, on-demand machines rented now:

* A fleet ``F`` whose machines are all ready by ``σ`` (dispatch latency + start-up) and whose
  calls are all shorter than ``γ`` (``max(tick, one batch)``) finishes ``N`` images by the
  window ``W`` when its summed rate ``R`` is at least
  ``R_min = N·W / ((W − σ)·(W·(1 − safety) − γ))``.
* Every machine is held for its start-up, the shared rendering time ``τ ≥ N/R`` and teardown,
  billed as its provider bills, plus what AWS charges for holding it (``costs.
  aws_machine_micros``): ``Σ cost_for(P_i, h_i) + aws(h_i)``, ``h_i = s_i + τ + teardown``;
  the job's images add AWS's per-image charges, the same for every fleet. ``τ`` is taken on a
  geometric grid below ``N/R_min`` (at most ``GRID − 1`` over what the fleet takes, for fleets
  up to about 7x the speed the deadline needs; faster ones are charged as that fast).
* Rates count in whole units per machine, rounded down: a 128th of the octave's lowest speed
  for machines ready at once (which depends on the job and the window, not on the market).
* Caps: at most ``max_machines``; the hourly cap is kept as ``Σ cost ≤ cap·(τ + teardown)``,
  which implies ``Σ P ≤ cap`` (each machine is held at least ``τ + teardown``; the cost
  counting AWS's charges per machine too, the cap is kept with that much to spare).

The result is the least of that conservative cost over *every* subset of the offers, so it is
never below what the fleet costs us, never late by the dispatch's own check, and it can only
fall when an offer is added (the thresholds ``σ`` and ``γ`` a larger market brings only add
choices). Offers dominated by ``max_machines`` others (dearer, slower, later, billed coarser,
with longer calls) are dropped first; that never changes the answer, and keeps a quote against
a thousand offers quick. numpy is imported on first use: the API's cold start does not pay it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from subconscious.models import JobSpec, Offer
from subconscious.money import MICROS_PER_USD
from subconscious.planner.costs import (
    BILLING_INCREMENT_S,
    DEFAULT_BILLING_INCREMENT_S,
    TEARDOWN_S,
    Rates,
    aws_images_micros,
    cost_for,
    price_micros_per_hour,
    usable,
)
from subconscious.planner.policy import DISPATCH_LATENCY_S, SAFETY_SHARE, TICK_S, Limits
from subconscious.planner.serving import (
    MACHINE_USD_FIXED,
    MACHINE_USD_PER_S,
    MACHINE_USD_PER_SLICE,
    RENDER_SLICE_S,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from numpy.typing import NDArray

# Fleet speeds are searched in OCTAVES octaves of what the deadline needs (1-2x, 2-4x, 4-8x);
# a faster fleet is charged the rendering time of one 8x as fast as needed.
OCTAVES = 3
# Within an octave, rate counts in units of (its lowest speed) / UNITS per machine, rounded
# down: a fleet of 8 machines loses at most 8 / UNITS of its rate to rounding.
UNITS = 128
# The cheapest offers, by price, whose single-machine costs bound the search.
PROBE = 32
# The thresholds on readiness and call length are rounded up to these: a market with a
# different start-up per offer still has a few dozen combinations, not hundreds.
SIGMA_STEP_S = 60
GAMMA_STEP_S = 15
# ... and rendering time is charged at STEPS speeds GRID apart: at most GRID − 1 (9 %) over
# the time the fleet takes.
STEPS = 8
GRID = 2.0 ** (1 / STEPS)
# AWS's charges per machine (planner/serving.py machine_usd) as floats for numpy
AWS_FIXED = float(MACHINE_USD_FIXED)
AWS_PER_S = float(MACHINE_USD_PER_S)
AWS_PER_SLICE = float(MACHINE_USD_PER_SLICE)


@dataclass(frozen=True)
class Fleet:
    offers: tuple[Offer, ...]  # cheapest per image first
    cost_micros: int  # what the fleet costs at most (start-ups, rendering, teardown, billing,
    # AWS's charges for its machines and the job's images)
    busy_s: float  # the rendering time it was charged for


class _Machine(NamedTuple):  # a thousand of them per quote: a tuple is quick to make
    offer: Offer
    rate: float  # images/s for this job
    ready_s: float  # dispatch latency + start-up
    guard_s: float  # max(tick, one batch)
    step_s: int  # billing increment
    price: int  # micro-dollars per hour, on-demand


def cheapest_fleet(
    job: JobSpec,
    offers: Sequence[Offer],
    rates: Rates,
    limits: Limits,
    window_s: float,
    *,
    below: float = math.inf,
) -> Fleet | None:
    """The cheapest on-demand fleet (one machine or several) that renders ``job`` within
    ``window_s`` seconds from now by the dispatch's feasibility check; None if none can.

    ``below``: what the caller can already have (the quote's best single machine, priced
    exactly). Only fleets that could cost less are looked for: none holding a machine whose
    start-up alone costs that much, and only one machine each when two start-ups and every
    image at the best price per image already cost that much. None if none could."""
    images = job.total_images
    machines = _machines(job, offers, rates, window_s)
    if not machines or images <= 0:
        return None
    # Every fleet pays the same AWS charges for the images themselves (added at the end), so
    # the pruning below compares what differs between fleets with ``below`` less that part;
    # against the whole of ``below`` it pruned almost nothing once quotes counted AWS.
    per_images = aws_images_micros(job, images)
    below -= per_images
    if math.isfinite(below) and _least_for_two(machines, images) >= below:
        limits = replace(limits, max_machines=1)
    # Thresholds from every offer, on coarse grids (a larger market only adds choices; a
    # threshold rounded up only makes the timing check stricter)
    sigmas = sorted({_up(m.ready_s, SIGMA_STEP_S) for m in machines})
    gammas = sorted({_up(m.guard_s, GAMMA_STEP_S) for m in machines})
    combos = [
        (sigma, gamma, _min_rate(images, window_s, sigma, gamma))
        for sigma in sigmas
        for gamma in gammas
        if sigma < window_s and window_s * (1 - SAFETY_SHARE) > gamma
    ]
    if not combos:
        return None
    # Any fleet holding a machine whose start-up and teardown alone cost more than some
    # machine's whole job can never be the cheapest: bound with the cheapest cards alone.
    cheap = sorted(machines, key=lambda m: (m.price, m.offer.offer_id))[:PROBE]
    bound = min(
        _Octave.of(cheap, combos, images, window_s, limits, 2.0**o).best_alone()
        for o in range(OCTAVES)
    )
    machines = [m for m in machines if _fixed(m) <= min(bound, below)]
    if not machines:
        return None
    machines = _undominated(machines, limits.max_machines)
    fleet = _solve(machines, combos, images, window_s, limits)
    if fleet is None:
        return None
    return replace(fleet, cost_micros=fleet.cost_micros + per_images)


def _up(value: float, step: int) -> float:
    return float(math.ceil(value / step) * step)


def _least_for_two(machines: list[_Machine], images: int) -> float:
    """No fleet of two or more can cost less: the two cheapest start-ups and teardowns, and
    every image at the best price per image of any machine."""
    if len(machines) < 2:
        return math.inf
    first, second = sorted(m.price * (m.offer.startup_s + TEARDOWN_S) / 3600 for m in machines)[:2]
    return first + second + images * min(m.price / m.rate for m in machines) / 3600


def _fixed(machine: _Machine) -> int:
    """What ``machine`` costs before it renders anything: start-up and teardown, billed."""
    return cost_for(machine.offer.provider, machine.price, machine.offer.startup_s + TEARDOWN_S)


def _machines(
    job: JobSpec, offers: Sequence[Offer], rates: Rates, window_s: float
) -> list[_Machine]:
    found = []
    for offer in offers:
        if not usable(offer, job):
            continue
        speed = rates.speed(offer, job)
        ready = float(DISPATCH_LATENCY_S + offer.startup_s)
        if ready >= window_s or speed.images_per_s <= 0:
            continue
        found.append(
            _Machine(
                offer=offer,
                rate=speed.images_per_s,
                ready_s=ready,
                guard_s=max(float(TICK_S), speed.batch_s),
                step_s=BILLING_INCREMENT_S.get(offer.provider, DEFAULT_BILLING_INCREMENT_S),
                price=price_micros_per_hour(offer, False),
            )
        )
    return found


def _min_rate(images: int, window_s: float, sigma: float, gamma: float) -> float:
    # 1e-9: the dispatch's float check must agree with ours at the boundary
    return (
        images
        * window_s
        / ((window_s - sigma) * (window_s * (1 - SAFETY_SHARE) - gamma))
        * (1 + 1e-9)
    )


def _undominated(machines: list[_Machine], cap: int) -> list[_Machine]:
    """Drop every machine that ``cap`` others dominate: some dominator is always free to take
    its place in a fleet of at most ``cap``, at no more cost and no less rate. (Billing
    increments 1, 60 and 3600 s divide each other, so a finer one never bills more.)"""
    import numpy as np

    if len(machines) <= cap:
        return machines
    machines = sorted(machines, key=lambda m: m.offer.offer_id)
    price = np.array([m.price for m in machines], dtype=np.int64)
    ready = np.array([m.ready_s for m in machines])
    step = np.array([m.step_s for m in machines], dtype=np.int64)
    rate = np.array([m.rate for m in machines])
    guard = np.array([m.guard_s for m in machines])
    order = np.arange(len(machines))  # machines come sorted by offer id: ties go to the first
    no_worse = (
        (price[:, None] <= price[None, :])
        & (ready[:, None] <= ready[None, :])
        & (step[:, None] <= step[None, :])
        & (rate[:, None] >= rate[None, :])
        & (guard[:, None] <= guard[None, :])
    )
    better = (
        (price[:, None] < price[None, :])
        | (ready[:, None] < ready[None, :])
        | (step[:, None] < step[None, :])
        | (rate[:, None] > rate[None, :])
        | (guard[:, None] < guard[None, :])
        | (order[:, None] < order[None, :])
    )
    dominators = (no_worse & better).sum(axis=0)
    return [m for m, count in zip(machines, dominators.tolist(), strict=True) if count < cap]


def _solve(
    machines: list[_Machine],
    combos: list[tuple[float, float, float]],
    images: int,
    window_s: float,
    limits: Limits,
) -> Fleet | None:
    """The least over every octave of fleet speed (1-2x, 2-4x, 4-8x what the deadline needs):
    each octave counts rate in its own units, so rounding costs the same share in each."""
    octaves = [
        _Octave.of(machines, combos, images, window_s, limits, 2.0**octave)
        for octave in range(OCTAVES)
    ]
    # A fleet of k costs at least k of the cheapest start-up and teardown, so none larger
    # than the best machine alone can pay for needs a place in the table.
    alone = min(o.best_alone() for o in octaves)
    fixed = min(_fixed(m) for m in machines)
    cap = limits.max_machines
    if math.isfinite(alone):
        cap = max(1, min(cap, int(alone // max(1, fixed))))
    best: tuple[float, _Octave, int, int] | None = None
    for octave in octaves:
        table = octave.table(cap)
        for c in range(len(combos)):
            for j in range(STEPS):
                value = float(table[c, j, 1:, octave.targets[c, j] :].min())
                if value <= octave.ceiling[c, j] and (best is None or value < best[0]):
                    best = (value, octave, c, j)
    if best is None:
        return None
    value, octave, c, j = best
    costs = [float(w[c, j]) for w in octave.costs]
    chosen = _chosen(octave.units, costs, cap, octave.top, int(octave.targets[c, j]))
    picked = sorted(
        (machines[i] for i in chosen), key=lambda m: (m.price / m.rate, m.offer.offer_id)
    )
    return Fleet(tuple(m.offer for m in picked), int(value), float(octave.busy[c, j]))


@dataclass(frozen=True)
class _Octave:
    """One octave of fleet speed: the units, targets and costs its knapsack works with."""

    targets: NDArray[np.int64]  # (C, J): units a fleet needs for each threshold and speed
    top: int
    busy: NDArray[np.float64]  # (C, J): the rendering time charged
    ceiling: NDArray[np.float64]  # (C, J): the most a fleet may cost under the hourly cap
    units: list[int]  # of each machine
    costs: list[NDArray[np.float64]]  # of each machine, (C, J), inf where not eligible

    @classmethod
    def of(
        cls,
        machines: list[_Machine],
        combos: list[tuple[float, float, float]],
        images: int,
        window_s: float,
        limits: Limits,
        base: float,
    ) -> _Octave:
        import numpy as np

        # the unit depends on the job and the window alone, never on which offers are
        # listed: the speed the deadline would need from machines ready at once
        unit = base * images / (window_s * (1 - SAFETY_SHARE) - TICK_S) / UNITS
        scale = base * np.array([GRID**j for j in range(STEPS)])
        r_min = np.array([r for _, _, r in combos])
        targets = np.ceil(r_min[:, None] * scale[None, :] / unit).astype(np.int64)
        top = int(targets.max())
        busy = images / (r_min[:, None] * scale[None, :])
        # Σ cost ≤ cap·(τ + teardown) / 3600 keeps Σ price ≤ cap
        ceiling = limits.max_spend_micros_per_hour * (busy + TEARDOWN_S) / 3600
        units = [min(top, math.floor(m.rate / unit)) for m in machines]
        costs = [_costs(m, combos, busy) for m in machines]
        return cls(targets, top, busy, ceiling, units, costs)

    def best_alone(self) -> float:
        """The least any one machine costs, where it is fast enough and under the cap."""
        import numpy as np

        best = np.inf
        for held, w in zip(self.units, self.costs, strict=True):
            ok = (held >= self.targets) & (w <= self.ceiling)
            if ok.any():
                best = min(best, float(w[ok].min()))
        return float(best)

    def table(self, cap: int) -> NDArray[np.float64]:
        import numpy as np

        combos, steps = self.targets.shape
        table = np.full((combos, steps, cap + 1, self.top + 1), np.inf)
        table[:, :, 0, 0] = 0.0
        for held, w in zip(self.units, self.costs, strict=True):
            if held > 0:
                _take(table, held, w, self.top)
        return table


def _costs(
    machine: _Machine, combos: list[tuple[float, float, float]], busy: NDArray[np.float64]
) -> NDArray[np.float64]:
    """What holding ``machine`` for its start-up, ``busy`` and teardown costs, billed as its
    provider bills (integer micro-dollars, as ``costs.cost_for``); inf where the combination's
    thresholds leave it out."""
    import numpy as np

    held = machine.offer.startup_s + busy + TEARDOWN_S
    billed = np.maximum(machine.step_s, np.ceil(held / machine.step_s) * machine.step_s)
    cost = np.ceil(machine.price * billed / 3600) + _aws_micros(held)
    eligible = np.array(
        [machine.ready_s <= sigma and machine.guard_s <= gamma for sigma, gamma, _ in combos]
    )
    return np.where(eligible[:, None], cost, np.inf)


def _aws_micros(held: NDArray[np.float64]) -> NDArray[np.float64]:
    """AWS's charges for holding a machine ``held`` seconds (``costs.aws_machine_micros``,
    many at once), micro-dollars rounded up."""
    import numpy as np

    slices = np.ceil(held / RENDER_SLICE_S)
    usd = AWS_FIXED + AWS_PER_S * held + AWS_PER_SLICE * slices
    return np.ceil(usd * MICROS_PER_USD)


def _take(table: NDArray[np.float64], held: int, w: NDArray[np.float64], top: int) -> None:
    """One more offer for the 0/1 knapsack: a fleet of k with u units becomes k+1 with
    min(top, u + held) units at ``w`` more (read from the table before this offer)."""
    import numpy as np

    before = table[..., :-1, :]  # both reads happen before either write
    add = w[..., None]
    over = before[..., max(0, top - held) :].min(axis=-1) + add
    if held < top:
        below = before[..., : top - held] + add[..., None]
        np.minimum(table[..., 1:, held:top], below, out=table[..., 1:, held:top])
    np.minimum(table[..., 1:, top], over, out=table[..., 1:, top])


def _chosen(units: list[int], w: list[float], cap: int, top: int, target: int) -> list[int]:
    """Which machines the cheapest fleet with at least ``target`` units holds, for one
    combination: the same knapsack in two dimensions, walked back from its best cell."""
    import numpy as np

    table = np.full((cap + 1, top + 1), np.inf)
    table[0, 0] = 0.0
    history = []  # the table before each machine
    for held, cost in zip(units, w, strict=True):
        history.append(table.copy())
        if held > 0 and math.isfinite(cost):
            _take(table, held, np.array(cost), top)
    history.append(table)
    best_k, best_u = np.unravel_index(int(np.argmin(table[1:, target:])), table[1:, target:].shape)
    k, u = int(best_k) + 1, int(best_u) + target
    picked = []
    for i in range(len(units) - 1, -1, -1):
        before, after = history[i], history[i + 1]
        if after[k, u] == before[k, u]:
            continue  # as cheap without machine i
        picked.append(i)
        if u < top:
            u -= units[i]
        else:  # every u with u + held >= top lands on top: take the cheapest of them
            low = max(0, top - units[i])
            u = low + int(np.argmin(before[k - 1, low:]))
        k -= 1
    return picked
