"""Which rented machines to destroy: a pure function, so the simulator can run it too.

A machine is ours when its label starts with ``subc-``; the rest of its label is its run id.
It is an orphan when its run is over (or gave up on its teardown). A machine whose run is not
in our records at all is reported, never destroyed: it may be another deployment's; unless
the reaper saw it orphaned while its run was on record (ended runs expire a month after they
end, ``dal/runs.RUN_KEEP``: a machine whose give-back failed for that long must not become
untouchable). Orphans are destroyed only after a grace period from when the reaper first saw
them orphaned, so a Teardown in progress gets time to finish its own work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from subconscious.models import LIVE_RUN_STATUSES, Machine, MachineStatus, RunStatus
from subconscious.models.labels import run_id_of


class Action(StrEnum):
    KEEP = "keep"  # a live run owns it
    WAIT = "wait"  # orphaned, within the grace period
    REAP = "reap"
    # Our label but no run record: another deployment sharing the account, or a label the
    # provider rewrote. Never destroyed automatically: reported for a person to look at.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    machine: Machine
    action: Action
    reason: str


def judge(
    machines: list[Machine],
    run_status: Mapping[str, RunStatus | None],
    first_seen_orphaned: Mapping[str, datetime],
    now: datetime,
    grace: timedelta,
) -> list[Verdict]:
    """One verdict per machine of ours. ``run_status``: the status of each run id named by a
    label (None: no such run); ``first_seen_orphaned``: machine id → when first seen orphaned."""
    verdicts = []
    for machine in machines:
        run_id = run_id_of(machine.label)
        if run_id is None:
            continue  # not ours: never touched
        if machine.status is MachineStatus.TERMINATED:
            continue
        status = run_status.get(run_id)
        sighted = machine.machine_id in first_seen_orphaned
        if status is None and not sighted:
            verdicts.append(Verdict(machine, Action.UNKNOWN, f"no run {run_id} in our records"))
            continue
        if status in LIVE_RUN_STATUSES and status is not RunStatus.TEARDOWN_FAILED:
            verdicts.append(Verdict(machine, Action.KEEP, f"owned by live run {run_id}"))
            continue
        seen = first_seen_orphaned.get(machine.machine_id, now)
        if now - seen < grace:
            verdicts.append(Verdict(machine, Action.WAIT, f"orphaned since {seen.isoformat()}"))
            continue
        run = f"run {run_id} is {status.value}" if status else f"run {run_id}'s record expired"
        verdicts.append(Verdict(machine, Action.REAP, f"orphan ({run})"))
    return verdicts
