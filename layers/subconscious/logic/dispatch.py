"""The scheduled dispatch tick: gather state, ask the pure planner, start one run per rental."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from subconscious.errors import SubconsciousError
from subconscious.logic.quotes import market_offers
from subconscious.logic.render_run import give_back_machines
from subconscious.logic.services import Services
from subconscious.models import RENDERABLE_STATES, RenderRun, RunStatus
from subconscious.money import to_micros
from subconscious.observability import (
    LIVE_MACHINES,
    OLDEST_MACHINE_AGE_S,
    SPEND_RATE_USD_PER_HOUR,
    logger,
    metrics,
)
from subconscious.planner.dispatch import Backlog, Rent, decide

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
        emit_fleet_metrics(live, now)
        waiting, in_flight = services.queue.depth()
        orders = sorted(
            (o for _, o in services.orders.open_orders() if o.state in RENDERABLE_STATES),
            key=lambda o: o.created_at,
        )
        backlog = Backlog(
            waiting_tasks=waiting,
            in_flight_tasks=in_flight,
            jobs=[o.job for o in orders],
            budget_left_micros=sum(to_micros(o.total_usd) - o.spend_micros for o in orders),
            recent_failed_runs=services.runs.failed_since(now - timedelta(hours=1)),
        )
        wants_market = backlog.jobs and waiting + in_flight and len(live) < settings.max_live_runs
        offers = market_offers(services) if wants_market else []
        for decision in decide(backlog, live, offers, settings.max_live_runs):
            report.decisions.append(decision.reason)
            if isinstance(decision, Rent):
                started = start_run(services, decision, now, holder)
                if started:
                    report.started_runs.append(started)
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


def start_run(services: Services, decision: Rent, now: datetime, holder: str) -> str | None:
    settings = services.settings
    run_id = f"r-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
    run = RenderRun(
        run_id=run_id,
        offer=decision.offer,
        spend_cap_micros=decision.spend_cap_micros,
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
        provider=decision.offer.provider,
        gpu=decision.offer.gpu,
        usd_per_hour=str(decision.offer.usd_per_hour),
    )
    return run_id


def emit_fleet_metrics(live: list[RenderRun], now: datetime) -> None:
    """What the alarms watch: how many machines run, how long the oldest has, what they cost
    per hour together (zeros when none run, so an alarm always has data)."""
    launched = [
        (r.machine_launched_at, r.offer.usd_per_hour)
        for r in live
        if r.machine_launched_at and not r.machine_ended_at
    ]
    oldest_s = max(((now - at).total_seconds() for at, _ in launched), default=0)
    rate = sum((usd for _, usd in launched), Decimal(0))
    metrics.add_metric(name=LIVE_MACHINES, unit=MetricUnit.Count, value=len(launched))
    metrics.add_metric(name=OLDEST_MACHINE_AGE_S, unit=MetricUnit.Seconds, value=int(oldest_s))
    metrics.add_metric(name=SPEND_RATE_USD_PER_HOUR, unit=MetricUnit.NoUnit, value=float(rate))


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
