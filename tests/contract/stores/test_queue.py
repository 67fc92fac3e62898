"""The work queue (and its dead-letter queue): SQS's visibility, delay, receive count and
redrive, as far as the logic relies on them."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra import definitions as d
from subconscious.services import Services

from .conftest import raw_message, task


def test_send_receive_delete(stores: Services) -> None:
    stores.queue.send([task(1), task(2)])
    assert stores.queue.depth() == (2, 0)
    got = stores.queue.receive(10, 0, 60)
    assert sorted(x.task.seed for x in got) == [1, 2]
    assert sorted((x.task for x in got), key=lambda t: t.seed) == [task(1), task(2)]
    assert all(x.receive_count == 1 for x in got)
    assert stores.queue.depth() == (0, 2)
    assert stores.queue.receive(10, 0, 60) == []  # hidden while in flight
    for delivery in got:
        stores.queue.delete(delivery)
    assert stores.queue.depth() == (0, 0)


def test_send_more_than_a_batch(stores: Services) -> None:
    stores.queue.send([task(seed) for seed in range(23)])
    assert stores.queue.depth() == (23, 0)
    seen: set[int] = set()
    while got := stores.queue.receive(25, 0, 60):
        assert len(got) <= 10  # SQS hands out at most ten at once
        seen |= {x.task.seed for x in got}
    assert seen == set(range(23))


def test_visibility_zero_hands_a_task_back(stores: Services) -> None:
    stores.queue.send([task(1)])
    [first] = stores.queue.receive(1, 0, 60)
    stores.queue.set_visibility(first, 0)
    assert stores.queue.depth() == (1, 0)
    [again] = stores.queue.receive(1, 0, 60)
    assert again.task == first.task and again.receive_count == 2
    stores.queue.set_visibility(again, 600)  # extended while it renders
    assert stores.queue.receive(1, 0, 60) == []
    stores.queue.delete(first)  # an earlier receipt of the same message still deletes it
    assert stores.queue.depth() == (0, 0)


def test_visibility_of_a_deleted_message_is_refused(stores: Services) -> None:
    stores.queue.send([task(1)])
    [delivery] = stores.queue.receive(1, 0, 60)
    stores.queue.delete(delivery)
    stores.queue.delete(delivery)  # deleting twice is fine
    with pytest.raises(ClientError) as refused:
        stores.queue.set_visibility(delivery, 0)
    assert refused.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_delayed_tasks_wait_and_count_as_waiting(stores: Services) -> None:
    stores.queue.send([task(1)], delay_s=60)
    stores.queue.send([task(2)])
    assert stores.queue.depth() == (2, 0)
    assert [x.task.seed for x in stores.queue.receive(10, 0, 60)] == [2]
    assert stores.queue.depth() == (1, 1)


def test_unreadable_messages_are_removed(stores: Services, backend: str) -> None:
    raw_message(stores, backend, '{"not": "a task"}')
    stores.queue.send([task(1)])
    got = stores.queue.receive(10, 0, 60)
    assert [x.task.seed for x in got] == [1]
    assert stores.queue.depth() == (0, 1)  # the unreadable one is gone, not in flight


def test_redrive_after_max_receives(stores: Services) -> None:
    stores.queue.send([task(7)])
    counts = []
    while got := stores.queue.receive(1, 0, 0):
        counts.append(got[0].receive_count)
        assert len(counts) <= d.MAX_RECEIVE_COUNT
    assert counts == list(range(1, d.MAX_RECEIVE_COUNT + 1))
    assert stores.queue.depth() == (0, 0)
    [dead] = stores.dead_letters.receive(10, 0, 60)
    assert dead.task == task(7)
    stores.dead_letters.delete(dead)
    assert stores.dead_letters.depth() == (0, 0)
