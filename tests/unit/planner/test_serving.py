"""AWS's cost of serving (planner/serving.py): each component from figures worked by hand with
the cited list prices, how it scales, and that its counts still match the code they read."""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, Decimal
from typing import Any

import pytest

from infra import definitions as d
from subconscious.planner import serving
from subconscious.planner.serving import serving_breakdown, serving_cost_usd
from subconscious.settings import Settings

# 10 SD 1.5 images at 512x512 on one machine held 1000 s, start-up unknown (so it polls its
# whole 900 s ready timeout: 60 polls); slices: ceil(1000 / 540) + 1 = 3; tasks: 10.
CASE: dict[str, Any] = {
    "images": 10,
    "width": 512,
    "height": 512,
    "machine_seconds": 1000.0,
    "machines": 1,
}


def test_each_component_worked_by_hand() -> None:
    cost = serving_breakdown(**CASE)
    # (1000 + 150 s of short steps) x 0.25 GB x $0.0000133334, and 3 + 60 + 3 requests x $0.2/M
    assert cost.lambda_usd == Decimal("287.5") * Decimal("0.0000133334") + 66 * Decimal("0.0000002")
    # 5 fixed + 60 polls x 3 + 3 slices x 2 = 191 transitions x $0.025 / 1000
    assert cost.step_functions_usd == Decimal("0.004775")
    # WRU: 10 images x 2 x (1 + 2 KB) + 10 tasks x 2 KB + (6 run writes + 3 slices) x 2 KB = 98;
    # RRU: 10 tasks x 1 + 10 x 0.125 + (5 + 60 + 3) x 0.5 = 45.25
    assert cost.dynamodb_usd == 98 * Decimal("0.000000625") + Decimal("45.25") * Decimal(
        "0.000000125"
    )
    assert cost.s3_requests_usd == Decimal("0.000054")  # 10 PUTs at $0.005/k, 10 GETs at $0.0004/k
    # 2.25 bytes a pixel x 262,144 pixels x 10 = 5,898,240 bytes = 0.00589824 GB
    assert cost.s3_storage_usd == Decimal("0.00589824") * Decimal("0.023")
    assert cost.data_out_usd == Decimal("0.00589824") * Decimal("0.09")
    # 10 tasks x (0.1 send + 0.5 receive + 1 visibility + 1 delete) + 2 empty receives
    assert cost.sqs_usd == 28 * Decimal("0.0000004")
    assert serving_cost_usd(**CASE) == cost.total_usd == sum(cost.as_dict().values())


def test_known_start_up_polls_only_that_long() -> None:
    bound = serving_breakdown(**CASE)
    known = serving_breakdown(**CASE, startup_seconds=300)  # 20 polls, not 60
    assert bound.step_functions_usd - known.step_functions_usd == 40 * 3 * Decimal("0.000025")
    assert known.total_usd < bound.total_usd
    assert known.data_out_usd == bound.data_out_usd


def test_batched_tasks_cost_fewer_queue_requests() -> None:
    one = serving_breakdown(**CASE)
    batched = serving_breakdown(**CASE, images_per_task=8)  # 2 tasks
    assert batched.sqs_usd == (2 * Decimal("2.6") + 2) * Decimal("0.0000004")
    assert batched.sqs_usd < one.sqs_usd and batched.dynamodb_usd < one.dynamodb_usd


def test_per_image_charges_scale_with_images_and_pixels() -> None:
    small = serving_breakdown(**CASE)
    twice = serving_breakdown(**{**CASE, "images": 20})
    assert twice.data_out_usd == 2 * small.data_out_usd
    assert twice.s3_requests_usd == 2 * small.s3_requests_usd
    assert twice.lambda_usd == small.lambda_usd  # the machine's time, not the images
    sdxl = serving_breakdown(**{**CASE, "width": 1024, "height": 1024})
    assert sdxl.data_out_usd == 4 * small.data_out_usd
    assert sdxl.s3_requests_usd == small.s3_requests_usd


def test_held_time_scales_the_lambda_charge() -> None:
    short = serving_breakdown(**{**CASE, "machine_seconds": 2000.0})
    long = serving_breakdown(**{**CASE, "machine_seconds": 5600.0})
    per_s = Decimal("0.25") * Decimal("0.0000133334")
    # 3600 s more: 3600 x 0.25 GB-s and ceil(5600/540) - ceil(2000/540) = 7 more slices
    assert long.lambda_usd - short.lambda_usd == 3600 * per_s + 7 * Decimal("0.0000002")
    two = serving_breakdown(**{**CASE, "machines": 2})
    assert two.step_functions_usd > serving_breakdown(**CASE).step_functions_usd


def test_nothing_served_costs_nothing() -> None:
    assert serving_cost_usd(images=0, width=512, height=512, machine_seconds=0, machines=0) == 0


def test_negative_quantities_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        serving_cost_usd(images=-1, width=512, height=512, machine_seconds=0, machines=0)
    with pytest.raises(ValueError, match="must not be negative"):
        serving_cost_usd(images=1, width=512, height=512, machine_seconds=-1, machines=1)
    with pytest.raises(ValueError, match="images_per_task"):
        serving_breakdown(**CASE, images_per_task=0)


def test_counts_match_the_system_they_describe() -> None:
    """The figures serving.py reads off the infra and settings still hold there."""
    render = next(f for f in d.FUNCTIONS if f.name.endswith("-render"))
    assert render.memory_mb == serving.RENDER_MEMORY_MB
    assert d.LAMBDA_ARCHITECTURE == "arm64"
    assert serving.LAMBDA_USD_PER_GB_S == serving.LAMBDA_USD_PER_GB_S_ARM64
    short = {f.name.rsplit("-", 1)[-1]: f.timeout_s for f in d.FUNCTIONS}
    assert short["provision"] + short["teardown"] + short["record"] == serving.FIXED_STEP_LAMBDA_S
    defaults = Settings.model_fields
    assert defaults["poll_interval_s"].default == serving.POLL_INTERVAL_S
    assert defaults["ready_timeout_s"].default == serving.READY_TIMEOUT_S
    assert defaults["render_slice_s"].default == serving.RENDER_SLICE_S
    asl = d.STATE_MACHINE_FILE.read_text()
    for state in ("WaitReady", "IsReady", "WaitBeforePoll", "Render", "MoreWork", "Outcome"):
        assert f'"{state}"' in asl


def test_price_table_cites_every_price() -> None:
    assert all(p.source.startswith("https://aws.amazon.com/") for p in serving.PRICE_TABLE)
    assert {p.usd for p in serving.PRICE_TABLE} >= {
        serving.DATA_OUT_USD_PER_GB,
        serving.SFN_USD_PER_TRANSITION,
        serving.DDB_USD_PER_WRU,
    }


def test_the_quotes_closed_form_of_a_machines_aws_charge_equals_the_breakdown() -> None:
    """costs.aws_machine_micros prices a held machine by MACHINE_USD_FIXED/PER_S/PER_SLICE (it
    runs for every offer of every quote); it must round to what the per-service sum gives."""
    from subconscious.planner import costs

    rng = random.Random(3)
    held = [0.0, 1.0, 539.9, 540.0, 540.1, 1080.0, 3600.0]
    held += [rng.uniform(0, 200_000) for _ in range(2000)]
    held += [float(rng.randint(0, 100_000)) for _ in range(500)]
    for seconds in held:
        exact = serving.machine_usd(seconds)
        micros = int((exact * 1_000_000).to_integral_value(rounding=ROUND_CEILING))
        assert costs.aws_machine_micros(seconds) == micros, seconds
