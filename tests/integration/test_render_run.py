"""Render-run steps against moto, a fake provider and the placeholder renderer process.

Invariant 1: no machine is left running. Invariant 2: no image lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from infra.local.resources import Created
from subconscious.errors import (
    ConfigurationError,
    MachineGone,
    MachineNotReady,
    RendererUnavailable,
)
from subconscious.logic import render_run
from subconscious.logic.orders import cancel_order, render_tasks
from subconscious.logic.throughput import predicted_seconds
from subconscious.market.fake import FakeProvider
from subconscious.models import OrderState, RenderTask, RunStatus
from subconscious.models.labels import run_label
from subconscious.services import Services
from tests.conftest import with_settings
from tests.integration.workflow import (
    boto_queue,
    duplicate_first_task,
    image_rows,
    new_run,
    place_order,
    queue_depth,
    renderer,
    s3_keys,
)

TENANT = "tenant-a"


@pytest.fixture
def a1111(market: FakeProvider) -> Iterator[str]:
    with renderer("--images-per-s", "400") as url:
        market.url = url
        yield url


def _drain(svc: Services) -> list[dict[str, Any]]:
    """Every message now visible in the work queue (received, so hidden afterwards)."""
    messages: list[dict[str, Any]] = []
    queue = boto_queue(svc)
    while batch := queue._sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        messages += batch
    return messages


def _provisioned(svc: Services, **kwargs: Any) -> str:
    run = new_run(svc, **kwargs)
    render_run.provision(svc, run.run_id)
    return run.run_id


@pytest.mark.moto  # reads or writes AWS itself
def test_run_renders_an_order_to_completion(svc: Services, a1111: str) -> None:
    order = place_order(svc, TENANT, [10, 6])
    run_id = _provisioned(svc)
    assert render_run.wait_ready(svc, run_id, ready_timeout_s=60) == {"ready": True}

    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert result.images == 16
    assert result.more is False and result.reason == "queue empty"
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None
    assert (done.state, done.images_done) == (OrderState.COMPLETED, 16)
    assert done.spend_micros > 0
    # what the prior model predicted for those 16 images, kept to move the model at Record
    run = svc.runs.get(run_id)
    assert run is not None and run.images == 16
    expected = sum(
        predicted_seconds(run.offer.gpu, t, t.batch_size) for t in render_tasks(TENANT, done)
    )
    assert abs(run.predicted_seconds - expected) < Decimal("0.01")
    assert len(s3_keys()) == 16
    assert queue_depth(svc) == (0, 0)


def test_duplicate_delivery_stores_and_counts_each_image_once(
    svc: Services, aws: Created, a1111: str
) -> None:
    order = place_order(svc, TENANT, [8, 8])
    duplicate_first_task(svc, aws.queue_url)
    run_id = _provisioned(svc)

    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert result.images == 16  # the same 8 images rendered twice...
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None
    assert done.images_done == 8  # ...counted once
    assert done.state is OrderState.RENDERING
    assert len(image_rows()) == 8
    assert len(s3_keys()) == 8  # the re-render overwrote the same keys


@pytest.mark.moto  # reads or writes AWS itself
def test_message_is_kept_until_its_images_are_in_s3(
    svc: Services, a1111: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = place_order(svc, TENANT, [8])
    run_id = _provisioned(svc)
    bucket = svc.bucket
    original = bucket.put_png
    calls = {"n": 0}

    def flaky_put(key: str, body: bytes, metadata: dict[str, str]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("S3 down")
        original(key, body, metadata)

    monkeypatch.setattr(bucket, "put_png", flaky_put)
    with pytest.raises(RuntimeError, match="S3 down"):
        render_run.render_slice(svc, run_id, slice_s=30)

    assert queue_depth(svc) == (1, 0)  # handed back at once, not lost
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None
    assert done.images_done == len(image_rows()) < 8  # only what was stored is counted
    assert {r["key"] for r in image_rows()} <= set(s3_keys())  # nothing counted that is not in S3
    monkeypatch.setattr(bucket, "put_png", original)
    render_run.render_slice(svc, run_id, slice_s=30)
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None
    assert (done.images_done, done.state) == (8, OrderState.COMPLETED)


@pytest.mark.moto  # reads or writes AWS itself
def test_tasks_of_a_cancelled_order_are_not_rendered(svc: Services, a1111: str) -> None:
    order = place_order(svc, TENANT, [16])
    cancel_order(svc, TENANT, order.order_id)
    run_id = _provisioned(svc)

    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert result.images == 0
    assert s3_keys() == []
    assert queue_depth(svc) == (0, 0)
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None and done.state is OrderState.CANCELLED


@pytest.mark.moto  # reads or writes AWS itself
def test_a_dead_renderer_hands_tasks_back_and_raises(svc: Services, market: FakeProvider) -> None:
    place_order(svc, TENANT, [8, 8])
    with renderer("--images-per-s", "400", "--crash-after-images", "4") as url:
        market.url = url
        run_id = _provisioned(svc)
        with pytest.raises(RendererUnavailable):
            render_run.render_slice(svc, run_id, slice_s=30)
    waiting, in_flight = queue_depth(svc)
    # visible again for the next machine: the task that was rendering, as two halves counted
    # as one more attempt and kept off this machine; the other, untouched
    assert (waiting, in_flight) == (3, 0)
    tasks = sorted(
        (RenderTask.model_validate_json(m["Body"]) for m in _drain(svc)),
        key=lambda t: (t.batch_size, t.seed),
    )
    machine_id = svc.runs.get(run_id).machine_id  # type: ignore[union-attr]
    assert [(t.batch_size, t.attempts) for t in tasks] == [(4, 1), (4, 1), (8, 0)]
    assert tasks[0].avoid_machines == tasks[1].avoid_machines == (machine_id,)
    assert {*tasks[0].seeds, *tasks[1].seeds} == set(range(tasks[0].seed, tasks[0].seed + 8))
    assert image_rows() == []


def test_spend_cap_stops_the_run_before_rendering(svc: Services, a1111: str) -> None:
    place_order(svc, TENANT, [8])
    run_id = _provisioned(svc, cap_micros=0)

    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert (result.more, result.reason, result.images) == (False, "spend cap", 0)
    assert queue_depth(svc) == (1, 0)


def test_teardown_terminates_every_machine_with_the_run_label(
    svc: Services, market: FakeProvider
) -> None:
    run_id = _provisioned(svc)
    # a launch whose answer was lost: same label, not recorded on the run
    offer = market.offers[0]
    stray = market.launch(offer, label=run_label(run_id), api_auth="x:y")
    other = market.launch(offer, label=run_label("r-someone-else"), api_auth="x:y")

    result = render_run.teardown(svc, run_id)

    assert stray.machine_id in result["terminated"]
    assert len(result["terminated"]) == 2
    assert set(market.live) == {other.machine_id}
    assert render_run.teardown(svc, run_id)["terminated"] == [market.launched[0].machine_id]
    assert set(market.live) == {other.machine_id}  # repeating it is harmless


def test_provision_is_idempotent(svc: Services, market: FakeProvider) -> None:
    run = new_run(svc)
    first = render_run.provision(svc, run.run_id)
    second = render_run.provision(svc, run.run_id)
    assert first == second
    assert len(market.launched) == 1


def test_wait_ready_gives_up_after_the_timeout(svc: Services, market: FakeProvider) -> None:
    run_id = _provisioned(svc)
    later = datetime.now(UTC) + timedelta(seconds=120)
    with pytest.raises(MachineNotReady):
        render_run.wait_ready(svc, run_id, ready_timeout_s=60, now=later)


def test_wait_ready_notices_a_machine_that_died(svc: Services, market: FakeProvider) -> None:
    run_id = _provisioned(svc)
    market.terminate(market.launched[0].machine_id)
    with pytest.raises(MachineGone):
        render_run.wait_ready(svc, run_id, ready_timeout_s=60)


def test_record_prices_the_machine_time_and_marks_failure(
    svc: Services, market: FakeProvider
) -> None:
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    launched = svc.runs.get(run.run_id)
    assert launched is not None and launched.machine_launched_at is not None
    render_run.teardown(svc, run.run_id, now=launched.machine_launched_at + timedelta(hours=1))

    outcome = render_run.record(svc, run.run_id, {"Error": "RendererUnavailable", "Cause": "gone"})

    recorded = svc.runs.get(run.run_id)
    assert recorded is not None
    assert outcome == {"status": "failed"}
    assert recorded.status is RunStatus.FAILED
    assert recorded.spend_micros == 400_000  # one hour at $0.40
    assert recorded.error is not None and recorded.error.startswith("RendererUnavailable")


def test_machine_credential_is_per_run_and_never_stored(
    svc: Services, market: FakeProvider
) -> None:
    a = render_run.machine_credential(svc, "r-1")
    b = render_run.machine_credential(svc, "r-2")
    assert a != b and a == render_run.machine_credential(svc, "r-1")
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    stored = svc.runs.get(run.run_id)
    assert stored is not None
    assert render_run.machine_credential(svc, run.run_id)[1] not in stored.model_dump_json()


def test_a_retried_provision_adopts_the_machine_whose_launch_answer_was_lost(
    svc: Services, market: FakeProvider
) -> None:
    run = new_run(svc)
    lost = market.launch(run.offer, label=run_label(run.run_id), api_auth="x:y")

    assert render_run.provision(svc, run.run_id) == {"machine_id": lost.machine_id}
    assert len(market.launched) == 1


def test_a_teardown_that_gave_up_keeps_the_run_live(svc: Services, market: FakeProvider) -> None:
    run_id = _provisioned(svc)
    failure = {"Error": "ProviderError", "Cause": "market down"}

    assert render_run.record(svc, run_id, None, failure) == {"status": "teardown_failed"}

    assert [r.run_id for r in svc.runs.live()] == [run_id]  # dispatch will retry the give-back


def test_teardown_stops_the_recorded_machine_even_if_listing_fails(
    svc: Services, market: FakeProvider
) -> None:
    run_id = _provisioned(svc)
    (machine_id,) = market.live
    market.fail_machines = True
    with pytest.raises(Exception, match="cannot list"):
        render_run.teardown(svc, run_id)
    assert machine_id not in market.live  # stopped before the list call failed


def test_a_stop_requested_by_the_dispatch_ends_the_run_before_it_takes_work(
    svc: Services, a1111: str
) -> None:
    place_order(svc, TENANT, [8])
    run_id = _provisioned(svc)
    assert not svc.runs.stop_requested(run_id)
    svc.runs.request_stop(run_id, "trim: RTX 4090 not needed on time", datetime.now(UTC))
    run = svc.runs.get(run_id)
    assert run is not None  # the request is an item of its own: the run's item is untouched

    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert result.more is False and result.reason == "stop requested"
    assert result.images == 0
    assert queue_depth(svc) == (1, 0)  # its task waits for another machine
    assert svc.runs.stop_requested(run_id)
    assert [r.run_id for r in svc.runs.live()] == [run_id]  # not a run of its own


def test_a_run_stopped_while_booting_ends_without_touching_its_machine(
    svc: Services, market: FakeProvider
) -> None:
    place_order(svc, TENANT, [8])
    run_id = _provisioned(svc)
    svc.runs.request_stop(run_id, "trim", datetime.now(UTC))
    market.url = None  # the machine never answers: nothing may call it

    assert render_run.wait_ready(svc, run_id, ready_timeout_s=600) == {"ready": True}
    result = render_run.render_slice(svc, run_id, slice_s=30)

    assert (result.more, result.reason, result.images) == (False, "stop requested", 0)
    assert queue_depth(svc) == (1, 0)


def test_a_duplicate_delivery_costs_the_order_nothing(
    svc: Services, aws: Created, market: FakeProvider
) -> None:
    order = place_order(svc, TENANT, [8, 8])
    duplicate_first_task(svc, aws.queue_url)
    with renderer("--images-per-s", "400") as url:
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        render_run.render_slice(svc, run.run_id, slice_s=30)

    charged = svc.orders.get(TENANT, order.order_id)
    assert charged is not None
    one_batch = 112  # 1 s at $0.40/h, rounded up: what 8 new images cost
    assert charged.spend_micros == one_batch  # the re-render of the duplicate is not billed


def test_a_short_machine_secret_is_refused(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = with_settings(svc, machine_auth_secret=SecretStr("short"))
    with pytest.raises(ConfigurationError):
        render_run.machine_credential(svc, "r-1")
