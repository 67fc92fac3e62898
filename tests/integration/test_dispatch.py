"""Dispatch against moto: what it rents, and invariant 7 (two ticks at once never double-rent)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from functions.dispatch.handler import lambda_handler
from infra import definitions as d
from infra.local.resources import Created
from infra.local.stack import context_for
from subconscious.logic import dispatch as dispatch_module
from subconscious.logic import render_run
from subconscious.logic.dispatch import tick
from subconscious.logic.orders import Acceptance, accept_quote
from subconscious.logic.planning import preemption_rate, read_runs
from subconscious.logic.quotes import create_quote
from subconscious.market.fake import FakeProvider
from subconscious.models import (
    Order,
    OrderRequest,
    QuoteOption,
    QuoteRequest,
    RenderRun,
    RunStatus,
)
from subconscious.models.labels import run_label
from subconscious.models.spot import SpotOutlook
from subconscious.money import to_micros
from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR
from subconscious.planner.policy import Decision, LiveMachine, PlanState, Wait
from subconscious.planner.preemption import PRIOR_HOURS
from subconscious.services import Services
from tests.conftest import install_services, load_event
from tests.integration.workflow import new_run, place_order

TENANT = "tenant-a"


def _runs(svc: Services) -> list[str]:
    return [r.run_id for r in svc.runs.live()]


def _executions(aws: Created) -> list[dict[str, str]]:
    sfn = boto3.client("stepfunctions")
    return list(sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"])


def _accept_requested(
    svc: Services, images: int, now: datetime, within: timedelta
) -> tuple[QuoteOption, Order]:
    """Quote ``images`` due ``within`` from ``now`` and accept the requested option."""
    request = QuoteRequest.model_validate(
        {
            "job": {"prompts": [{"text": "p", "count": images}]},
            "constraints": {"deadline": (now + within).isoformat()},
        }
    )
    quote = create_quote(svc, TENANT, request, now)
    [requested] = [o for o in quote.options if o.label == "requested"]
    order = accept_quote(
        svc,
        Acceptance(
            tenant_id=TENANT,
            idempotency_key=f"k-{images}-{within.total_seconds():.0f}",
            request=OrderRequest(quote_id=quote.quote_id, option_id=requested.option_id),
        ),
    )
    return requested, order


def test_no_work_rents_nothing(svc: Services, aws: Created) -> None:
    report = tick(svc)
    assert report.acted and report.started_runs == []
    assert report.decisions == ["no work waiting"]
    assert _executions(aws) == []


def test_waiting_work_starts_one_run_on_the_cheapest_machine(svc: Services, aws: Created) -> None:
    place_order(svc, TENANT, [8])

    report = tick(svc)

    assert len(report.started_runs) == 1
    (run,) = list(svc.runs.live())
    assert run.offer.offer_id == "o-3090"  # cheapest machine cost for this job in the fake market
    assert run.spend_cap_micros > 0
    (execution,) = _executions(aws)
    assert execution["name"] == run.run_id and run.execution_arn == execution["executionArn"]


def test_a_live_run_blocks_another_rental(svc: Services, aws: Created) -> None:
    place_order(svc, TENANT, [8])
    tick(svc)
    place_order(svc, TENANT, [8])

    report = tick(svc)

    assert report.started_runs == []
    assert len(_executions(aws)) == 1


def test_two_ticks_at_once_rent_once(svc: Services, aws: Created) -> None:
    place_order(svc, TENANT, [8, 8, 8])
    barrier = threading.Barrier(4)
    reports = []

    def run_tick() -> None:
        barrier.wait()
        reports.append(tick(svc))

    threads = [threading.Thread(target=run_tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    started = [r for report in reports for r in report.started_runs]
    assert len(started) == 1
    assert len(_executions(aws)) == 1
    assert len(_runs(svc)) == 1


def test_lease_is_exclusive_until_it_expires(svc: Services) -> None:
    now = datetime.now(UTC)
    assert svc.runs.acquire_lease("dispatch", "a", 30, at=now)
    assert not svc.runs.acquire_lease("dispatch", "b", 30, at=now)
    assert svc.runs.acquire_lease("dispatch", "b", 30, at=now + timedelta(seconds=31))
    svc.runs.release_lease("dispatch", "a")  # not the holder: nothing happens
    assert not svc.runs.acquire_lease("dispatch", "c", 30, at=now + timedelta(seconds=32))
    svc.runs.release_lease("dispatch", "b")
    assert svc.runs.acquire_lease("dispatch", "c", 30, at=now + timedelta(seconds=32))


def test_tick_skips_while_another_holds_the_lease(svc: Services, aws: Created) -> None:
    place_order(svc, TENANT, [8])
    assert svc.runs.acquire_lease("dispatch", "someone", 60)
    report = tick(svc)
    assert not report.acted
    assert _executions(aws) == []


@pytest.mark.moto  # reads or writes AWS itself
def test_a_run_whose_execution_ended_is_closed_and_its_machines_given_back(
    svc: Services, market: FakeProvider
) -> None:
    place_order(svc, TENANT, [8])
    (run_id,) = tick(svc).started_runs
    run = svc.runs.get(run_id)
    assert run is not None and run.execution_arn is not None
    machine = market.launch(run.offer, label=run_label(run_id), api_auth="u:p")
    boto3.client("stepfunctions").stop_execution(executionArn=run.execution_arn)

    report = tick(svc)

    assert report.reaped_runs == [run_id]
    assert machine.machine_id in market.terminated
    closed = svc.runs.get(run_id)
    assert closed is not None and closed.status is RunStatus.FAILED
    assert len(report.started_runs) == 1  # the work still waits: a new run replaces it


def test_a_run_that_never_started_its_execution_is_closed(svc: Services) -> None:
    stale = new_run(svc)
    svc.runs.save(stale.model_copy(update={"started_at": datetime.now(UTC) - timedelta(hours=1)}))
    report = tick(svc)
    assert report.reaped_runs == [stale.run_id]


def test_no_budget_left_rents_nothing(svc: Services, aws: Created) -> None:
    order = place_order(svc, TENANT, [8])
    svc.orders.add_spend(TENANT, order.order_id, 10**9)
    report = tick(svc)
    assert report.started_runs == []
    assert report.decisions[-1] == "open orders have no budget left; not renting"
    assert _executions(aws) == []


def test_handler_takes_the_scheduled_event(svc: Services) -> None:
    place_order(svc, TENANT, [8])
    function = next(f for f in d.FUNCTIONS if f.name == "subc-dispatch")
    result = lambda_handler(load_event("schedule_dispatch.json"), context_for(function))
    assert result["acted"] is True
    assert len(result["started_runs"]) == 1


@pytest.mark.moto  # reads or writes AWS itself
def test_dispatch_gives_back_the_machines_of_a_run_whose_teardown_gave_up(
    svc: Services, market: FakeProvider
) -> None:
    place_order(svc, TENANT, [8])
    (run_id,) = tick(svc).started_runs
    render_run.provision(svc, run_id)
    render_run.record(svc, run_id, None, {"Error": "ProviderError", "Cause": "down"})
    run = svc.runs.get(run_id)
    assert run is not None and run.execution_arn is not None
    boto3.client("stepfunctions").stop_execution(executionArn=run.execution_arn)
    market.fail_terminate = True
    first = tick(svc)  # the provider still fails: the run stays live, nothing new is rented
    assert first.reaped_runs == [] and first.started_runs == []
    assert market.live

    market.fail_terminate = False
    second = tick(svc)

    assert second.reaped_runs == [run_id]
    assert market.live == {} or all(m.label != run_label(run_id) for m in market.live.values())


def test_a_tick_that_lost_its_lease_does_not_rent(svc: Services) -> None:
    place_order(svc, TENANT, [8])
    now = datetime.now(UTC)
    assert svc.runs.acquire_lease("dispatch", "slow-tick", 30, at=now)
    run = new_run(svc).model_copy(update={"run_id": "r-late"})
    later = now + timedelta(seconds=31)  # the lease expired and another tick took it
    assert svc.runs.acquire_lease("dispatch", "fresh-tick", 30, at=later)

    assert not svc.runs.put_under_lease(run, "dispatch", "slow-tick", later)
    assert svc.runs.put_under_lease(run, "dispatch", "fresh-tick", later)
    assert svc.runs.get("r-late") is not None


def test_starting_a_run_never_overwrites_what_its_steps_wrote(
    svc: Services, market: FakeProvider
) -> None:
    place_order(svc, TENANT, [8])
    (run_id,) = tick(svc).started_runs
    render_run.provision(svc, run_id)

    run = svc.runs.get(run_id)
    assert run is not None
    assert run.machine_id == market.launched[0].machine_id
    assert run.execution_arn is not None and run.execution_arn.endswith(f":{run_id}")


def test_a_tight_promise_rents_several_machines_sharing_the_budget(
    svc: Services, aws: Created
) -> None:
    now = datetime.now(UTC)
    requested, order = _accept_requested(svc, 5000, now, timedelta(minutes=45))
    assert requested.machines > 1

    report = tick(svc, now)

    live = list(svc.runs.live())
    assert len(report.started_runs) == len(live) > 1
    assert len({r.offer.offer_id for r in live}) == len(live)  # each offer is one machine
    assert len(_executions(aws)) == len(live)
    # invariant 3: together the runs may spend no more than the order was quoted
    assert sum(r.spend_cap_micros for r in live) <= to_micros(order.total_usd)


def test_a_machine_the_backlog_no_longer_needs_is_asked_to_stop(svc: Services) -> None:
    now = datetime.now(UTC)
    _accept_requested(svc, 40, now, timedelta(days=2))
    cheap, dear = new_run(svc, "o-3090"), new_run(svc, "o-h100")
    for run in (cheap, dear):
        svc.runs.save(run.model_copy(update={"status": RunStatus.RENDERING}))

    report = tick(svc, now)

    assert report.started_runs == []
    assert report.stopped_runs == [dear.run_id]
    assert svc.runs.stop_requested(dear.run_id) and not svc.runs.stop_requested(cheap.run_id)
    assert any(d.startswith("trim: H100") for d in report.decisions)


def test_no_work_seen_stops_no_run(svc: Services) -> None:
    # queue depth is approximate: a tick that sees no work leaves runs to end themselves
    run = new_run(svc, "o-3090")
    svc.runs.save(run.model_copy(update={"status": RunStatus.RENDERING}))

    report = tick(svc)

    assert report.stopped_runs == []
    assert not svc.runs.stop_requested(run.run_id)


def test_a_run_asked_to_stop_is_not_counted_again(svc: Services) -> None:
    place_order(svc, TENANT, [8])
    run = new_run(svc, "o-3090")
    svc.runs.save(run.model_copy(update={"status": RunStatus.RENDERING}))
    svc.runs.request_stop(run.run_id, "trim", datetime.now(UTC))

    report = tick(svc)

    # it is leaving: the work gets a machine of its own, and the run is not told again
    assert report.stopped_runs == []
    assert len(report.started_runs) == 1 and report.started_runs[0] != run.run_id


def _only_one_read(svc: Services, monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Each ``runs.read`` recorded (its ``since``); the other scans of the table fail."""
    reads: list[datetime] = []
    real_read = svc.runs.read

    def read(since: datetime) -> Any:
        reads.append(since)
        return real_read(since)

    def scan(*_: object) -> Any:
        raise AssertionError("a second scan of the runs table")

    monkeypatch.setattr(svc.runs, "read", read)
    monkeypatch.setattr(svc.runs, "live", scan)
    return reads


