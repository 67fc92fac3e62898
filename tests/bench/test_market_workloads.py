"""The simulated market's offers and the named workloads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench.planner.simulated_market import load_market, spot_ratio
from bench.planner.workloads import DAY, HOUR, WORKLOADS, generate
from subconscious.models import ModelFamily
from tests.bench.helpers import pool


def test_the_interruptible_discount_is_the_median_of_the_price_file() -> None:
    assert spot_ratio() == Decimal("0.5")


def test_offers_carry_their_bid_only_while_their_pool_has_capacity() -> None:
    pools = [pool("10", gap_s=600, name="a"), pool("01", gap_s=600, name="b")]
    m = load_market(pools)
    assert len(m.offers) > 40
    assert {o.pool.name for o in m.offers if o.pool} == {"a", "b"}
    by_id = {o.on_demand.offer_id: o for o in m.offers}
    a6000 = by_id["emu-runpod-secure-cloud-rtx-a6000"]
    assert a6000.spot.min_bid_usd_per_hour == Decimal("0.33")  # the file's own spot row
    vast = next(o for o in m.offers if o.on_demand.provider == "vast")
    assert vast.spot.min_bid_usd_per_hour == (vast.on_demand.usd_per_hour / 2).quantize(
        Decimal("0.0001")
    )
    assert vast.on_demand.startup_s == 300 and a6000.on_demand.startup_s == 240
    listed = {o.offer_id: o for o in m.offers_at(0.0)}
    for o in m.offers:
        has_bid = listed[o.on_demand.offer_id].min_bid_usd_per_hour is not None
        assert has_bid == (o.pool is not None and o.pool.available_at(0.0))
    taken = {a6000.on_demand.offer_id}
    assert a6000.on_demand.offer_id not in {o.offer_id for o in m.offers_at(0.0, taken)}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_workloads_stay_inside_the_issue_ranges(name: str, seed: int) -> None:
    orders = generate(name, seed)
    assert len(orders) >= 10
    assert orders == generate(name, seed)  # seeded
    for o in orders:
        assert 10 <= o.images <= 5000
        assert HOUR - 1e-6 <= o.deadline_s - o.arrival_s <= 7 * DAY + 1e-6
    if name == "steady":
        assert all(
            o.images <= 1000 and o.deadline_s - o.arrival_s >= 2 * HOUR - 1e-6 for o in orders
        )
        assert all(o.deadline_s - o.arrival_s <= 3 * DAY for o in orders)
    if name == "tight":
        assert all(o.images >= 1000 for o in orders)
    families = {o.job.model_family for o in orders}
    assert ModelFamily.SD15 in families


def test_an_unknown_workload_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        generate("nope", 1)
