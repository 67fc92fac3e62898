"""The reaper's pure decision: which machines are orphans, and when they are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from subconscious.models import Machine, MachineStatus, RunStatus
from subconscious.models.labels import run_id_of
from subconscious.planner.reaper import Action, judge

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)


def machine(
    label: str, machine_id: str = "m-1", status: MachineStatus = MachineStatus.RUNNING
) -> Machine:
    return Machine(
        provider="fake",
        machine_id=machine_id,
        offer_id="o",
        label=label,
        status=status,
        usd_per_hour=Decimal("0.4"),
    )


def test_run_id_comes_from_our_label_only() -> None:
    assert run_id_of(machine("subc-r-1").label) == "r-1"
    assert run_id_of(machine("someone-elses").label) is None


def test_a_live_run_keeps_its_machine() -> None:
    [verdict] = judge([machine("subc-r-1")], {"r-1": RunStatus.RENDERING}, {}, NOW, GRACE)
    assert verdict.action is Action.KEEP


def test_foreign_and_terminated_machines_are_never_judged() -> None:
    machines = [machine("other"), machine("subc-r-1", status=MachineStatus.TERMINATED)]
    assert judge(machines, {"r-1": None}, {}, NOW, GRACE) == []


def test_an_orphan_waits_out_its_grace_then_is_reaped() -> None:
    orphan = machine("subc-r-1")
    statuses = {"r-1": RunStatus.SUCCEEDED}
    [first] = judge([orphan], statuses, {}, NOW, GRACE)
    assert first.action is Action.WAIT
    [during] = judge([orphan], statuses, {"m-1": NOW - GRACE / 2}, NOW, GRACE)
    assert during.action is Action.WAIT
    [after] = judge([orphan], statuses, {"m-1": NOW - GRACE}, NOW, GRACE)
    assert after.action is Action.REAP
    assert "succeeded" in after.reason


def test_a_machine_without_a_run_record_is_reported_never_reaped() -> None:
    """Our prefix but no run, and never seen orphaned: another deployment on the same
    account, or a rewritten label."""
    [verdict] = judge([machine("subc-r-ghost")], {"r-ghost": None}, {}, NOW, GRACE)
    assert verdict.action is Action.UNKNOWN
    [other] = judge([machine("subc-r-ghost")], {"r-ghost": None}, {"m-2": NOW - GRACE}, NOW, GRACE)
    assert other.action is Action.UNKNOWN  # another machine's sighting says nothing of it


def test_a_run_whose_teardown_gave_up_does_not_protect_its_machine() -> None:
    statuses = {"r-1": RunStatus.TEARDOWN_FAILED}
    [verdict] = judge([machine("subc-r-1")], statuses, {"m-1": NOW - GRACE}, NOW, GRACE)
    assert verdict.action is Action.REAP


def test_a_machine_seen_orphaned_stays_ours_when_its_runs_record_expires() -> None:
    """Ended runs expire a month after they end: a sighting made while the run was on record
    is what still marks the machine as ours; its grace period runs on from that sighting."""
    orphan = machine("subc-r-1")
    [waiting] = judge([orphan], {"r-1": None}, {"m-1": NOW - GRACE / 2}, NOW, GRACE)
    assert waiting.action is Action.WAIT
    [reaped] = judge([orphan], {"r-1": None}, {"m-1": NOW - GRACE}, NOW, GRACE)
    assert reaped.action is Action.REAP and "expired" in reaped.reason
    [unknown] = judge([orphan], {"r-1": None}, {}, NOW, GRACE)  # never seen orphaned
    assert unknown.action is Action.UNKNOWN
