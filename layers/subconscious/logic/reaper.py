"""The scheduled reaper (invariant 1's last line): every provider's machines with our label,
checked against live runs; orphans destroyed after a grace period."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from subconscious.errors import SubconsciousError
from subconscious.market.base import Provider
from subconscious.models import Machine, RunStatus
from subconscious.models.labels import run_id_of
from subconscious.observability import logger
from subconscious.planner.reaper import Action, Verdict, judge

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services


@dataclass
class ReapReport:
    checked: int = 0
    reaped: list[str] = field(default_factory=list)
    in_grace: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    failed_providers: list[str] = field(default_factory=list)


def reap(services: Services, now: datetime | None = None) -> ReapReport:
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=services.settings.reaper_grace_s)
    report = ReapReport()
    for provider in services.providers():
        try:
            machines = provider.machines()
        except SubconsciousError as error:  # one provider down never stops the others
            logger.warning("reaper: provider unavailable", provider=provider.name, code=error.code)
            report.failed_providers.append(provider.name)
            continue
        _reap_provider(services, provider, machines, now, grace, report)
    logger.info(
        "reaper tick",
        checked=report.checked,
        reaped=len(report.reaped),
        in_grace=len(report.in_grace),
    )
    return report


def _reap_provider(
    services: Services,
    provider: Provider,
    machines: list[Machine],
    now: datetime,
    grace: timedelta,
    report: ReapReport,
) -> None:
    """One provider's labelled machines judged against their runs, and each verdict acted on."""
    statuses = _run_statuses(services, machines)
    first_seen = services.runs.orphans_first_seen(provider.name)
    waiting: set[str] = set()
    for verdict in judge(machines, statuses, first_seen, now, grace):
        report.checked += 1
        machine_id = verdict.machine.machine_id
        if verdict.action is Action.UNKNOWN:
            report.unknown.append(machine_id)
            logger.error(
                "machine with our label but no run record: not touched",
                provider=provider.name,
                machine_id=machine_id,
            )
        if verdict.action is Action.WAIT:
            waiting.add(machine_id)
            if machine_id not in first_seen:
                services.runs.remember_orphan(provider.name, machine_id, now)
            report.in_grace.append(machine_id)
        if verdict.action is Action.REAP and not _terminate(services, provider, verdict, report):
            waiting.add(machine_id)  # keeps its sighting: tried again next tick, no new grace
    # A sighting whose machine is gone (torn down) or owned again is forgotten: a reused
    # machine id must get its own grace period.
    for machine_id in set(first_seen) - waiting:
        services.runs.forget_orphan(provider.name, machine_id)


def _run_statuses(services: Services, machines: list[Machine]) -> dict[str, RunStatus | None]:
    """The status of each run the machines' labels name; None for a run with no record."""
    statuses: dict[str, RunStatus | None] = {}
    for machine in machines:
        run_id = run_id_of(machine.label)
        if run_id is not None and run_id not in statuses:
            run = services.runs.get(run_id)
            statuses[run_id] = run.status if run else None
    return statuses


def _terminate(
    services: Services, provider: Provider, verdict: Verdict, report: ReapReport
) -> bool:
    """Give an orphan back; its sighting is forgotten only once it is (a failed terminate is
    tried again next tick, and the sighting is what still marks the machine ours should its
    run's record expire meanwhile). True if it was given back."""
    machine_id = verdict.machine.machine_id
    try:
        provider.terminate(machine_id)
    except SubconsciousError as error:
        logger.error("reaper: terminate failed", machine_id=machine_id, code=error.code)
        return False
    services.runs.forget_orphan(provider.name, machine_id)
    report.reaped.append(machine_id)
    logger.warning(
        "reaped a machine no live run owned",
        provider=provider.name,
        machine_id=machine_id,
        reason=verdict.reason,
    )
    return True
