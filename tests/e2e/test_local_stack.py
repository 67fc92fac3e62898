"""The whole system on the local stack: HTTP API → DynamoDB + SQS → dispatch → Step Functions
render run → emulated machine (a renderer process) → S3 → presigned links.

Invariant 1 is checked after every test: no machine outlives its run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.emulated_market import MachineFaults
from infra.local.stack import LocalStack
from subconscious.render.png import png_size
from subconscious_cli.client import Client
from subconscious_cli.models import OrderOut
from tests.local_stacks import running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(machine_logs=tmp_path / "machines") as local:
        yield local
    assert local.market.machines() == [], "a machine outlived the local stack's runs"


@pytest.fixture
def client(stack: LocalStack) -> Iterator[Client]:
    with Client(stack.api_url, stack.api_key) as api:
        yield api


def _order(client: Client, counts: list[int]) -> OrderOut:
    job = {"prompts": [{"text": f"prompt {i}", "count": c} for i, c in enumerate(counts)]}
    quote = client.quote(job)
    return client.order(quote["quote_id"], quote["options"][0]["option_id"])


def _all_runs_ended(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.wait_for_runs(30), "a render run is still executing"
    return stack.executions()


def _processes_alive(stack: LocalStack) -> list[str]:
    return [m for m in stack.market._machines if stack.market.process(m).poll() is None]


def test_a_renderer_crash_mid_batch_is_recovered_on_a_new_machine(
    stack: LocalStack, client: Client, tmp_path: Path
) -> None:
    stack.market.queue_faults(
        MachineFaults(startup_delay_s=0.3, images_per_s=200, crash_after_images=12)
    )
    order = _order(client, [10, 10, 10])

    done = client.wait(order["order_id"], timeout_s=120, poll_s=0.3)

    assert done["state"] == "completed"
    assert done["images_done"] == 30
    # invariant 3: the crash and the second machine cost the customer nothing extra
    assert stack.gpu_spend_usd(order["order_id"]) <= Decimal(order["total_usd"])
    executions = _all_runs_ended(stack)
    statuses = sorted(e["status"] for e in executions)
    assert "FAILED" in statuses and "SUCCEEDED" in statuses  # the crashed run, its successor
    assert stack.market.launched_count >= 2
    assert stack.market.machines() == []  # every machine terminated...
    assert _processes_alive(stack) == []  # ...and its process gone

    paths = client.download(order["order_id"], tmp_path)
    assert len(paths) == 30  # no image lost, none twice
    assert len({p.name for p in paths}) == 30
    assert all(png_size(p.read_bytes()) == (512, 512) for p in paths)


def test_out_of_memory_splits_batches_and_the_order_completes(
    stack: LocalStack, client: Client
) -> None:
    stack.market.queue_faults(
        MachineFaults(startup_delay_s=0.3, images_per_s=200, oom_above_batch=2)
    )
    order = _order(client, [8])

    done = client.wait(order["order_id"], timeout_s=60, poll_s=0.3)

    assert (done["state"], done["images_done"]) == ("completed", 8)
    assert stack.market.launched_count == 1  # the same machine, smaller batches
    assert len(list(client.images(order["order_id"]))) == 8


def test_cancel_stops_the_remaining_work(stack: LocalStack, client: Client) -> None:
    stack.market.default_faults = MachineFaults(startup_delay_s=0.3, images_per_s=16)
    order = _order(client, [100, 100])
    deadline = time.monotonic() + 60
    while client.status(order["order_id"])["images_done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)

    cancelled = client.cancel(order["order_id"])
    assert cancelled["state"] == "cancelled"
    _all_runs_ended(stack)

    final = client.status(order["order_id"])
    assert final["state"] == "cancelled"
    assert 0 < final["images_done"] < 200  # what was under way finished; the rest never ran
    assert stack.market.machines() == []


def test_tenants_cannot_see_each_other(stack: LocalStack, client: Client) -> None:
    order = _order(client, [2])
    with Client(stack.api_url, stack.add_tenant("t-other")) as other:
        for call in (other.status, other.cancel):
            with pytest.raises(Exception, match="not_found"):
                call(order["order_id"])
    assert client.status(order["order_id"])["state"] != "cancelled"
    client.wait(order["order_id"], timeout_s=60, poll_s=0.3)
    _all_runs_ended(stack)


def test_the_market_lists_ec2_spot_and_on_demand_offers(stack: LocalStack, client: Client) -> None:
    """EC2 (moto's, through the real adapter) is a market like the others: on-demand offers per
    instance type, interruptible ones per zone at the spot price, each with $/image."""
    stack.fire("subc-prices")
    view = client._call("GET", "/v1/market")
    ec2 = [o for group in view["gpus"] for o in group["offers"] if o["provider"] == "ec2"]
    on_demand = {o["offer_id"] for o in ec2 if o["interruptible_usd_per_hour"] is None}
    spot = {o["offer_id"]: o for o in ec2 if o["interruptible_usd_per_hour"] is not None}
    assert on_demand == {"g4dn.xlarge", "g5.2xlarge", "g6.2xlarge", "g6e.2xlarge"}
    assert {"g4dn.xlarge@us-east-1a", "g4dn.xlarge@us-east-1b"} <= set(spot)
    # the price file's spot range for g4dn.xlarge, cheapest zone first; on-demand $0.526/h
    assert Decimal(spot["g4dn.xlarge@us-east-1a"]["interruptible_usd_per_hour"]) == Decimal(
        "0.1845"
    )
    assert Decimal(spot["g4dn.xlarge@us-east-1a"]["usd_per_hour"]) == Decimal("0.526")
    assert all(Decimal(o["usd_per_image_sd15"]) > 0 for o in ec2)
    assert next(p for p in view["providers"] if p["provider"] == "ec2")["ok"] is True
