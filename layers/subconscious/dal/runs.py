"""Render runs (one per rented machine) and the dispatch lease, in one table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import epoch, is_condition_failure, now, scan_all, scan_where_in
from subconscious.models import LIVE_RUN_STATUSES, RenderRun, RunStatus

_LEASE_PREFIX = "lease#"
_ORPHAN_PREFIX = "orphan#"
_STOP_PREFIX = "stop#"
# A stop request outlives any run it could concern (the table's TTL attribute).
_STOP_KEEP = timedelta(days=2)
# An ended run is read for a day (the preemption rate), an hour (the breakers) and by id while
# its machine may still be listed (the reaper, minutes): a month covers them all, and keeps the
# table (scanned on every dispatch tick and every quote) from growing with history.
RUN_KEEP = timedelta(days=30)
_ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


@dataclass(frozen=True)
class RunsRead:
    """The runs table as one scan saw it: what a dispatch tick and a quote read of it."""

    live: list[RenderRun]
    ended: list[RenderRun]  # succeeded or failed at or after the read's ``since``
    stopping: frozenset[str]  # the runs asked to stop (the planner must not count them)


def runs_read(items: Iterable[tuple[str, dict[str, Any]]], since: datetime) -> RunsRead:
    """Sort one scan's (key, item) pairs: runs live and ended, stop requests; leases and
    orphan sightings are skipped."""
    live_statuses = {s.value for s in LIVE_RUN_STATUSES}
    ended_statuses = {s.value for s in _ENDED}
    live: list[RenderRun] = []
    ended: list[RenderRun] = []
    stopping: set[str] = set()
    for key, item in items:
        if item.get("kind") == "stop":
            stopping.add(key[len(_STOP_PREFIX) :])
        elif "doc" not in item:
            continue
        elif item["status"] in live_statuses:
            live.append(RenderRun.model_validate_json(item["doc"]))
        elif item["status"] in ended_statuses:
            run = RenderRun.model_validate_json(item["doc"])
            if run.ended_at is not None and run.ended_at >= since:
                ended.append(run)
    return RunsRead(live, ended, frozenset(stopping))


def run_row(run: RenderRun) -> dict[str, Any]:
    """A run's attributes (its key aside): an ended run carries its expiry in the TTL attribute;
    a live one (TEARDOWN_FAILED included: its machine may still bill) never expires."""
    row: dict[str, Any] = {"status": run.status.value, "doc": run.model_dump_json()}
    if run.status in _ENDED:
        row["expires"] = epoch((run.ended_at or now()) + RUN_KEEP)
    return row


class RunStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def put(self, run: RenderRun) -> None:
        self._table.put_item(Item=self._item(run))

    def put_under_lease(self, run: RenderRun, lease: str, holder: str, at: datetime) -> bool:
        """Write a new run only if ``holder`` still holds an unexpired lease (one transaction)."""
        client = self._table.meta.client
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._table.name,
                            "Key": {"run_id": _LEASE_PREFIX + lease},
                            "ConditionExpression": "holder = :h AND expires >= :now",
                            "ExpressionAttributeValues": {":h": holder, ":now": epoch(at)},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": self._item(run),
                            "ConditionExpression": "attribute_not_exists(run_id)",
                        }
                    },
                ]
            )
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get(self, run_id: str) -> RenderRun | None:
        item = self._table.get_item(Key={"run_id": run_id}).get("Item")
        return RenderRun.model_validate_json(item["doc"]) if item else None

    def save(self, run: RenderRun) -> None:
        """Overwrite a run that exists (a step updating its own run; one writer per run)."""
        self._table.put_item(Item=self._item(run), ConditionExpression="attribute_exists(run_id)")

    def live(self) -> Iterator[RenderRun]:
        for item in scan_where_in(self._table, "status", (s.value for s in LIVE_RUN_STATUSES)):
            yield RenderRun.model_validate_json(item["doc"])

    def read(self, since: datetime) -> RunsRead:
        """Live runs, the runs ended since ``since`` and the stop requests, from one scan: a
        scan reads (and bills) every item whatever its filter, so one a tick, not four."""
        return runs_read(((str(i["run_id"]), i) for i in scan_all(self._table)), since)

    # --- reaper: when each orphaned machine was first seen (its grace period starts there) ---
    def orphans_first_seen(self, provider: str) -> dict[str, datetime]:
        prefix = f"{_ORPHAN_PREFIX}{provider}#"
        return {
            str(item["run_id"])[len(prefix) :]: datetime.fromisoformat(str(item["seen"]))
            for item in scan_where_in(self._table, "kind", ["orphan"])
            if str(item["run_id"]).startswith(prefix)
        }

    def remember_orphan(self, provider: str, machine_id: str, at: datetime) -> None:
        """Record the first sighting only: a later one must not restart the grace period."""
        try:
            self._table.put_item(
                Item={
                    "run_id": f"{_ORPHAN_PREFIX}{provider}#{machine_id}",
                    "kind": "orphan",
                    "seen": at.isoformat(),
                },
                ConditionExpression="attribute_not_exists(run_id)",
            )
        except Exception as error:
            if not is_condition_failure(error):
                raise

    def forget_orphan(self, provider: str, machine_id: str) -> None:
        self._table.delete_item(Key={"run_id": f"{_ORPHAN_PREFIX}{provider}#{machine_id}"})

    # --- stop requests: the dispatch asks a run to end; the run's own step reads it ---
    def request_stop(self, run_id: str, reason: str, at: datetime) -> None:
        """A separate item, so the run's writer (which overwrites the run's item) keeps it."""
        self._table.put_item(
            Item={
                "run_id": _STOP_PREFIX + run_id,
                "kind": "stop",
                "reason": reason,
                "at": at.isoformat(),
                "expires": epoch(at + _STOP_KEEP),
            }
        )

    def stop_requested(self, run_id: str) -> bool:
        return "Item" in self._table.get_item(Key={"run_id": _STOP_PREFIX + run_id})

    # --- lease: at most one dispatch tick acts at a time ---
    def acquire_lease(
        self, name: str, holder: str, seconds: int, at: datetime | None = None
    ) -> bool:
        """Take the lease if it is free or expired. Conditional write: of two ticks racing, one
        wins and the other gets False (invariant 7: no double rental)."""
        at = at or now()
        try:
            self._table.put_item(
                Item={
                    "run_id": _LEASE_PREFIX + name,
                    "holder": holder,
                    "expires": epoch(at + timedelta(seconds=seconds)),
                },
                ConditionExpression="attribute_not_exists(run_id) OR expires < :now",
                ExpressionAttributeValues={":now": epoch(at)},
            )
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def release_lease(self, name: str, holder: str) -> None:
        try:
            self._table.delete_item(
                Key={"run_id": _LEASE_PREFIX + name},
                ConditionExpression="holder = :h",
                ExpressionAttributeValues={":h": holder},
            )
        except Exception as error:
            if not is_condition_failure(error):
                raise

    @staticmethod
    def _item(run: RenderRun) -> dict[str, Any]:
        return {"run_id": run.run_id, **run_row(run)}
