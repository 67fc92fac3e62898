"""Quote latency as the backlog and the offer list grow.

``python -m bench.quote_latency [--repeat 30]`` times :func:`plan_quote` (the whole quote:
frontier, interruptible pricing, and the check that every promise already made can still be
kept) for the founding example (1000 SD 1.5 images by the end of the day) against synthetic
markets of 100 and 1,000 offers and backlogs of 0 to 10,000 tasks (8 images each; as 1,250
orders of 8 tasks, and as 10,000 orders of one task, the harder case for the EDF check). Prints
a table and one JSON line per case with p50 and p99 in milliseconds. Rates are warm (as in a
warm Lambda: they are memoised per set of stored factors).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from subconscious.models import Constraints, JobSpec, Offer
from subconscious.planner.costs import Rates
from subconscious.planner.policy import Limits, OpenOrder
from subconscious.planner.quote import plan_quote
from subconscious.throughput_model import ThroughputModel

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
GPUS = ["RTX 3090", "RTX 4090", "RTX A6000", "A100 80GB", "H100 SXM", "T4", "L4", "RTX 5090"]
TASK_IMAGES = 8


def market(size: int, rng: random.Random) -> list[Offer]:
    return [
        Offer(
            provider=rng.choice(["vast", "runpod", "tensordock"]),
            offer_id=f"o{i}",
            gpu=rng.choice(GPUS),
            gpu_memory_gb=rng.choice([16, 24, 48, 80]),
            usd_per_hour=Decimal(f"{rng.uniform(0.1, 3):.3f}"),
            min_bid_usd_per_hour=Decimal("0.05") if i % 3 == 0 else None,
            startup_s=rng.choice([240, 300, 420]),
        )
        for i in range(size)
    ]


def job(images: int) -> JobSpec:
    per_prompt, rest = divmod(images, 10)
    prompts = [{"text": f"p{i}", "count": per_prompt + (i < rest)} for i in range(10)]
    return JobSpec.model_validate({"prompts": [p for p in prompts if p["count"]]})


def backlog(tasks: int, tasks_per_order: int) -> list[OpenOrder]:
    images = tasks_per_order * TASK_IMAGES
    spec = job(images)
    return [
        OpenOrder(f"b{i}", spec, images, NOW + timedelta(hours=2 + i % 70))
        for i in range(tasks // tasks_per_order)
    ]


def measure(offers: list[Offer], orders: list[OpenOrder], repeat: int) -> tuple[float, float]:
    rates = Rates(ThroughputModel())
    limits = Limits(max_machines=32, max_spend_micros_per_hour=10**9)
    founding = job(1000)
    constraints = Constraints(deadline=NOW + timedelta(hours=14))
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        plan_quote(founding, constraints, offers, NOW, 30, rates, backlog=orders, limits=limits)
        times.append((time.perf_counter() - started) * 1000)
    times = sorted(times[1:])  # the first call warms the rates
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times), p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    cases = [(100, 0, 8), (1000, 0, 8), (1000, 1000, 8), (1000, 10_000, 8), (1000, 10_000, 1)]
    rows = []
    for offers, tasks, per_order in cases:
        p50, p99 = measure(market(offers, rng), backlog(tasks, per_order), args.repeat)
        rows.append(
            {
                "offers": offers,
                "backlog_tasks": tasks,
                "backlog_orders": tasks // per_order,
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
            }
        )
    print(f"{'offers':>7} {'tasks':>7} {'orders':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row['offers']:>7} {row['backlog_tasks']:>7} {row['backlog_orders']:>7} "
            f"{row['p50_ms']:>8} {row['p99_ms']:>8}"
        )
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
