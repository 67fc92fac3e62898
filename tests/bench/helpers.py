"""Tiny markets, orders and scripted dispatchers for the simulator's tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from bench.planner.quoting import Acceptance
from bench.planner.sim import SimDecision
from bench.planner.simulated_market import Market, MarketOffer
from bench.planner.traces import Pool
from bench.planner.workloads import OrderSpec, make_job
from subconscious.models import JobSpec, Offer
from subconscious.planner.costs import Rates
from subconscious.planner.policy import PlanState, Wait
from subconscious.throughput_model import ThroughputModel

RATES = Rates(ThroughputModel())


def offer(
    offer_id: str = "o-4090",
    gpu: str = "RTX 4090",
    usd_per_hour: str = "0.36",
    *,
    provider: str = "vast",
    startup_s: int = 300,
    memory: int = 24,
    bid: str | None = "0.18",
) -> MarketOffer:
    on_demand = Offer(
        provider=provider,
        offer_id=offer_id,
        gpu=gpu,
        gpu_memory_gb=memory,
        usd_per_hour=Decimal(usd_per_hour),
        startup_s=startup_s,
    )
    spot = on_demand.model_copy(
        update={"interruptible": True, "min_bid_usd_per_hour": Decimal(bid or usd_per_hour)}
    )
    return MarketOffer(on_demand=on_demand, spot=spot, pool=None)


def pooled(listed: MarketOffer, pool: Pool) -> MarketOffer:
    return MarketOffer(on_demand=listed.on_demand, spot=listed.spot, pool=pool)


def pool(pattern: str, gap_s: float = 600.0, name: str = "p") -> Pool:
    """``pattern`` like "1100": one character per tick, 1 = capacity."""
    return Pool(name=name, gap_s=gap_s, available=tuple(c == "1" for c in pattern))


def market(*offers: MarketOffer) -> Market:
    return Market(list(offers))


def job(images: int, sdxl: bool = False) -> JobSpec:
    import random

    return make_job(random.Random(0), images, sdxl=sdxl)


def order(
    order_id: str, images: int, arrival_s: float = 0.0, deadline_s: float = 86_400.0
) -> OrderSpec:
    return OrderSpec(order_id, arrival_s, job(images), deadline_s, None)


def accepted(spec: OrderSpec, quoted_micros: int = 10**9) -> Acceptance:
    return Acceptance(
        order_id=spec.order_id,
        label="requested",
        deadline_s=spec.deadline_s,
        quoted_micros=quoted_micros,
        price_per_image_micros=quoted_micros // spec.images,
        interruptible=False,
        gpu="",
        latency_ms=0.0,
    )


def acceptances(specs: Sequence[OrderSpec]) -> dict[str, Acceptance]:
    return {s.order_id: accepted(s) for s in specs}


class Script:
    """A dispatcher that plays given decisions at given ticks (by simulated second)."""

    def __init__(self, plan: dict[float, list[SimDecision]]) -> None:
        self.plan = plan
        self.seen: list[PlanState] = []

    def __call__(self, state: PlanState) -> list[SimDecision]:
        self.seen.append(state)
        from bench.planner.sim import START

        second = (state.now - START).total_seconds()
        return self.plan.get(second, [Wait("script")])


def write_trace(path: Path, data: list[int], gap_s: int = 600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap_s}, "data": data}))
