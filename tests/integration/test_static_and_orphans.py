"""Static servers (set up by hand) are used but never stopped; a machine whose run was killed
without Teardown is destroyed by the reaper."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from subconscious.logic import render_run
from subconscious.logic.reaper import reap
from subconscious.market.fake import FakeProvider
from subconscious.market.static import StaticProvider
from subconscious.models import OrderState
from subconscious.models.servers import StaticServer
from subconscious.services import Services
from tests.integration.workflow import boto_queue, new_run, place_order, renderer

TENANT = "tenant-a"


@pytest.fixture
def static_server(svc: Services) -> Iterator[StaticProvider]:
    with renderer("--images-per-s", "400") as url:
        server = StaticServer(url=url, gpu="RTX 4090", gpu_memory_gb=24)
        provider = StaticProvider([server])
        svc.providers_by_name.add(provider)
        yield provider


def test_a_static_server_renders_and_is_never_stopped(
    svc: Services, static_server: StaticProvider
) -> None:
    order = place_order(svc, TENANT, [8])
    offer = static_server.list_offers()[0]
    assert offer.usd_per_hour == Decimal(0) and offer.startup_s == 0
    run = new_run(svc).model_copy(update={"offer": offer})
    svc.runs.save(run)

    render_run.provision(svc, run.run_id)
    assert render_run.wait_ready(svc, run.run_id, ready_timeout_s=30) == {"ready": True}
    render_run.render_slice(svc, run.run_id, slice_s=30)
    render_run.teardown(svc, run.run_id)

    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None and done.state is OrderState.COMPLETED
    assert static_server.status("static-0").status.value == "running"  # still serving
    assert static_server.machines() == []  # so the reaper can never see it


def test_a_machine_whose_run_was_killed_without_teardown_is_reaped(
    svc: Services, market: FakeProvider
) -> None:
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    (machine_id,) = market.live
    # The run was killed and closed without Teardown (its Lambda timed out, say): the record is
    # final, the machine still runs and still costs money.
    render_run.record(svc, run.run_id, {"Error": "States.Timeout", "Cause": "killed"})
    assert machine_id in market.live
    now = datetime.now(UTC)

    assert reap(svc, now).in_grace == [machine_id]
    assert machine_id in market.live  # Teardown might still be on its way

    report = reap(svc, now + timedelta(seconds=svc.settings.reaper_grace_s))

    assert report.reaped == [machine_id]
    assert machine_id not in market.live


@pytest.mark.moto  # reads or writes AWS itself
def test_a_task_that_failed_on_a_static_server_is_rendered_there_again(
    svc: Services, static_server: StaticProvider
) -> None:
    """A hand-run server keeps its id from run to run and has no other to go to: a retry never
    avoids it (it would bounce for ever and its order would expire with nothing wrong)."""
    from subconscious.logic.orders import render_tasks

    order = place_order(svc, TENANT, [8])
    [task] = render_tasks(TENANT, order)
    boto_queue(svc)._sqs.purge_queue(QueueUrl=boto_queue(svc).url)
    svc.queue.send([task.model_copy(update={"attempts": 1, "avoid_machines": ("static-0",)})])
    run = new_run(svc).model_copy(update={"offer": static_server.list_offers()[0]})
    svc.runs.save(run)
    render_run.provision(svc, run.run_id)

    result = render_run.render_slice(svc, run.run_id, slice_s=30)

    assert result.images == 8
    done = svc.orders.get(TENANT, order.order_id)
    assert done is not None and done.state is OrderState.COMPLETED
