"""The two baselines, as dispatchers run in the same simulator as the policy.

* **naive** — what a customer renting by hand would do: when an order arrives, rent the
  on-demand offer that renders that order alone most cheaply (start-up, rendering and
  teardown at its billing increment) among those that finish it by its deadline (start-up +
  rendering); if none does, the one that finishes first. The machine renders that order only
  and is given back when it is done. No sharing, no interruptible capacity.
* **greedy** — cheapest capacity now: at each tick, while the fleet (counting every machine,
  preemptible or not, with no reserve) cannot finish the open orders by their deadlines
  (earliest deadline first, fluid), or no machine is live while work is open, rent the offer
  that is cheapest per image for the most urgent order, interruptible when its pool has
  capacity (its bid is then always the cheaper price). Within the same caps as the policy. No
  safety net: a preempted machine is replaced by whatever is cheapest then. Gives every
  machine back when no order is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from bench.planner.sim import DedicatedRent, SimDecision
from subconscious.models import JobSpec, Offer
from subconscious.planner.costs import (
    TEARDOWN_S,
    Rates,
    cost_for,
    price_micros_per_hour,
    usable,
)
from subconscious.planner.policy import (
    LiveMachine,
    OpenOrder,
    PlanState,
    Release,
    Rent,
    Wait,
    edf,
)


class Naive:
    """Stateful: remembers which orders it has rented for."""

    def __init__(self) -> None:
        self.served: set[str] = set()

    def __call__(self, state: PlanState) -> list[SimDecision]:
        decisions: list[SimDecision] = []
        taken: set[str] = set()
        for order in edf(state.orders):
            if order.order_id in self.served:
                continue
            offer = self.pick(state, order, taken)
            if offer is None:
                continue
            self.served.add(order.order_id)
            taken.add(offer.offer_id)
            decisions.append(DedicatedRent(offer, False, "naive: order alone", order.order_id))
        return decisions or [Wait("naive: nothing new")]

    @staticmethod
    def pick(state: PlanState, order: OpenOrder, taken: set[str]) -> Offer | None:
        best: tuple[int, str, Offer] | None = None
        fastest: tuple[float, str, Offer] | None = None
        window = (order.deadline - state.now).total_seconds()
        for offer in state.offers:
            if offer.offer_id in taken or not usable(offer, order.job):
                continue
            speed = state.rates.speed(offer, order.job)
            busy = offer.startup_s + speed.seconds(order.images_left)
            if fastest is None or (busy, offer.offer_id) < fastest[:2]:
                fastest = (busy, offer.offer_id, offer)
            if busy > window:
                continue
            price = price_micros_per_hour(offer, False)
            cost = cost_for(offer.provider, price, busy + TEARDOWN_S)
            if best is None or (cost, offer.offer_id) < best[:2]:
                best = (cost, offer.offer_id, offer)
        if best is not None:
            return best[2]
        return None if fastest is None else fastest[2]


def _per_image(offer: Offer, interruptible: bool, job: JobSpec, rates: Rates) -> float:
    return price_micros_per_hour(offer, interruptible) / rates.speed(offer, job).images_per_s


def fluid_feasible(
    orders: Sequence[OpenOrder], machines: Sequence[LiveMachine], state: PlanState
) -> bool:
    """Earliest deadline first, each order at the fleet's combined rate for its job, each
    machine from when it is ready: does every prefix fit before its deadline?"""
    needed = 0.0
    for order in orders:
        window = (order.deadline - state.now).total_seconds()
        rate = 0.0
        for machine in machines:
            if not usable(machine.offer, order.job):
                continue
            ready = max(state.now, machine.ready_at)
            available = (order.deadline - ready).total_seconds()
            if available > 0 and window > 0:
                speed = state.rates.speed(machine.offer, order.job)
                rate += speed.images_per_s * available / window
        if rate <= 0:
            return False
        needed += order.images_left / rate
        if needed > window:
            return False
    return True


def greedy(state: PlanState) -> list[SimDecision]:
    orders = edf(state.orders)
    if not orders:
        idle: list[SimDecision] = [Release(m.machine_id, "greedy: idle") for m in state.machines]
        return idle or [Wait("greedy: no work")]
    jobs = [o.job for o in orders]
    choices: list[tuple[float, str, Offer, bool]] = []
    for offer in state.offers:
        if not all(usable(offer, job) for job in jobs):
            continue
        interruptible = offer.min_bid_usd_per_hour is not None
        cost = _per_image(offer, interruptible, orders[0].job, state.rates)
        choices.append((cost, offer.offer_id, offer, interruptible))
    choices.sort(key=lambda c: c[:2])
    fleet = list(state.machines)
    hourly = sum(price_micros_per_hour(m.offer, m.interruptible) for m in fleet)
    decisions: list[SimDecision] = []
    for _, _, offer, interruptible in choices:
        if fleet and fluid_feasible(orders, fleet, state):
            break
        if len(fleet) >= state.limits.max_machines:
            break
        price = price_micros_per_hour(offer, interruptible)
        if hourly + price > state.limits.max_spend_micros_per_hour:
            continue
        ready = state.now + timedelta(seconds=offer.startup_s)
        fleet.append(LiveMachine(f"planned:{offer.offer_id}", offer, interruptible, ready))
        hourly += price
        kind = "interruptible" if interruptible else "on-demand"
        decisions.append(Rent(offer, interruptible, f"greedy: cheapest {kind} {offer.gpu}"))
    return decisions or [Wait("greedy: fleet suffices")]
