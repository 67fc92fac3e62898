"""An order's actual cost, recorded as it renders and completed when its run is recorded: the
GPU as the provider bills it (its billing increment), AWS's charges as planner/serving.py
estimates them (moto, a fake provider, the placeholder renderer)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from subconscious.dal.orders import OrderStore
from subconscious.logic import render_run
from subconscious.market.fake import FakeProvider
from subconscious.models import Order
from subconscious.money import to_micros
from subconscious.planner.costs import BILLING_INCREMENT_S, aws_machine_micros, cost_for
from subconscious.planner.serving import serving_cost_usd
from subconscious.services import Services
from tests.integration.workflow import new_run, place_order, renderer

TENANT = "tenant-a"
HELD_S = 600


@pytest.fixture
def a1111(market: FakeProvider) -> Iterator[str]:
    with renderer("--images-per-s", "400") as url:
        market.url = url
        yield url


def _order(svc: Services, order_id: str) -> Order:
    order = svc.orders.get(TENANT, order_id)
    assert order is not None
    return order


def _rendered_and_torn_down(svc: Services, order: Order) -> str:
    """One run renders the whole order; its machine is given back HELD_S after launch."""
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    assert render_run.wait_ready(svc, run.run_id, ready_timeout_s=60) == {"ready": True}
    assert render_run.render_slice(svc, run.run_id, slice_s=30).images == order.images_total
    launched = svc.runs.get(run.run_id)
    assert launched is not None and launched.machine_launched_at is not None
    render_run.teardown(
        svc, run.run_id, now=launched.machine_launched_at + timedelta(seconds=HELD_S)
    )
    return run.run_id


@pytest.mark.moto  # reads or writes AWS itself
def test_an_orders_cost_is_counted_as_it_renders_and_completed_at_record(
    svc: Services, a1111: str
) -> None:
    order = place_order(svc, TENANT, [10, 6])
    run_id = _rendered_and_torn_down(svc, order)

    rendering = _order(svc, order.order_id)
    # as it rendered: the batches' GPU seconds and AWS's per-image charges, nothing per run yet
    assert 0 < rendering.gpu_cost_micros == rendering.spend_micros
    assert rendering.aws_cost_micros > 0 and not rendering.run_costs

    render_run.record(svc, run_id)

    done = _order(svc, order.order_id)
    # the fake provider is not in BILLING_INCREMENT_S: billed by the hour, so ten minutes at
    # $0.40/h cost the whole hour, all of it this order's (the run's only one)
    assert "fake" not in BILLING_INCREMENT_S
    assert done.gpu_cost_micros == cost_for("fake", 400_000, HELD_S) == 400_000
    # AWS: the machine held ten minutes, polled once (ready at the first poll), and 16 images
    # in tasks of 8, 2 and 6 (between a task per image and tasks of 8, rounded up per batch)
    ran = svc.runs.get(run_id)
    assert ran is not None and ran.ready_at is not None and ran.machine_launched_at is not None
    startup_s = (ran.ready_at - ran.machine_launched_at).total_seconds()
    assert startup_s < 15
    assert done.aws_cost_micros >= aws_machine_micros(HELD_S, polls=1)
    estimate = {
        per_task: to_micros(
            serving_cost_usd(
                images=16,
                width=512,
                height=512,
                machine_seconds=HELD_S,
                machines=1,
                startup_seconds=startup_s,
                images_per_task=per_task,
            )
        )
        for per_task in (1, 8)
    }
    assert estimate[8] - 1 <= done.aws_cost_micros <= estimate[1] + 3


@pytest.mark.moto  # reads or writes AWS itself
def test_a_retried_record_does_not_count_the_run_twice(svc: Services, a1111: str) -> None:
    order = place_order(svc, TENANT, [8])
    run_id = _rendered_and_torn_down(svc, order)
    render_run.record(svc, run_id)
    once = _order(svc, order.order_id)
    render_run.record(svc, run_id)  # Step Functions retried the step
    twice = _order(svc, order.order_id)
    assert (twice.gpu_cost_micros, twice.aws_cost_micros) == (
        once.gpu_cost_micros,
        once.aws_cost_micros,
    )
    assert list(twice.run_costs) == [run_id]


@pytest.mark.moto  # reads or writes AWS itself
def test_a_runs_overhead_is_shared_among_its_orders_by_images(svc: Services, a1111: str) -> None:
    small = place_order(svc, TENANT, [4])
    large = place_order(svc, TENANT, [8, 4])
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    render_run.wait_ready(svc, run.run_id, ready_timeout_s=60)
    render_run.render_slice(svc, run.run_id, slice_s=30)
    launched = svc.runs.get(run.run_id)
    assert launched is not None and launched.machine_launched_at is not None
    render_run.teardown(svc, run.run_id, now=launched.machine_launched_at + timedelta(seconds=60))
    render_run.record(svc, run.run_id)

    shares = [_order(svc, o.order_id).run_costs[run.run_id] for o in (small, large)]
    # 4 and 12 images: a quarter and three quarters of the run's overhead, each rounded up
    assert shares[0].gpu_micros * 3 == pytest.approx(shares[1].gpu_micros, abs=3)
    assert shares[0].aws_micros * 3 == pytest.approx(shares[1].aws_micros, abs=3)
    ran = svc.runs.get(run.run_id)
    assert ran is not None
    over = 400_000 - ran.charged_gpu_micros  # one hour billed, less what the batches charged
    assert 0 <= shares[0].gpu_micros + shares[1].gpu_micros - over <= 2


def test_a_store_failure_setting_a_runs_share_is_raised() -> None:
    """Only "the map exists already" is expected of the first update; anything else is not
    swallowed (the record step logs it and still closes the run)."""

    class Down:
        def update_item(self, **_: object) -> None:
            raise RuntimeError("DynamoDB is down")

    store = OrderStore("subc-orders", table=Down())
    with pytest.raises(RuntimeError, match="down"):
        store.set_run_cost("t", "o-1", "r-1", 1, 1)


@pytest.mark.moto  # reads or writes AWS itself
def test_a_failure_sharing_costs_never_fails_the_record(
    svc: Services, a1111: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = place_order(svc, TENANT, [8])
    run_id = _rendered_and_torn_down(svc, order)

    def down(*_: object) -> None:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(svc.orders, "set_run_cost", down)
    assert render_run.record(svc, run_id) == {"status": "succeeded"}
    assert not _order(svc, order.order_id).run_costs
