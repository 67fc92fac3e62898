"""Issue 16: ``make local`` restarted keeps its key, its orders, their images and their queued
work (``LocalStack(state_dir=...)``, infra/local/state.py). Without a state folder every start
is a fresh account (``make demo``, the other tests): tests/local/test_state.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra import definitions as d
from infra.local.stack import LocalStack
from subconscious import services as services_module
from subconscious_cli.client import Client

JOB = {"prompts": [{"text": "a lighthouse at dawn", "count": 12}]}
PNG = b"\x89PNG\r\n\x1a\n" + b"kept across a restart"


@pytest.fixture
def environment() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        services_module.reset()


def _start(folder: Path | None) -> LocalStack:
    # no schedules: nothing renders, so what was queued is still queued at the restart
    return LocalStack(timer=False, spot_tick_s=None, state_dir=folder).start()


def _queued(stack: LocalStack) -> int:
    sqs = stack._client("sqs")
    url = sqs.get_queue_url(QueueName=d.WORK_QUEUE)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _first_session(stack: LocalStack) -> dict[str, Any]:
    with Client(stack.api_url, stack.api_key) as client:
        quote = client.quote(JOB)
        order = client.order(quote["quote_id"], quote["options"][0]["option_id"])
    # one image delivered, as a render step stores it (object, then its row and count)
    svc = services_module.services()
    key = f"images/{stack.tenant_id}/{order['order_id']}/0-1.png"
    svc.bucket.put_png(key, PNG, {"seed": "1"})
    assert svc.images.record(
        stack.tenant_id,
        order["order_id"],
        prompt_index=0,
        prompt="a lighthouse at dawn",
        seed=1,
        width=512,
        height=512,
        key=key,
    )
    return dict(order)


def test_a_restart_keeps_the_key_the_orders_their_images_and_queued_work(
    tmp_path: Path, environment: None
) -> None:
    folder = tmp_path / "state"
    first = _start(folder)
    try:
        order = _first_session(first)
        queued = _queued(first)
        assert queued > 0
    finally:
        first.stop(drain_s=1)
    assert (folder / "key.json").stat().st_mode & 0o077 == 0  # the key is the owner's alone

    second = _start(folder)
    try:
        assert second.api_key == first.api_key
        assert second.loaded["messages"] == queued
        with Client(second.api_url, second.api_key) as client:
            read = client.status(order["order_id"])
            (image,) = list(client.images(order["order_id"]))
        assert (read["state"], read["images_done"]) == ("accepted", 1)
        assert httpx.get(image["url"]).content == PNG
        listed = httpx.get(
            f"{second.api_url}/v1/orders", headers={"x-api-key": second.api_key}
        ).json()
        assert [o["order_id"] for o in listed["orders"]] == [order["order_id"]]
        assert _queued(second) == queued  # its work is still to do
    finally:
        second.stop(drain_s=1)


def test_a_start_that_fails_half_way_stops_what_it_started_and_saves_nothing(
    tmp_path: Path, environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.awslambda.models import LambdaFunction

    original_invoke = LambdaFunction._invoke_lambda
    folder = tmp_path / "state"

    def broken(self: LocalStack) -> None:
        raise RuntimeError("the tenant could not be added")

    # after moto, the emulators, the resources and the state load are up: the last step fails
    monkeypatch.setattr(LocalStack, "_add_tenant", broken)
    stack = LocalStack(timer=False, spot_tick_s=None, state_dir=folder)
    with pytest.raises(RuntimeError, match="tenant"):
        stack.start()
    endpoint = os.environ["AWS_ENDPOINT_URL"]  # the moto server the failed start ran
    stack.stop(drain_s=1)  # as a test's fixture does after a failed start: closes nothing twice

    with pytest.raises(httpx.TransportError):
        httpx.get(f"{endpoint}/moto-api/", timeout=2)
    assert LambdaFunction._invoke_lambda is original_invoke  # moto as found
    assert stack.market.machines() == []
    # a failed start must not overwrite what an earlier good stop saved: only the key is here
    assert sorted(p.name for p in folder.iterdir()) == ["key.json"]
