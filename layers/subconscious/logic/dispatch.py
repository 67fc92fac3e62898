"""The scheduled dispatch tick: gather state, ask the pure policy, start one run per rental."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from subconscious.errors import SubconsciousError
from subconscious.logic.planning import backlog, limits, machine, open_orders
from subconscious.logic.quotes import market_offers
from subconscious.logic.render_run import give_back_machines
from subconscious.logic.services import Services
from subconscious.logic.throughput import current_rates, prior
from subconscious.models import RenderRun, RunStatus
from subconscious.money import to_micros, to_usd
from subconscious.observability import logger
from subconscious.planner.costs import Rates, price_micros_per_hour
from subconscious.planner.policy import PlanState, Rent, decide

LEASE = "dispatch"


@dataclass
class TickReport:
    acted: bool
    decisions: list[str] = field(default_factory=list)
    started_runs: list[str] = field(default_factory=list)
    reaped_runs: list[str] = field(default_factory=list)


def tick(services: Services, now: datetime | None = None, holder: str | None = None) -> TickReport:
    now = now or datetime.now(UTC)
    holder = holder or uuid.uuid4().hex
    settings = services.settings
    if not services.runs.acquire_lease(LEASE, holder, settings.dispatch_lease_s, at=now):
        logger.info("dispatch lease held by another tick; skipping")
        return TickReport(acted=False)
    try:
        report = TickReport(acted=True)
        live = _reconcile(services, now, report)
        waiting, in_flight = services.queue.depth()
        orders = open_orders(services)
        work = backlog(orders)
        wants_market = any(o.images_left for o in work) and waiting + in_flight > 0
        state = PlanState(
            now=now,
            orders=work if wants_market else [],
            machines=[machine(run, now) for run in live],
            offers=market_offers(services) if wants_market else [],
            rates=current_rates(services) if wants_market else Rates(prior()),
            limits=limits(services),
            recent_failed_runs=services.runs.failed_since(now - timedelta(hours=1)),
        )
        budget_left = sum(to_micros(o.total_usd) - o.spend_micros for o in orders)
        decisions = decide(state)
        # The open orders' budget is shared by every run that may spend it (invariant 3):
        # each new run may spend its share, never the whole of it.
        runs_sharing = len(live) + sum(isinstance(d, Rent) for d in decisions)
        for decision in decisions:
            report.decisions.append(decision.reason)
            if isinstance(decision, Rent):
                if budget_left <= 0:
                    report.decisions.append("open orders have no budget left; not renting")
                    break
                share = budget_left // max(1, runs_sharing)
                started = start_run(services, decision, share, now, holder)
                if started:
                    report.started_runs.append(started)
            # A Release needs nothing here: a render run ends itself (and gives its machine
            # back) once the queue has nothing for it.
        logger.info(
            "dispatch tick",
            waiting=waiting,
            in_flight=in_flight,
            open_orders=len(orders),
            live_runs=len(live),
            decisions=report.decisions,
        )
        return report
    finally:
        services.runs.release_lease(LEASE, holder)


def start_run(
    services: Services, decision: Rent, spend_cap_micros: int, now: datetime, holder: str
) -> str | None:
    settings = services.settings
    run_id = f"r-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
    offer = decision.offer
    bid = None
    if decision.interruptible:
        bid = to_usd(price_micros_per_hour(offer, interruptible=True))
    run = RenderRun(
        run_id=run_id,
        offer=offer,
        bid_usd_per_hour=bid,
        spend_cap_micros=spend_cap_micros,
        started_at=now,
        execution_arn=services.executions.arn_for(run_id),
    )
    # Written before the execution starts (the next tick sees it live), and only while this
    # tick still holds the lease: a tick that overran its lease cannot rent (invariant 7).
    if not services.runs.put_under_lease(run, LEASE, holder, now):
        logger.warning("lost the dispatch lease before renting; not starting", run_id=run_id)
        return None
    payload: dict[str, Any] = {
        "run_id": run.run_id,
        "config": {
            "poll_interval_s": settings.poll_interval_s,
            "ready_timeout_s": settings.ready_timeout_s,
            "slice_s": settings.render_slice_s,
        },
        "error": None,
        "teardown_error": None,
    }
    services.executions.start(run.run_id, payload)
    logger.info(
        "render run started",
        run_id=run.run_id,
        provider=offer.provider,
        gpu=offer.gpu,
        interruptible=decision.interruptible,
        usd_per_hour=str(run.usd_per_hour),
        reason=decision.reason,
    )
    return run_id


def _reconcile(services: Services, now: datetime, report: TickReport) -> list[RenderRun]:
    """Live runs whose execution is gone (or never started) are closed, and their machines
    given back: a safety net under the state machine's own Teardown."""
    live = []
    stale_start = now - timedelta(seconds=services.settings.dispatch_lease_s * 2)
    for run in services.runs.live():
        if run.execution_arn is None:
            alive = run.started_at > stale_start
        else:
            alive = services.executions.is_running(run.execution_arn)
        if alive:
            live.append(run)
            continue
        try:
            give_back_machines(services, run)
        except SubconsciousError as error:  # the provider is down: next tick tries again
            logger.error("could not give back a dead run's machines", run_id=run.run_id)
            report.decisions.append(f"retry give-back of {run.run_id}: {error.code}")
            live.append(run)  # its machines may still run (and cost): it counts as live
            continue
        services.runs.save(
            run.model_copy(
                update={
                    "status": RunStatus.FAILED,
                    "ended_at": now,
                    "error": run.error or "execution ended without recording the run",
                }
            )
        )
        report.reaped_runs.append(run.run_id)
        logger.warning("closed a run whose execution had ended", run_id=run.run_id)
    return live