def test_a_tick_reads_the_runs_table_once(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan reads (and bills) the whole table whatever its filter, and the dispatch ticks
    every minute: live runs, recent failures (the breakers), the day's ended runs (the
    preemption rate) and stop requests come from one read, a run closed by the tick itself
    included (the breakers count it at once)."""
    place_order(svc, TENANT, [8])
    rendering = new_run(svc, "o-3090")
    svc.runs.save(rendering.model_copy(update={"status": RunStatus.RENDERING}))
    svc.runs.request_stop(rendering.run_id, "trim", datetime.now(UTC))
    stale = new_run(svc)  # its execution never started: the tick closes it
    svc.runs.save(stale.model_copy(update={"started_at": datetime.now(UTC) - timedelta(hours=1)}))
    reads = _only_one_read(svc, monkeypatch)

    report = tick(svc)

    assert len(reads) == 1
    assert report.reaped_runs == [stale.run_id]
    assert report.stopped_runs == []  # the stop request was read: not asked again
    # the closed run's host is held off this tick (its machine never served), so the work
    # goes to a host neither run holds
    assert "1 host(s) held off after a failure" in report.decisions
    [started] = report.started_runs
    run = svc.runs.get(started)
    assert run is not None and run.offer.offer_id not in {"o-4090", "o-3090"}


def test_only_failed_runs_hold_a_host_off(svc: Services) -> None:
    """The breakers read the runs that ended (one read serves the preemption rate too): one
    that succeeded, even without ever recording a ready machine, holds nothing off."""
    place_order(svc, TENANT, [8])
    now = datetime.now(UTC)
    for offer_id in ("o-4090", "o-3090", "o-h100"):
        done = new_run(svc, offer_id)
        svc.runs.save(done.model_copy(update={"status": RunStatus.SUCCEEDED, "ended_at": now}))
    report = tick(svc, now)
    assert not any("held off" in d for d in report.decisions)
    assert len(report.started_runs) == 1


def test_a_machine_overdue_from_its_start_up_is_not_taken_as_rendering() -> None:
    from subconscious.logic.planning import machine
    from subconscious.models import RenderRun
    from tests.conftest import offer

    now = datetime(2030, 1, 1, tzinfo=UTC)
    late = RenderRun(
        run_id="r-late",
        offer=offer(),
        spend_cap_micros=1,
        started_at=now - timedelta(hours=1),
        machine_launched_at=now - timedelta(hours=1),
    )
    assert machine(late, now).ready_at > now
    rendering = late.model_copy(update={"status": RunStatus.RENDERING})
    assert machine(rendering, now).ready_at == now


# On-demand work that can wait waits (Uniform Progress: on-demand capacity only once the
# promises need it); a promise under MIN_DEFER_WINDOW away cannot wait, so a tick rents for it.
SOON = timedelta(hours=2, minutes=30)


def test_on_the_lean_worker_a_long_backlog_is_compiled_for_and_the_machine_is_told(
    aws: Created, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBC_WORKER", "lean")
    monkeypatch.setenv("SUBC_WORKER_CHECKPOINT", "runwayml/stable-diffusion-v1-5")
    svc = install_services(market)
    now = datetime.now(UTC)
    # due within hours: this market has no interruptible capacity to wait for, so it rents now
    _accept_requested(svc, 5000, now, SOON)

    tick(svc, now)

    [run] = list(svc.runs.live())
    assert run.compile_shapes == ("512x512x8",)  # the batch its tasks are cut to
    assert run.compile_s == 80  # an SD 1.5 compile, not the dearer SDXL one
    render_run.provision(svc, run.run_id, now)
    assert market.worker_envs == [
        {
            "WORKER_COMPILE_SHAPES": "512x512x8",
            "WORKER_CHECKPOINT": "runwayml/stable-diffusion-v1-5",
        }
    ]


def test_automatic1111_machines_get_no_worker_settings(svc: Services, market: FakeProvider) -> None:
    now = datetime.now(UTC)
    _accept_requested(svc, 5000, now, SOON)
    tick(svc, now)
    [run] = list(svc.runs.live())
    assert run.compile_shapes == () and run.compile_s == 0
    render_run.provision(svc, run.run_id, now)
    assert market.worker_envs == [{}]


def _rate_seen(svc: Services, now: datetime) -> float:
    runs = read_runs(svc, now)
    return preemption_rate(runs.live, runs.ended, now)


def test_the_policy_sees_what_our_interruptible_machines_lived_through(svc: Services) -> None:
    """The rate an interruptible rental is priced at is the one our own runs saw in the last
    day (planner/preemption.py), preempted runs and the hours of every interruptible run,
    live or ended; an on-demand run says nothing of it."""
    now = datetime.now(UTC)
    assert _rate_seen(svc, now) == DEFAULT_PREEMPTIONS_PER_HOUR

    def interruptible(hours_ago: float, **fields: object) -> RenderRun:
        run = new_run(svc).model_copy(
            update={
                "bid_usd_per_hour": Decimal("0.10"),
                "started_at": now - timedelta(hours=hours_ago),
                **fields,
            }
        )
        svc.runs.save(run)
        return run

    for _ in range(3):  # three machines preempted after an hour each
        interruptible(2, status=RunStatus.FAILED, ended_at=now - timedelta(hours=1),
                      error="MachinePreempted: machine m was preempted: gone")  # fmt: skip
    calm = interruptible(1, status=RunStatus.SUCCEEDED, ended_at=now)
    on_demand = new_run(svc).model_copy(update={"status": RunStatus.FAILED, "ended_at": now,
                                                "error": "MachinePreempted: odd"})  # fmt: skip
    svc.runs.save(on_demand)
    live = interruptible(0.5, status=RunStatus.RENDERING)
    rate = _rate_seen(svc, now)
    assert live.run_id in {r.run_id for r in read_runs(svc, now).live}
    # 3 preemptions over 3 + 1 + 0.5 machine-hours, the default worth PRIOR_HOURS
    expected = (3 + DEFAULT_PREEMPTIONS_PER_HOUR * PRIOR_HOURS) / (4.5 + PRIOR_HOURS)
    assert rate == pytest.approx(expected, rel=1e-3) and calm.interruptible


def test_the_quote_prices_preemptions_at_the_rate_our_machines_saw(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quote's "can wait" discount and the dispatch price interruptible rentals at one
    rate: the one our runs lived through (planner.quote.plan_quote keeps the default as its
    floor)."""
    from subconscious.logic import quotes as quotes_module

    now = datetime.now(UTC)
    for _ in range(4):
        run = new_run(svc).model_copy(
            update={
                "bid_usd_per_hour": Decimal("0.10"),
                "started_at": now - timedelta(minutes=30),
                "status": RunStatus.FAILED,
                "ended_at": now - timedelta(minutes=20),
                "error": "MachinePreempted: machine m was preempted: gone",
            }
        )
        svc.runs.save(run)
    seen: list[float] = []
    real = quotes_module.plan_quote  # type: ignore[attr-defined]

    def spy(*args: object, preemptions_per_hour: float, **kwargs: object) -> object:
        seen.append(preemptions_per_hour)
        return real(*args, preemptions_per_hour=preemptions_per_hour, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(quotes_module, "plan_quote", spy)
    request = QuoteRequest.model_validate({"job": {"prompts": [{"text": "p", "count": 8}]}})
    create_quote(svc, TENANT, request, now)
    assert seen == [pytest.approx(_rate_seen(svc, now))]
    assert seen[0] > 1.0  # four preemptions in 40 machine-minutes, beside the prior


def test_a_quote_reads_the_runs_table_once(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live runs (and which of them are leaving) and the day's ended runs a quote needs
    come from one scan."""
    now = datetime.now(UTC)
    leaving = new_run(svc, "o-3090")
    svc.runs.save(leaving.model_copy(update={"status": RunStatus.RENDERING}))
    svc.runs.request_stop(leaving.run_id, "trim", now)
    reads = _only_one_read(svc, monkeypatch)
    from subconscious.logic import quotes as quotes_module

    planned: list[list[LiveMachine]] = []
    real = quotes_module.plan_quote  # type: ignore[attr-defined]

    def spy(*args: object, machines: list[LiveMachine], **kwargs: object) -> object:
        planned.append(machines)
        return real(*args, machines=machines, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(quotes_module, "plan_quote", spy)
    request = QuoteRequest.model_validate({"job": {"prompts": [{"text": "p", "count": 8}]}})
    assert create_quote(svc, TENANT, request, now).options
    assert len(reads) == 1 and reads[0] <= now - timedelta(days=1)
    # the run asked to stop is planned as leaving: never counted as capacity
    assert [(m.machine_id, m.leaving) for m in planned[0]] == [(leaving.run_id, True)]


def test_the_policy_sees_what_the_history_says_of_interruptible_capacity(
    svc: Services, aws: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price refresh's outlook reaches the policy whole: per card how often it took bids,
    its typical bid then, and how long its capacity stayed gone (nothing without a history)."""
    seen: list[PlanState] = []

    def policy(state: PlanState) -> list[Decision]:
        seen.append(state)
        return [Wait("looking")]

    monkeypatch.setattr(dispatch_module, "decide", policy)
    place_order(svc, TENANT, [8])
    tick(svc)
    shares, bids, gaps = {"RTX 3090": 0.4, "H100": 0.0}, {"RTX 3090": 61_000}, {"RTX 3090": 5400.0}
    svc.prices.save_outlook(SpotOutlook(shares, 12, datetime.now(UTC), bids, gaps))
    tick(svc)

    without, after = seen
    assert (without.spot_shares, without.spot_bids, without.spot_gaps) == ({}, {}, {})
    assert (after.spot_shares, after.spot_bids, after.spot_gaps) == (shares, bids, gaps)
