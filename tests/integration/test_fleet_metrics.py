"""Dispatch emits what the alarms watch: live machines, the oldest one's age, the spend rate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.dispatch.handler import lambda_handler
from infra import definitions as d
from infra.local.stack import context_for
from subconscious.logic import render_run
from subconscious.logic.dispatch import emit_fleet_metrics, tick
from subconscious.market.fake import FakeProvider
from subconscious.models import RenderRun
from subconscious.observability import (
    LIVE_MACHINES,
    METRICS_NAMESPACE,
    OLDEST_MACHINE_AGE_S,
    SPEND_RATE_USD_PER_HOUR,
    metrics,
)
from subconscious.services import Services
from tests.conftest import install_services, load_event, offer
from tests.integration.workflow import place_order
from tests.twins import install_memory_services

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DISPATCH = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-dispatch")


def _emf_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def _run(run_id: str, usd: str, launched_min_ago: int | None, ended: bool = False) -> RenderRun:
    launched = NOW - timedelta(minutes=launched_min_ago) if launched_min_ago is not None else None
    return RenderRun(
        run_id=run_id,
        offer=offer(offer_id=run_id, usd_per_hour=usd),
        spend_cap_micros=10**6,
        started_at=NOW - timedelta(hours=3),
        machine_launched_at=launched,
        machine_ended_at=NOW if ended else None,
    )


@pytest.fixture(params=["moto", "twins"])
def svc(request: pytest.FixtureRequest, market: FakeProvider) -> Services:
    """Each case twice: over moto (the ``aws`` fixture) and over the in-memory twins of
    ``dal/memory.py`` (``tests/twins.py``), to show a test written on ``svc`` runs on both."""
    if request.param == "twins":
        return install_memory_services(market)
    request.getfixturevalue("aws")
    return install_services(market)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> None:
    metrics.clear_metrics()


def test_values_count_only_machines_that_run() -> None:
    runs = [
        _run("r-1", "0.40", 90),
        _run("r-2", "1.10", 30),
        _run("r-3", "9.99", None),  # not launched yet: costs nothing
        _run("r-4", "9.99", 200, ended=True),  # torn down, not recorded yet
    ]
    emit_fleet_metrics(runs, NOW)
    values = {name: m["Value"] for name, m in metrics.metric_set.items()}
    assert values == {
        LIVE_MACHINES: [2.0],
        OLDEST_MACHINE_AGE_S: [5400.0],
        SPEND_RATE_USD_PER_HOUR: [1.5],
    }


def test_no_live_machine_still_emits_zeros() -> None:
    emit_fleet_metrics([], NOW)
    assert {n: m["Value"] for n, m in metrics.metric_set.items()} == {
        LIVE_MACHINES: [0.0],
        OLDEST_MACHINE_AGE_S: [0.0],
        SPEND_RATE_USD_PER_HOUR: [0.0],
    }


def test_the_dispatch_handler_flushes_one_emf_line_per_tick(
    svc: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    place_order(svc, "tenant-a", [8])
    (run_id,) = tick(svc).started_runs
    render_run.provision(svc, run_id)
    metrics.clear_metrics()
    capsys.readouterr()

    lambda_handler(load_event("schedule_dispatch.json"), context_for(DISPATCH))

    (line,) = _emf_lines(capsys.readouterr().out)
    (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Namespace"] == METRICS_NAMESPACE
    names = {m["Name"] for m in directive["Metrics"]}
    assert names == {LIVE_MACHINES, OLDEST_MACHINE_AGE_S, SPEND_RATE_USD_PER_HOUR}
    assert line[LIVE_MACHINES] == [1.0]
    assert line[SPEND_RATE_USD_PER_HOUR] == [0.2]  # the fake market's RTX 3090
    assert metrics.metric_set == {}


def test_disabled_metrics_are_dropped_not_kept(
    svc: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(3):
        lambda_handler(load_event("schedule_dispatch.json"), context_for(DISPATCH))
    assert _emf_lines(capsys.readouterr().out) == []
    assert metrics.metric_set == {}
