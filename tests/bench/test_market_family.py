"""The family of generated markets: seeded, each knob moving the statistic it claims, the
tune / report split disjoint, and the simulator honouring listings and cycling bids."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bench.planner import market_family as mf
from bench.planner.sim import simulate
from bench.planner.simulated_market import Market, MarketOffer, PriceCycle
from bench.planner.traces import load_pools
from subconscious.planner.costs import price_micros_per_hour
from subconscious.planner.policy import Release, Rent
from tests.bench.helpers import RATES, Script, acceptances, offer, order, pool

HOUR = 3600.0


def runs(trace: tuple[bool, ...] | list[bool], gap_s: float) -> dict[bool, list[float]]:
    """Lengths (hours) of the runs of each state, the first and last (cut) runs left out."""
    out: dict[bool, list[float]] = {True: [], False: []}
    groups = [(k, len(list(g))) for k, g in itertools.groupby(trace)]
    for state, n in groups[1:-1]:
        out[state].append(n * gap_s / HOUR)
    return out


def pearson(a: tuple[bool, ...], b: tuple[bool, ...]) -> float:
    return statistics.correlation([float(x) for x in a], [float(x) for x in b])


def calm_free(seed: int = 7, **changes: object) -> mf.Knobs:
    """A market's knobs with no cycles, no spread and no correlation, then ``changes``."""
    base = replace(
        mf.draw_knobs(seed),
        calm=False,
        pool_spread=0.0,
        correlation=0.0,
        daily_amplitude=0.0,
        weekly_amplitude=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_market_is_a_function_of_its_seed() -> None:
    assert mf.draw_knobs(5) == mf.draw_knobs(5)
    a, b = mf.build_market(mf.draw_knobs(5)), mf.build_market(mf.draw_knobs(5))
    assert [p.available for p in a.pools] == [p.available for p in b.pools]
    assert [(o.on_demand, o.spot, o.listed) for o in a.offers] == [
        (o.on_demand, o.spot, o.listed) for o in b.offers
    ]
    assert mf.draw_knobs(6) != mf.draw_knobs(5)


def test_run_lengths_follow_their_knobs() -> None:
    rng = random.Random(1)
    trace = mf.renewal(rng, 150_000, 60.0, 2 * HOUR, 0.5 * HOUR, 1.0)
    measured = runs(trace, 60.0)
    assert statistics.fmean(measured[True]) == pytest.approx(2.0, rel=0.1)
    assert statistics.fmean(measured[False]) == pytest.approx(0.5, rel=0.1)
    cv = statistics.pstdev(measured[True]) / statistics.fmean(measured[True])
    assert cv == pytest.approx(1.0, rel=0.2)
    spread = mf.renewal(random.Random(1), 150_000, 60.0, 2 * HOUR, 0.5 * HOUR, 3.0)
    wide = runs(spread, 60.0)[True]
    assert statistics.pstdev(wide) / statistics.fmean(wide) > 2.0  # the cv knob widens runs


def test_a_pool_of_a_market_has_the_markets_mean_runs() -> None:
    knobs = calm_free(mean_up_h=3.0, mean_down_h=1.0, run_cv=1.0, gap_s=300, pools=2)
    for p in mf.pool_traces(knobs, days=200):
        measured = runs(p.available, p.gap_s)
        assert statistics.fmean(measured[True]) == pytest.approx(3.0, rel=0.15)
        assert statistics.fmean(measured[False]) == pytest.approx(1.0, rel=0.15)
        assert p.available_share == pytest.approx(0.75, abs=0.05)


@pytest.mark.parametrize("target", [0.0, 0.6])
def test_pools_are_as_correlated_as_the_knob_says(target: float) -> None:
    knobs = calm_free(mean_up_h=2.0, mean_down_h=1.0, run_cv=1.0, gap_s=600, pools=4,
                      correlation=target)  # fmt: skip
    pools = mf.pool_traces(knobs, days=240)
    pairs = [pearson(a.available, b.available) for a, b in itertools.combinations(pools, 2)]
    assert statistics.fmean(pairs) == pytest.approx(target, abs=0.12)


def test_the_daily_cycle_makes_some_hours_scarcer() -> None:
    def hourly_spread(amplitude: float) -> float:
        knobs = calm_free(mean_up_h=2.0, mean_down_h=2.0, run_cv=1.0, gap_s=600, pools=1,
                          daily_amplitude=amplitude)  # fmt: skip
        (p,) = mf.pool_traces(knobs, days=120)
        per = int(HOUR // p.gap_s)
        per_hour = [
            statistics.fmean(
                flag
                for start in range(h * per, len(p.available), 24 * per)
                for flag in p.available[start : start + per]
            )
            for h in range(24)
        ]
        return max(per_hour) - min(per_hour)

    assert hourly_spread(0.8) > hourly_spread(0.0) + 0.2


def test_knobs_span_wide_ranges_within_their_documented_bounds() -> None:
    knobs = [mf.draw_knobs(seed) for seed in range(1, 301)]
    assert {k.pools for k in knobs} >= {1, 2, 8} and max(k.pools for k in knobs) >= 14
    volatile = [k.mean_up_h for k in knobs if not k.calm]
    assert min(volatile) < 0.4 and max(volatile) > 15 and max(volatile) <= 30
    assert 0.1 <= min(k.mean_down_h for k in knobs) < 0.3 and max(k.mean_down_h for k in knobs) > 8
    assert 0.1 <= min(k.spot_ratio for k in knobs) < 0.15 and max(k.spot_ratio for k in knobs) > 0.8
    assert 0.15 < sum(k.calm for k in knobs) / len(knobs) < 0.25
    assert all(k.gap_s * 4 <= min(k.mean_up_h, k.mean_down_h) * HOUR or k.gap_s == 32
               for k in knobs)  # fmt: skip
    assert set(mf.KNOBS) == {f for f in mf.Knobs.__dataclass_fields__ if f not in ("seed", "calm")}


def test_calm_markets_are_priced_from_the_advisor_buckets() -> None:
    rng = random.Random(3)
    means = [mf._calm_mean_up_h(rng) for _ in range(500)]
    # a >20 % monthly interruption rate is at most a run of -720 / ln(0.5) = 1039 h
    assert min(means) >= -720 / math.log(0.5) - 1e-6
    assert max(means) == mf.MAX_MEAN_UP_H


def test_the_tune_and_report_splits_never_share_a_market() -> None:
    assert mf.TUNE_SEEDS.stop <= mf.REPORT_SEEDS.start
    tune, report = mf.market_seeds("tune", 50), mf.market_seeds("report", 50)
    assert not set(tune) & set(report) and len(set(tune)) == 50
    assert mf.market_seeds("tune", 3, offset=10) == [11, 12, 13]
    with pytest.raises(ValueError, match="outside"):
        mf.market_seeds("tune", 2, offset=len(mf.TUNE_SEEDS) - 1)
    with pytest.raises(ValueError, match="unknown split"):
        mf.market_seeds("eval", 1)


def test_prices_and_churn_follow_their_knobs() -> None:
    knobs = replace(mf.draw_knobs(11), spot_ratio=0.3, spot_share=1.0, churn_share=0.5,
                    price_level=1.0, offer_spread=0.0, price_cycle=0.0)  # fmt: skip
    market = mf.build_market(knobs)
    ratios = [(o.spot.min_bid_usd_per_hour or 0) / o.on_demand.usd_per_hour for o in market.offers]
    assert float(statistics.median(ratios)) == pytest.approx(0.3, rel=0.1)
    assert all(o.pool is not None for o in market.offers)
    churning = sum(o.listed is not None for o in market.offers) / len(market.offers)
    assert churning == pytest.approx(0.5, abs=0.15)
    cheap = replace(knobs, price_level=0.6)
    base = {o.on_demand.offer_id: o.on_demand.usd_per_hour for o in market.offers}
    for o in mf.build_market(cheap).offers:
        expected = base[o.on_demand.offer_id] * Decimal("0.6")
        assert abs(o.on_demand.usd_per_hour - expected) <= Decimal("0.0001")


def test_written_traces_read_back_as_the_same_pools(tmp_path: Path) -> None:
    pools = mf.pool_traces(replace(mf.draw_knobs(4), pools=3), days=2)
    mf.write_traces(pools, tmp_path)
    back = load_pools(tmp_path)
    assert [p.available for p in back] == [p.available for p in pools]
    assert {p.gap_s for p in back} == {pools[0].gap_s}


def test_the_command_writes_pools_and_a_market_file(tmp_path: Path) -> None:
    assert mf.main(["--seed", "9", "--out", str(tmp_path), "--days", "1"]) == 0
    assert len(load_pools(tmp_path / "pools")) == mf.draw_knobs(9).pools
    assert (tmp_path / "market.json").stat().st_size > 1000


def test_a_delisted_offer_is_neither_listed_nor_rentable() -> None:
    listed = offer("o-a")
    churning = MarketOffer(listed.on_demand, listed.spot, None, listed=pool("01", gap_s=600))
    market = Market([churning])
    assert market.offers_at(0.0) == [] and len(market.offers_at(700.0)) == 1
    spec = order("a", 10)
    script = Script({0.0: [Rent(listed.on_demand, False, "test")],
                     600.0: [Rent(listed.on_demand, False, "test")]})  # fmt: skip
    result = simulate([spec], market, RATES, script, acceptances=acceptances([spec]))
    assert result.invalid_decisions == 1
    assert len(result.machines) == 1 and result.machines[0].rented_at == 600.0


def test_an_interruptible_machine_pays_the_bid_listed_at_its_rent() -> None:
    cycle = PriceCycle(amplitude=0.5, phase=0.0)
    listed = offer("o-a", usd_per_hour="1.00", bid="0.20")
    pooled = MarketOffer(listed.on_demand, listed.spot, pool("1" * 200, gap_s=600),
                         price_cycle=cycle)  # fmt: skip
    market = Market([pooled])
    trough_at = 18 * HOUR  # sin = -1 at three quarters of the day
    peak_at = 6 * HOUR
    assert market.offer_at("o-a", trough_at, True).min_bid_usd_per_hour == Decimal("0.2")
    assert market.offer_at("o-a", peak_at, True).min_bid_usd_per_hour == Decimal("0.3")
    spec = order("a", 10, deadline_s=2 * 86_400.0)
    script = Script({peak_at: [Rent(listed.spot, True, "test")],
                     peak_at + 900: [Release("m00000", "test")]})  # fmt: skip
    result = simulate([spec], market, RATES, script, acceptances=acceptances([spec]))
    peak = price_micros_per_hour(market.offer_at("o-a", peak_at, True), True)
    assert result.machines[0].price_micros_per_hour == peak
    assert peak > price_micros_per_hour(market.offer_at("o-a", trough_at, True), True)
