"""Every order ends (invariant 8), one acceptance per quote (invariant 10), and failures are held
off where they happened (invariant 9): the logic against moto.

Each test here reproduces a finding of issue 13 and fails on the code before it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from infra.local.resources import Created
from subconscious.errors import (
    Conflict,
    MachineGone,
    MachineNotReady,
    RendererError,
    RendererOutOfMemory,
    RendererUnavailable,
    TaskCrashedMachine,
)
from subconscious.logic import lifecycle, render_run
from subconscious.logic import orders as order_logic
from subconscious.logic.dispatch import breakers, tick
from subconscious.logic.orders import Acceptance, _accept, accept_quote, order_out, render_tasks
from subconscious.logic.planning import read_runs
from subconscious.logic.quotes import create_quote
from subconscious.market.fake import FakeProvider
from subconscious.models import (
    EndReason,
    Order,
    OrderRequest,
    OrderState,
    QuoteRequest,
    RenderRun,
    RenderTask,
    RunStatus,
)
from subconscious.render.a1111 import A1111Client
from subconscious.services import Services
from tests.conftest import with_settings
from tests.integration.workflow import (
    boto_queue,
    image_rows,
    new_run,
    place_order,
    queue_depth,
    renderer,
)

TENANT = "tenant-a"


def _dead_letter(svc: Services, aws: Created, tasks: list[RenderTask]) -> None:
    """What SQS does after MAX_RECEIVE_COUNT failed deliveries: the task leaves the work queue
    for the dead-letter queue."""
    sqs = boto3.client("sqs")
    while batch := sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in batch:
            sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
    for task in tasks:
        sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=task.model_dump_json())


def _deliver(svc: Services, order: Order, task: RenderTask) -> None:
    """Record every image of ``task`` as delivered (what the render step's storage does)."""
    for seed in task.seeds:
        svc.images.record(
            TENANT,
            order.order_id,
            prompt_index=task.prompt_index,
            prompt=task.prompt,
            seed=seed,
            width=task.width,
            height=task.height,
            key=f"k/{seed}",
        )


def _winner(svc: Services) -> Acceptance:
    """An acceptance of a fresh 8-image quote, by the key that will win it."""
    request = QuoteRequest.model_validate({"job": {"prompts": [{"text": "p", "count": 8}]}})
    quote = create_quote(svc, TENANT, request)
    return Acceptance(
        tenant_id=TENANT,
        idempotency_key="key-winner",
        request=OrderRequest(quote_id=quote.quote_id, option_id=quote.options[0].option_id),
    )


def _back_to_quoted(order: Order, images_done: int | None = None) -> None:
    """What an acceptance interrupted before its last step leaves: the order in ``quoted``."""
    extra = "" if images_done is None else ", images_done = :d"
    values: dict[str, Any] = {":q": "quoted"}
    if images_done is not None:
        values[":d"] = images_done
    boto3.resource("dynamodb").Table("subc-orders").update_item(
        Key={"tenant_id": TENANT, "order_id": order.order_id},
        UpdateExpression=f"SET #s = :q{extra}",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=values,
    )


def _get(svc: Services, order: Order) -> Order:
    stored = svc.orders.get(TENANT, order.order_id)
    assert stored is not None
    return stored


def test_an_order_whose_tasks_are_dead_lettered_ends_failed_and_costs_nothing(
    svc: Services, aws: Created
) -> None:
    order = place_order(svc, TENANT, [8])
    _dead_letter(svc, aws, render_tasks(TENANT, order))

    report = tick(svc)

    assert report.ended_orders == {order.order_id: "failed"}
    ended = _get(svc, order)
    assert (ended.state, ended.end_reason) == (OrderState.FAILED, EndReason.TASKS_FAILED)
    assert (ended.images_done, ended.images_failed) == (0, 8)
    assert ended.ended_at is not None
    out = order_out(ended)
    assert (out.charge_usd, out.eta) == (Decimal(0), None)
    assert report.started_runs == []  # nothing left to rent for
    # drained: a second tick finds nothing to settle
    assert lifecycle.sweep(svc).dead_letters == 0


def test_some_images_delivered_then_the_rest_dead_lettered_is_partial_and_charged_for_those(
    svc: Services, aws: Created
) -> None:
    order = place_order(svc, TENANT, [8, 8])
    first, second = render_tasks(TENANT, order)
    _deliver(svc, order, first)
    _dead_letter(svc, aws, [second])

    lifecycle.sweep(svc)

    ended = _get(svc, order)
    assert ended.state is OrderState.PARTIALLY_COMPLETED
    assert (ended.images_done, ended.images_failed, ended.images_total) == (8, 8, 16)
    assert order_out(ended).charge_usd == ended.price_per_image_usd * 8 < ended.total_usd


@pytest.mark.moto  # reads or writes AWS itself
def test_an_image_ends_once_delivered_or_given_up_never_both(svc: Services) -> None:
    order = place_order(svc, TENANT, [4])
    [task] = render_tasks(TENANT, order)
    _deliver(svc, order, task.model_copy(update={"batch_size": 2}))  # seeds 0 and 1 delivered

    ended_in = lifecycle.give_up(svc, task, "test")
    _deliver(svc, order, task)  # a late copy rendering seeds 2 and 3 after they were given up

    ended = _get(svc, order)
    assert ended_in is ended.state is OrderState.PARTIALLY_COMPLETED
    assert (ended.images_done, ended.images_failed) == (2, 2)
    assert lifecycle.give_up(svc, task, "again") is None  # idempotent: nothing more to end
    assert _get(svc, order).images_failed == 2
    # the images listed are the delivered ones only
    listed = svc.images.page(TENANT, order.order_id, 100, None)[0]
    assert sorted(i.seed for i in listed) == task.seeds[:2]
    assert len(image_rows()) == 4  # one row per image: 2 delivered, 2 given up


@pytest.mark.parametrize(
    ("late_work", "past_deadline", "state"),
    [
        ("stop", timedelta(seconds=1), OrderState.EXPIRED),
        ("continue", timedelta(seconds=1), OrderState.ACCEPTED),
        ("continue", timedelta(hours=24, seconds=1), OrderState.EXPIRED),
    ],
)
def test_an_order_past_its_time_expires_as_its_late_work_says(
    svc: Services, late_work: str, past_deadline: timedelta, state: OrderState
) -> None:
    deadline = datetime.now(UTC) + timedelta(hours=3)
    request = QuoteRequest.model_validate(
        {
            "job": {"prompts": [{"text": "p", "count": 8}]},
            "constraints": {"deadline": deadline.isoformat(), "late_work": late_work},
        }
    )
    quote = create_quote(svc, TENANT, request)
    order = accept_quote(
        svc,
        Acceptance(
            tenant_id=TENANT,
            idempotency_key=uuid.uuid4().hex,
            request=OrderRequest(quote_id=quote.quote_id, option_id=quote.options[0].option_id),
        ),
    )

    report = lifecycle.sweep(svc, deadline + past_deadline)

    ended = _get(svc, order)
    assert ended.state is state
    if state is OrderState.EXPIRED:
        assert ended.end_reason is EndReason.DEADLINE_PASSED
        assert report.ended == {order.order_id: "expired"}
    assert lifecycle.sweep(svc, deadline - timedelta(minutes=1)).ended == {}


@pytest.mark.moto  # reads or writes AWS itself
def test_an_acceptance_abandoned_in_quoted_fails(svc: Services) -> None:
    order = place_order(svc, TENANT, [8])
    _back_to_quoted(order)
    assert lifecycle.sweep(svc, order.created_at + timedelta(minutes=59)).ended == {}

    lifecycle.sweep(svc, order.created_at + timedelta(hours=1, seconds=1))

    ended = _get(svc, order)
    assert (ended.state, ended.end_reason) == (OrderState.FAILED, EndReason.ACCEPTANCE_INCOMPLETE)


def test_concurrent_acceptances_with_different_keys_make_one_order_and_one_set_of_tasks(
    svc: Services,
) -> None:
    request = QuoteRequest.model_validate({"job": {"prompts": [{"text": "p", "count": 20}]}})
    quote = create_quote(svc, TENANT, request)
    option = quote.options[0].option_id
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def accept(key: str) -> None:
        barrier.wait()
        try:
            results.append(
                accept_quote(
                    svc,
                    Acceptance(
                        tenant_id=TENANT,
                        idempotency_key=key,
                        request=OrderRequest(quote_id=quote.quote_id, option_id=option),
                    ),
                )
            )
        except Conflict as error:
            results.append(error)

    threads = [threading.Thread(target=accept, args=(f"key-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    orders = [r for r in results if isinstance(r, Order)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(orders) == 1 and len(losers) == 7
    assert all(orders[0].order_id in loser.message for loser in losers)
    waiting, in_flight = queue_depth(svc)
    assert waiting + in_flight == len(render_tasks(TENANT, orders[0]))


@pytest.mark.moto  # reads or writes AWS itself
def test_a_retry_of_the_winning_acceptance_resumes_it(svc: Services) -> None:
    """A crash after the order was written: the same key finishes it, another key cannot."""
    winner = _winner(svc)
    order = _accept(svc, winner)
    _back_to_quoted(order)
    with pytest.raises(Conflict, match=order.order_id):
        _accept(svc, winner.model_copy(update={"idempotency_key": "key-other"}))
    assert _accept(svc, winner).state is OrderState.ACCEPTED


def _failed_run(svc: Services, offer_id: str, served: bool) -> RenderRun:
    run = new_run(svc, offer_id)
    now = datetime.now(UTC)
    failed = run.model_copy(
        update={
            "status": RunStatus.FAILED,
            "ended_at": now,
            "ready_at": now if served else None,
            "error": "RendererUnavailable: crashed",
        }
    )
    svc.runs.save(failed)
    return failed


def test_a_host_that_failed_is_not_rented_again_but_the_next_one_is(svc: Services) -> None:
    # before: three failed runs in an hour stopped rendering for every tenant
    for _ in range(3):
        _failed_run(svc, "o-3090", served=True)
    place_order(svc, TENANT, [8])

    report = tick(svc)

    [run] = list(svc.runs.live())
    assert run.offer.offer_id != "o-3090"  # the cheapest, held off after its failures
    assert report.started_runs == [run.run_id]
    assert any("held off" in d for d in report.decisions)


def test_a_provider_whose_launches_keep_failing_is_paused(svc: Services) -> None:
    for offer_id in ("o-3090", "o-4090", "o-h100"):
        _failed_run(svc, offer_id, served=False)
    place_order(svc, TENANT, [8])

    report = tick(svc)

    assert report.started_runs == []
    assert any("fake paused" in d for d in report.decisions)


def test_a_machine_running_that_never_serves_is_given_up_at_the_serve_deadline(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = with_settings(svc, machine_serve_deadline_s=120)
    with renderer("--error-rate", "1") as url:  # answers, but never renders
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        start = datetime.now(UTC)
        assert render_run.wait_ready(svc, run.run_id, 900, now=start) == {"ready": False}
        assert render_run.wait_ready(svc, run.run_id, 900, now=start + timedelta(seconds=119)) == {
            "ready": False
        }
        with pytest.raises(MachineNotReady, match="has not served within 120s"):
            render_run.wait_ready(svc, run.run_id, 900, now=start + timedelta(seconds=121))


def test_a_machine_running_without_an_address_is_given_up_at_the_serve_deadline(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNNING but no address for ever (a RunPod pod whose port never maps, runpodctl#253):
    the serve deadline counts from RUNNING, not from a first address that never comes."""
    svc = with_settings(svc, machine_serve_deadline_s=120)
    market.url = None
    run = new_run(svc)
    render_run.provision(svc, run.run_id)
    start = datetime.now(UTC)
    assert render_run.wait_ready(svc, run.run_id, 900, now=start) == {"ready": False}
    assert svc.runs.get(run.run_id).machine_running_at == start  # type: ignore[union-attr]
    later = start + timedelta(seconds=119)
    assert render_run.wait_ready(svc, run.run_id, 900, now=later) == {"ready": False}
    with pytest.raises(MachineNotReady, match="has not served within 120s"):
        render_run.wait_ready(svc, run.run_id, 900, now=start + timedelta(seconds=121))


@pytest.mark.moto  # reads or writes AWS itself
def test_a_task_that_fails_on_a_healthy_machine_is_retried_elsewhere_and_the_machine_renders_on(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison task (it fails wherever it runs) costs attempts, never the machine or the
    other tenant's order."""
    poison = place_order(svc, TENANT, [2], negative_prompt="")
    healthy = place_order(svc, "tenant-b", [4])
    real_txt2img = A1111Client.txt2img

    def txt2img(self: Any, task: RenderTask) -> Any:
        if task.order_id == poison.order_id and task.prompt != "health check":  # its prompt
            raise RendererError("POST /sdapi/v1/txt2img: HTTP 500 RuntimeError")
        return real_txt2img(self, task)

    monkeypatch.setattr(A1111Client, "txt2img", txt2img)
    with renderer("--images-per-s", "400") as url:
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        result = render_run.render_slice(svc, run.run_id, slice_s=30)

    assert result.images == 4 and result.reason == "queue empty"
    done = svc.orders.get("tenant-b", healthy.order_id)
    assert done is not None and done.state is OrderState.COMPLETED
    # the poison task came back as two halves that avoid this machine
    left = boto_queue(svc)._sqs.receive_message(
        QueueUrl=boto_queue(svc).url, MaxNumberOfMessages=10
    )
    retried = [RenderTask.model_validate_json(m["Body"]) for m in left.get("Messages", [])]
    assert sorted((t.batch_size, t.attempts) for t in retried) == [(1, 1), (1, 1)]
    assert all(t.avoid_machines for t in retried)


def test_a_task_out_of_attempts_is_given_up_and_its_order_ends(svc: Services) -> None:
    order = place_order(svc, TENANT, [1])
    [task] = render_tasks(TENANT, order)
    last = task.model_copy(update={"attempts": svc.settings.task_max_attempts - 1})

    lifecycle.retry_or_give_up(svc, last, "m-1", "test")

    ended = _get(svc, order)
    assert (ended.state, ended.images_failed) == (OrderState.FAILED, 1)
    assert order_out(ended).charge_usd == Decimal(0)


def test_an_unreadable_dead_letter_never_stops_the_sweep(svc: Services, aws: Created) -> None:
    order = place_order(svc, TENANT, [8])
    _dead_letter(svc, aws, render_tasks(TENANT, order))
    boto3.client("sqs").send_message(QueueUrl=aws.dlq_url, MessageBody='{"not": "a task"}')

    lifecycle.sweep(svc)

    assert _get(svc, order).state is OrderState.FAILED
    assert boto3.client("sqs").receive_message(QueueUrl=aws.dlq_url).get("Messages", []) == []


@pytest.mark.moto  # reads or writes AWS itself
def test_a_preempted_interruptible_machine_spends_no_attempt_of_the_task_it_was_rendering(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = place_order(svc, TENANT, [8])

    def reclaimed(self: Any, task: RenderTask) -> Any:
        # the market takes the machine back mid-batch: the connection drops, the provider
        # lists it exited
        machine = market.live[run.machine_id or ""]
        market.live[machine.machine_id] = machine.model_copy(update={"status": "exited"})
        raise RendererUnavailable("POST /sdapi/v1/txt2img: RemoteProtocolError")

    monkeypatch.setattr(A1111Client, "txt2img", reclaimed)
    with renderer() as url:
        market.url = url
        run = new_run(svc)
        svc.runs.save(run.model_copy(update={"bid_usd_per_hour": Decimal("0.10")}))
        render_run.provision(svc, run.run_id)
        run = svc.runs.get(run.run_id)  # type: ignore[assignment]
        with pytest.raises(MachineGone, match="preempted"):
            render_run.render_slice(svc, run.run_id, slice_s=30)

    left = boto_queue(svc)._sqs.receive_message(
        QueueUrl=boto_queue(svc).url, MaxNumberOfMessages=10
    )
    [task] = [RenderTask.model_validate_json(m["Body"]) for m in left["Messages"]]
    assert (task.batch_size, task.attempts, task.avoid_machines) == (8, 0, ())
    assert _get(svc, order).images_failed == 0


def test_a_task_kept_off_a_machine_goes_back_as_a_fresh_message(
    svc: Services, aws: Created, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bouncing off the machine it failed on must not count towards the dead-letter limit,
    or a task waiting for another machine would be given up untried."""
    order = place_order(svc, TENANT, [4])
    [task] = render_tasks(TENANT, order)
    with renderer() as url:
        market.url = url
        run = new_run(svc)
        machine_id = render_run.provision(svc, run.run_id)["machine_id"]
        _dead_letter(svc, aws, [])  # empty the work queue
        svc.queue.send([task.model_copy(update={"attempts": 1, "avoid_machines": (machine_id,)})])
        for _ in range(3):
            result = render_run.render_slice(svc, run.run_id, slice_s=30)
            assert (result.images, result.reason) == (0, "queue empty")

    [message] = boto_queue(svc)._sqs.receive_message(
        QueueUrl=boto_queue(svc).url, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert RenderTask.model_validate_json(message["Body"]).avoid_machines == (machine_id,)


def test_delayed_retries_count_as_waiting_work(svc: Services, aws: Created) -> None:
    """A retry sent with a delay is work the dispatch must see, or it gives the fleet back and
    rents again only once the delay ends."""
    order = place_order(svc, TENANT, [4])
    _dead_letter(svc, aws, [])  # empty the work queue
    svc.queue.send(render_tasks(TENANT, order), delay_s=60)
    assert svc.queue.depth() == (1, 0)


def test_a_host_that_cannot_render_the_task_size_is_replaced_and_held_off(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card too small for SDXL at batch 1 passes the tiny readiness probe; the health check
    after a failed task uses the task's own size, so the host is blamed, not every task."""
    order = place_order(svc, TENANT, [2], model_family="sdxl", width=1024, height=1024)
    real_txt2img = A1111Client.txt2img

    def small_card(self: Any, task: RenderTask) -> Any:
        if task.width >= 1024:
            raise RendererOutOfMemory("POST /sdapi/v1/txt2img: out of memory")
        return real_txt2img(self, task)

    monkeypatch.setattr(A1111Client, "txt2img", small_card)
    with renderer("--images-per-s", "400") as url:
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        assert render_run.wait_ready(svc, run.run_id, 900) == {"ready": True}
        with pytest.raises(RendererUnavailable) as raised:
            render_run.render_slice(svc, run.run_id, slice_s=30)
    assert type(raised.value) is RendererUnavailable  # the host's fault: it will be held off
    failed = _get(svc, order)
    assert (failed.images_failed, failed.state) == (0, OrderState.ACCEPTED)  # retried elsewhere
    render_run.record(svc, run.run_id, error={"Error": type(raised.value).__name__, "Cause": ""})
    now = datetime.now(UTC)
    blocked = breakers(svc, read_runs(svc, now).ended, now)
    assert (run.offer.provider, run.offer.offer_id) in blocked.hosts


def test_a_machine_killed_by_a_task_that_killed_another_is_not_the_hosts_fault(
    svc: Services, aws: Created, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = place_order(svc, TENANT, [4])
    [task] = render_tasks(TENANT, order)
    _dead_letter(svc, aws, [])
    svc.queue.send([task.model_copy(update={"attempts": 1, "avoid_machines": ("fm-elsewhere",)})])

    def crash(self: Any, task: RenderTask) -> Any:
        raise RendererUnavailable("POST /sdapi/v1/txt2img: RemoteProtocolError")

    monkeypatch.setattr(A1111Client, "txt2img", crash)
    with renderer() as url:
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        with pytest.raises(TaskCrashedMachine) as raised:
            render_run.render_slice(svc, run.run_id, slice_s=30)
    render_run.record(svc, run.run_id, error={"Error": type(raised.value).__name__, "Cause": ""})
    now = datetime.now(UTC)
    assert breakers(svc, read_runs(svc, now).ended, now).hosts == frozenset()


@pytest.mark.moto  # reads or writes AWS itself
def test_resuming_an_acceptance_keeps_what_happened_to_its_order_meanwhile(svc: Services) -> None:
    winner = _winner(svc)
    order = _accept(svc, winner)
    _back_to_quoted(order, images_done=3)

    _accept(svc, winner)

    assert _get(svc, order).images_done == 3  # the resume did not write the order afresh


def test_the_winners_own_retry_gets_its_order_not_a_conflict(svc: Services) -> None:
    winner = _winner(svc)
    order = _accept(svc, winner)  # accepted, but its recorded answer was lost in a crash
    assert _accept(svc, winner).order_id == order.order_id
    with pytest.raises(Conflict, match=order.order_id):
        _accept(svc, winner.model_copy(update={"idempotency_key": "key-other"}))


def test_a_dead_lettered_task_of_an_order_still_being_accepted_is_queued_again(
    svc: Services, aws: Created
) -> None:
    order = place_order(svc, TENANT, [8])
    _back_to_quoted(order)
    _dead_letter(svc, aws, render_tasks(TENANT, order))

    lifecycle.sweep(svc)

    assert (_get(svc, order).images_failed, svc.queue.depth()[0]) == (0, 1)


def test_a_failing_sweep_never_stops_the_tick_from_renting(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    place_order(svc, TENANT, [8])

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("DynamoDB throttled the sweep")

    monkeypatch.setattr("subconscious.logic.dispatch.sweep", broken)
    report = tick(svc)
    assert "sweep failed" in report.decisions and len(report.started_runs) == 1


def test_a_provider_whose_running_is_the_vm_gets_its_start_up_on_top_of_the_serve_deadline(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = with_settings(svc, machine_serve_deadline_s=120)
    monkeypatch.setattr(market, "running_before_pull", True, raising=False)
    with renderer("--error-rate", "1") as url:
        market.url = url
        run = new_run(svc)  # its offer starts up in 60 s
        render_run.provision(svc, run.run_id)
        start = datetime.now(UTC)
        render_run.wait_ready(svc, run.run_id, 900, now=start)
        later = start + timedelta(seconds=179)
        assert render_run.wait_ready(svc, run.run_id, 900, now=later) == {"ready": False}
        with pytest.raises(MachineNotReady, match="within 180s"):
            render_run.wait_ready(svc, run.run_id, 900, now=start + timedelta(seconds=181))


def _quote_and_key(svc: Services) -> tuple[str, str, order_logic.Acceptance]:
    from subconscious.logic.quotes import create_quote

    quote = create_quote(
        svc,
        TENANT,
        QuoteRequest.model_validate({"job": {"prompts": [{"text": "a", "count": 8}]}}),
    )
    acceptance = order_logic.Acceptance(
        tenant_id=TENANT,
        idempotency_key="k-resume-0001",
        request=OrderRequest(quote_id=quote.quote_id, option_id=quote.options[0].option_id),
    )
    return quote.quote_id, order_logic.order_id_for(quote.quote_id), acceptance


def test_an_interrupted_acceptance_finishes_even_after_the_quote_expired(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, order_id, acceptance = _quote_and_key(svc)
    original = order_logic.render_tasks

    def crash(*args: Any) -> Any:
        raise RuntimeError("Lambda died between writing the order and queueing")

    monkeypatch.setattr(order_logic, "render_tasks", crash)
    with pytest.raises(RuntimeError):
        order_logic._accept(svc, acceptance)
    monkeypatch.setattr(order_logic, "render_tasks", original)
    later = datetime.now(UTC) + timedelta(hours=2)  # the quote expired meanwhile

    order = order_logic._accept(svc, acceptance, now=later)

    assert order.order_id == order_id
    assert order.state is OrderState.ACCEPTED
    assert svc.queue.depth() == (1, 0)


def test_an_order_cancelled_during_acceptance_is_not_reported_accepted(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, order_id, acceptance = _quote_and_key(svc)
    queue = svc.queue
    send = queue.send

    def send_then_cancel(tasks: Any) -> None:
        send(tasks)
        svc.orders.transition(TENANT, order_id, OrderState.CANCELLED)

    monkeypatch.setattr(queue, "send", send_then_cancel)
    order = order_logic._accept(svc, acceptance)
    assert order.state is OrderState.CANCELLED
