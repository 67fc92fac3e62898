"""Render runs, orphan sightings, stop requests and the dispatch lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from subconscious.dal._dynamo import is_condition_failure
from subconscious.dal.memory import MemoryRuns
from subconscious.dal.runs import RunStore
from subconscious.models import RunStatus
from subconscious.services import Services

from .conftest import NOW, run


def test_put_get_save(stores: Services) -> None:
    r = run("r-1")
    assert stores.runs.get("r-1") is None
    stores.runs.put(r)
    assert stores.runs.get("r-1") == r
    rendering = r.model_copy(update={"status": RunStatus.RENDERING, "images": 3})
    stores.runs.save(rendering)
    assert stores.runs.get("r-1") == rendering


def test_save_needs_the_run(stores: Services) -> None:
    with pytest.raises(ClientError) as missing:
        stores.runs.save(run("r-404"))
    assert is_condition_failure(missing.value)
    assert stores.runs.get("r-404") is None


def test_one_read_gives_the_live_runs_the_recently_ended_and_the_stop_requests(
    stores: Services,
) -> None:
    stores.runs.put(run("r-live"))
    stores.runs.put(run("r-rendering", status=RunStatus.RENDERING))
    stores.runs.put(run("r-stuck", status=RunStatus.TEARDOWN_FAILED))  # its machine may bill
    stores.runs.put(run("r-done", status=RunStatus.SUCCEEDED, ended_at=NOW))
    stores.runs.put(run("r-old", status=RunStatus.FAILED, ended_at=NOW - timedelta(hours=2)))
    stores.runs.put(run("r-new", status=RunStatus.FAILED, ended_at=NOW))
    assert stores.runs.acquire_lease("dispatch", "me", 60, NOW)  # not a run: never listed
    stores.runs.request_stop("r-live", "why", NOW)
    stores.runs.remember_orphan("fake", "m-1", NOW)
    live = ["r-live", "r-rendering", "r-stuck"]
    assert sorted(r.run_id for r in stores.runs.live()) == live
    read = stores.runs.read(NOW - timedelta(hours=1))
    assert sorted(r.run_id for r in read.live) == live
    assert sorted(r.run_id for r in read.ended) == ["r-done", "r-new"]
    assert read.stopping == {"r-live"}
    assert read.live[0] == stores.runs.get(read.live[0].run_id)  # whole runs, as stored
    longer = stores.runs.read(NOW - timedelta(hours=3))
    assert sorted(r.run_id for r in longer.ended) == ["r-done", "r-new", "r-old"]


def _stored_row(stores: Services, backend: str, run_id: str) -> dict[str, Any]:
    """The run's item as the table holds it (the TTL attribute is not part of the interface)."""
    if backend == "memory":
        assert isinstance(stores.runs, MemoryRuns)
        return dict(stores.runs._items[run_id])
    assert isinstance(stores.runs, RunStore)
    return dict(stores.runs._table.get_item(Key={"run_id": run_id})["Item"])


def test_ended_runs_expire_a_month_after_they_ended_and_live_ones_never(
    stores: Services, backend: str
) -> None:
    """The runs table is scanned on every dispatch tick and every quote: without the TTL it
    grows with every machine ever rented."""
    ended_at = NOW - timedelta(hours=3)
    stores.runs.put(run("r-up", status=RunStatus.RENDERING))
    stores.runs.put(run("r-stuck", status=RunStatus.TEARDOWN_FAILED, ended_at=ended_at))
    stores.runs.put(run("r-ok", status=RunStatus.SUCCEEDED, ended_at=ended_at))
    stores.runs.put(run("r-bad", status=RunStatus.FAILED, ended_at=ended_at))
    expiry = int((ended_at + timedelta(days=30)).timestamp())
    assert "expires" not in _stored_row(stores, backend, "r-up")
    assert "expires" not in _stored_row(stores, backend, "r-stuck")  # its machine may still bill
    assert _stored_row(stores, backend, "r-ok")["expires"] == expiry
    assert _stored_row(stores, backend, "r-bad")["expires"] == expiry
    # a run saved as it ends gets its expiry then
    stores.runs.save(run("r-up", status=RunStatus.SUCCEEDED, ended_at=NOW))
    assert _stored_row(stores, backend, "r-up")["expires"] == int(
        (NOW + timedelta(days=30)).timestamp()
    )


