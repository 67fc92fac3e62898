"""The reaper against moto and a fake provider (invariant 1's last line of defence)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from functions.reaper.handler import lambda_handler
from infra import definitions as d
from infra.local.stack import context_for
from subconscious.dal.memory import MemoryRuns
from subconscious.logic.reaper import reap
from subconscious.market.fake import FakeProvider
from subconscious.models import RunStatus
from subconscious.models.labels import run_label
from subconscious.services import Services
from tests.conftest import load_event
from tests.integration.workflow import new_run


def test_orphans_are_reaped_after_grace_and_live_runs_are_left_alone(
    svc: Services, market: FakeProvider
) -> None:
    live = new_run(svc)
    svc.runs.save(live.model_copy(update={"status": RunStatus.RENDERING}))
    ended = new_run(svc)
    svc.runs.save(ended.model_copy(update={"status": RunStatus.SUCCEEDED}))
    offer = market.offers[0]
    kept = market.launch(offer, label=run_label(live.run_id), api_auth="u:p")
    orphan = market.launch(offer, label=run_label(ended.run_id), api_auth="u:p")
    ghost = market.launch(offer, label="subc-r-never-recorded", api_auth="u:p")
    foreign = market.launch(offer, label="not-ours", api_auth="u:p")
    now = datetime.now(UTC)

    first = reap(svc, now)
    assert first.reaped == []
    assert first.in_grace == [orphan.machine_id]
    assert first.unknown == [ghost.machine_id]  # no run record: reported, never destroyed

    later = reap(svc, now + timedelta(seconds=svc.settings.reaper_grace_s + 1))
    assert later.reaped == [orphan.machine_id]
    assert set(market.live) == {kept.machine_id, ghost.machine_id, foreign.machine_id}

    assert reap(svc, now + timedelta(hours=1)).reaped == []  # nothing left to reap


def test_a_second_sighting_does_not_restart_the_grace_period(
    svc: Services, market: FakeProvider
) -> None:
    run = new_run(svc)
    svc.runs.save(run.model_copy(update={"status": RunStatus.SUCCEEDED}))
    orphan = market.launch(market.offers[0], label=run_label(run.run_id), api_auth="u:p")
    now = datetime.now(UTC)
    grace = timedelta(seconds=svc.settings.reaper_grace_s)
    reap(svc, now)
    reap(svc, now + grace / 2)
    assert reap(svc, now + grace).reaped == [orphan.machine_id]


def test_a_sighting_is_forgotten_once_its_machine_is_gone(
    svc: Services, market: FakeProvider
) -> None:
    run = new_run(svc)
    svc.runs.save(run.model_copy(update={"status": RunStatus.SUCCEEDED}))
    orphan = market.launch(market.offers[0], label=run_label(run.run_id), api_auth="u:p")
    now = datetime.now(UTC)
    reap(svc, now)
    market.terminate(orphan.machine_id)  # Teardown got there first
    reap(svc, now + timedelta(seconds=1))
    assert svc.runs.orphans_first_seen("fake") == {}


def _expire(svc: Services, run_id: str) -> None:
    """What the table's TTL does to an ended run's item."""
    assert isinstance(svc.runs, MemoryRuns)  # the integration services' runs are the twin
    with svc.runs._lock:
        del svc.runs._items[run_id]
    assert svc.runs.get(run_id) is None


def test_a_machine_that_outlives_its_runs_record_is_still_reaped(
    svc: Services, market: FakeProvider
) -> None:
    """Ended runs expire a month after they end (the table's TTL). A machine whose give-back
    failed all that time keeps its sighting (the proof it was ours and orphaned), so it is
    reaped once the provider lets it go, not left billing as another deployment's; a failed
    terminate is tried again the next tick, without a new grace period."""
    run = new_run(svc)
    svc.runs.save(run.model_copy(update={"status": RunStatus.SUCCEEDED}))
    orphan = market.launch(market.offers[0], label=run_label(run.run_id), api_auth="u:p")
    now = datetime.now(UTC)
    grace = timedelta(seconds=svc.settings.reaper_grace_s)
    assert reap(svc, now).in_grace == [orphan.machine_id]
    market.fail_terminate = True
    failed = reap(svc, now + grace)
    assert failed.reaped == [] and orphan.machine_id in svc.runs.orphans_first_seen("fake")
    _expire(svc, run.run_id)
    market.fail_terminate = False
    later = reap(svc, now + grace + timedelta(minutes=1))
    assert later.reaped == [orphan.machine_id] and later.unknown == []
    assert orphan.machine_id not in market.live


def test_a_provider_that_is_down_is_reported_not_fatal(svc: Services, market: FakeProvider) -> None:
    market.fail_machines = True
    report = reap(svc)
    assert report.failed_providers == ["fake"]


def test_handler_takes_the_scheduled_event(svc: Services, market: FakeProvider) -> None:
    market.launch(market.offers[0], label="subc-r-gone", api_auth="u:p")
    function = next(f for f in d.FUNCTIONS if f.name == "subc-reaper")
    result = lambda_handler(load_event("schedule_dispatch.json"), context_for(function))
    assert result["checked"] == 1
