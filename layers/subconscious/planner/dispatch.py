"""What to rent now: a pure function from the market and the backlog to decisions.

Policy for now: when work waits and fewer runs are live than allowed, rent the offer that renders
the backlog's next job cheapest. The deadline-aware policy (interruptible capacity while slack
allows, on-demand safety net) is the planner issue's and keeps this signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from subconscious.errors import NoCapacity
from subconscious.models import JobSpec, Offer, RenderRun
from subconscious.planner.quote import cheapest_offer, usable

MAX_RECENT_FAILURES = 3


@dataclass(frozen=True)
class Backlog:
    waiting_tasks: int
    in_flight_tasks: int
    # The jobs of open orders, oldest first; the first one picks the GPU.
    jobs: list[JobSpec] = field(default_factory=list)
    # What open orders may still spend (quoted totals minus spend so far), micro-dollars.
    budget_left_micros: int = 0
    # Runs that failed recently: a machine that never becomes ready must not be rented forever.
    recent_failed_runs: int = 0


@dataclass(frozen=True)
class Rent:
    offer: Offer
    spend_cap_micros: int
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str


Decision = Rent | Wait


def decide(
    backlog: Backlog, live_runs: list[RenderRun], offers: list[Offer], max_live_runs: int
) -> list[Decision]:
    work = backlog.waiting_tasks + backlog.in_flight_tasks
    if work == 0 or not backlog.jobs:
        return [Wait("no work waiting")]
    if len(live_runs) >= max_live_runs:
        return [Wait(f"{len(live_runs)} run(s) live, limit {max_live_runs}")]
    if backlog.budget_left_micros <= 0:
        return [Wait("open orders have no budget left")]
    if backlog.recent_failed_runs >= MAX_RECENT_FAILURES:
        return [Wait(f"{backlog.recent_failed_runs} runs failed in the last hour; holding off")]
    # The machine renders whatever task comes next, so it must suit every open job.
    fit_all = [o for o in offers if all(usable([o], job) for job in backlog.jobs)]
    try:
        offer = cheapest_offer(fit_all, backlog.jobs[0])
    except NoCapacity:
        return [Wait("no offer on the market can run every open job")]
    return [
        Rent(
            offer=offer,
            spend_cap_micros=backlog.budget_left_micros,
            reason=f"{work} task(s) waiting, no run live",
        )
    ]