def test_orphans_keep_their_first_sighting(stores: Services) -> None:
    assert stores.runs.orphans_first_seen("fake") == {}
    stores.runs.remember_orphan("fake", "m-1", NOW)
    stores.runs.remember_orphan("fake", "m-1", NOW + timedelta(minutes=5))
    stores.runs.remember_orphan("fake", "m-2", NOW + timedelta(minutes=1))
    stores.runs.remember_orphan("vast", "m-3", NOW)
    assert stores.runs.orphans_first_seen("fake") == {
        "m-1": NOW,
        "m-2": NOW + timedelta(minutes=1),
    }
    stores.runs.forget_orphan("fake", "m-1")
    stores.runs.forget_orphan("fake", "m-unknown")  # forgetting twice is fine
    assert stores.runs.orphans_first_seen("fake") == {"m-2": NOW + timedelta(minutes=1)}
    assert stores.runs.orphans_first_seen("vast") == {"m-3": NOW}


def test_stop_requests_survive_the_run_being_saved(stores: Services) -> None:
    r = run("r-1")
    stores.runs.put(r)
    assert not stores.runs.stop_requested("r-1")
    assert stores.runs.read(NOW).stopping == set()
    stores.runs.request_stop("r-1", "order cancelled", NOW)
    stores.runs.request_stop("r-1", "again", NOW)
    stores.runs.save(r.model_copy(update={"images": 1}))
    assert stores.runs.stop_requested("r-1")
    assert not stores.runs.stop_requested("r-2")
    stores.runs.request_stop("r-2", "spend cap", NOW)
    assert stores.runs.read(NOW).stopping == {"r-1", "r-2"}
    assert [x.run_id for x in stores.runs.live()] == ["r-1"]


def test_lease_one_holder_until_it_expires(stores: Services) -> None:
    assert stores.runs.acquire_lease("dispatch", "a", 60, NOW)
    assert not stores.runs.acquire_lease("dispatch", "b", 60, NOW + timedelta(seconds=30))
    assert not stores.runs.acquire_lease("dispatch", "a", 60, NOW + timedelta(seconds=60))
    assert stores.runs.acquire_lease("other", "b", 60, NOW)  # another lease is its own
    assert stores.runs.acquire_lease("dispatch", "b", 60, NOW + timedelta(seconds=61))


def test_release_only_by_its_holder(stores: Services) -> None:
    stores.runs.release_lease("dispatch", "nobody")  # no lease: nothing happens
    assert stores.runs.acquire_lease("dispatch", "a", 600, NOW)
    stores.runs.release_lease("dispatch", "b")
    assert not stores.runs.acquire_lease("dispatch", "b", 60, NOW)
    stores.runs.release_lease("dispatch", "a")
    assert stores.runs.acquire_lease("dispatch", "b", 60, NOW)


def test_acquire_lease_defaults_to_now(stores: Services) -> None:
    assert stores.runs.acquire_lease("dispatch", "a", 60)
    assert not stores.runs.acquire_lease("dispatch", "b", 60)


def test_put_under_lease_only_for_its_unexpired_holder(stores: Services) -> None:
    assert not stores.runs.put_under_lease(run("r-0"), "dispatch", "a", NOW)  # no lease
    assert stores.runs.acquire_lease("dispatch", "a", 60, NOW)
    assert not stores.runs.put_under_lease(run("r-1"), "dispatch", "b", NOW)
    assert stores.runs.put_under_lease(run("r-1"), "dispatch", "a", NOW + timedelta(seconds=60))
    assert not stores.runs.put_under_lease(run("r-1"), "dispatch", "a", NOW)  # exists
    late = NOW + timedelta(seconds=61)
    assert not stores.runs.put_under_lease(run("r-2"), "dispatch", "a", late)
    assert stores.runs.get("r-0") is None and stores.runs.get("r-2") is None
    assert stores.runs.get("r-1") is not None
