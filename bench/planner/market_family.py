"""A seeded family of spot markets: availability traces, prices and offer churn, drawn.

The benchmark's shipped traces are one market; a customer's market is never that one. This
module draws markets from knobs whose ranges come from published statistics of public spot
traces (each knob's source is in the docstring of :data:`KNOBS` and in
``docs/planner-benchmark.md``), deliberately **wider** than any one source, so that a policy
tuned on some of them is tested on markets with other run lengths, zone counts, correlations,
discounts, cycles and churn.

A market is built from a seed alone (:func:`draw_knobs`, then :func:`build_market`):

* **Pools** (zones): ``pools`` availability traces in the spot-traces format that
  :mod:`bench.planner.traces` reads (:func:`write_traces` writes them as files). Each pool is an
  alternating renewal process: available runs and unavailable runs with log-normal lengths of
  means ``mean_up_h`` / ``mean_down_h`` (per pool, spread by ``pool_spread``) and coefficient
  of variation ``run_cv``; the mean of each run is scaled by a daily and a weekly cycle
  (``daily_amplitude``, ``weekly_amplitude``: availability is scarcer at the pool's peak hours
  and on weekdays). **Correlation**: every pool follows a shared "region" trace during
  segments that cover a share ``sqrt(correlation)`` of the time and its own trace otherwise,
  so two pools' availabilities have a Pearson correlation of about ``correlation``.
  A pool losing capacity preempts every interruptible machine on it (the simulator's rule).
* **Offers**: the local stack's 60 offers (cards, providers, start-up times), their on-demand
  prices times ``price_level`` and a per-offer log-normal factor (``offer_spread``: the same
  card costs 0.5–2.2× its median across providers); a share ``spot_share`` of them has an
  interruptible mode, each on a pool drawn at random, at ``spot_ratio`` × its on-demand price
  (per-offer ±20 %), raised through the day by up to ``price_cycle`` (the bid at rent time is
  what the machine pays). A share ``churn_share`` of offers is listed and delisted over time
  (listed runs of mean ``mean_listed_h``, delisted of mean ``mean_delisted_h``); a rented host
  stays rented when its listing goes.

**Tune / report split**: markets drawn from seeds in :data:`TUNE_SEEDS` are the ones anyone
may tune the policy on; markets from :data:`REPORT_SEEDS` (disjoint) are only reported
(:func:`market_seeds`).

``python -m bench.planner.market_family --seed N --out DIR`` writes one market's pool traces
(spot-traces format, under ``DIR/pools``: ``--traces DIR/pools`` reads them) and
``DIR/market.json`` with its knobs, prices and listings.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from pathlib import Path

from bench.planner.simulated_market import (
    Market,
    MarketOffer,
    PriceCycle,
    load_market,
)
from bench.planner.traces import Pool

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
TRACE_DAYS = 14.0  # the traces wrap; the longest simulation (bursty) runs about 10 days
MONTH_H = 30 * 24.0

# Seeds: a market's seed picks every knob and every trace. Disjoint by construction.
TUNE_SEEDS = range(1, 1_000_000)
REPORT_SEEDS = range(1_000_001, 2_000_000)
SPLITS = {"tune": TUNE_SEEDS, "report": REPORT_SEEDS}


def market_seeds(split: str, count: int, offset: int = 0) -> list[int]:
    """The seeds of ``count`` markets of a split (``tune`` or ``report``), from ``offset``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    seeds = SPLITS[split]
    if count < 0 or offset < 0 or offset + count > len(seeds):
        raise ValueError(f"{split}: markets {offset}..{offset + count} outside the split")
    return list(seeds[offset : offset + count])


# --------------------------------------------------------------------------- knobs


KNOBS: dict[str, str] = {
    "pools": """Number of zones (pools) with interruptible capacity: 1–16, log-uniform.
        Can't Be Late's traces (skypilot-org/spot-traces README) cover 2 zones (availability
        10/26/2022), 3 (16-node 08/27/2023), 4 (preemption 04/22/2023) and 9 (2-month
        02/15/2023, "all 9 zones in us-east-1, us-east-2 and us-west-2"); the shipped folder
        holds 12 files; SkyNomad (arXiv 2601.06520) spreads jobs over several regions.""",
    "gap_s": """Tick of the traces: 32, 60, 300 or 600 s (the shipped preemption traces tick
        every 32 s, the availability traces every 600 s, the README's example 300 s); never
        more than a quarter of the shorter mean run.""",
    "mean_up_h": """Mean length of an available run (hours): log-uniform 0.2–30 h. The 12
        shipped traces measure 0.76–4.4 h (medians 0.33–1.17 h, longest runs 8–85 h). With
        probability 0.2 the market is instead "calm", as the AWS Spot Instance Advisor buckets
        most types ("frequency of interruption ... the rate at which Spot has reclaimed
        capacity during the trailing month": <5 %, 5-10 %, 10-15 %, 15-20 %, >20 %; bucket
        drawn uniformly, a rate r in it read as a monthly interruption probability, mean run
        = −720 h / ln(1 − r), 20–50 % for the open bucket).""",
    "mean_down_h": """Mean length of an unavailable run (hours): log-uniform 0.1–12 h (shipped
        traces: 0.53–12.2 h; availability share 12–89 %).""",
    "run_cv": """Coefficient of variation of run lengths (log-normal): 0.5–4 (shipped traces
        1.3–4.4: a few very long runs, many short ones).""",
    "pool_spread": """Per-pool log-normal factor on both means, sigma 0–0.8 (the shipped
        pools of one market differ by 4× in mean run and 12–89 % in availability share).""",
    "correlation": """Pairwise correlation of pools' availability: 0–0.8. Measured on the
        shipped traces: 0.28–0.66 for the same instance type across zones (0.47–0.66 within a
        region, 0.09–0.20 across regions), about 0 across instance types. Spot-and-Scoot
        (arXiv 2604.16457) finds co-interruptions of one type in one zone within 3 minutes in
        92 % of 2,635 events: one pool is one binary state, as here.""",
    "daily_amplitude": """Daily cycle of run means, amplitude 0–0.8 of the log-mean (the
        shipped traces' availability by hour of day ranges over 0.58–0.94 for us-west-2a
        V100 and 0.00–0.71 for us-east-1c).""",
    "weekly_amplitude": """Weekly cycle, amplitude 0–0.6 (shipped traces' availability by
        day of week: 0.55–0.94 us-west-2a V100, 0.10–0.93 us-east-1f).""",
    "spot_share": """Share of offers with an interruptible mode: 0.3–1.0 (the price file
        lists spot rows for some providers only; the shipped market gives every offer one).""",
    "spot_ratio": """Interruptible price ÷ on-demand: 0.1–0.9, log-uniform. The price file's
        single-GPU pairs: 0.19–0.80 (median 0.50); SkyNomad: spot "3-10x lower cost than
        on-demand" (0.10–0.33); AWS Spot Instance Advisor savings commonly 50–90 %.""",
    "price_level": """On-demand price level of the whole market: 0.6–1.6× the price file.""",
    "offer_spread": """Per-offer log-normal price factor, sigma 0–0.45: in the price file one
        card's single-GPU on-demand prices across providers span 0.5–2.2× their median
        (log sigma 0.43 over 18 cards), so which card is cheapest per image changes.""",
    "price_cycle": """Daily rise of interruptible prices above their trough: 0–0.5 (Agmon
        Ben-Yehuda et al., "Deconstructing Amazon EC2 Spot Instance Pricing": prices mostly
        move within a tight band; a 2026 market report (spheron.network) saw H100 spot
        swing 7× within a week on AWS: the wide end).""",
    "churn_share": """Share of offers listed and delisted over time: 0–0.7 (a marketplace
        offer is one host whose owner lists and unlists it; the Vast.ai/RunPod offers in the
        price file are a snapshot).""",
    "mean_listed_h": """Mean listed run of a churning offer: log-uniform 6 h–7 days.""",
    "mean_delisted_h": """Mean delisted run of a churning offer: log-uniform 0.5 h–2 days.""",
}
"""Every knob, its range and where the range comes from."""

CALM_SHARE = 0.2
ADVISOR_BUCKETS = ((0.0, 0.05), (0.05, 0.10), (0.10, 0.15), (0.15, 0.20), (0.20, 0.50))
MAX_MEAN_UP_H = 10_000.0  # a "<5 %" market at 0 %: never preempted within a run


@dataclass(frozen=True)
class Knobs:
    seed: int
    pools: int
    gap_s: int
    mean_up_h: float
    mean_down_h: float
    run_cv: float
    pool_spread: float
    correlation: float
    daily_amplitude: float
    weekly_amplitude: float
    spot_share: float
    spot_ratio: float
    price_level: float
    offer_spread: float
    price_cycle: float
    churn_share: float
    mean_listed_h: float
    mean_delisted_h: float
    calm: bool = False

    @property
    def drops_per_day(self) -> float:
        """Expected preemptions of one pool a day (without cycles)."""
        return 24.0 / (self.mean_up_h + self.mean_down_h)

    @property
    def available_share(self) -> float:
        return self.mean_up_h / (self.mean_up_h + self.mean_down_h)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _calm_mean_up_h(rng: random.Random) -> float:
    low, high = rng.choice(ADVISOR_BUCKETS)
    rate = rng.uniform(low, high)
    if rate <= 0:
        return MAX_MEAN_UP_H
    return min(MAX_MEAN_UP_H, -MONTH_H / math.log(1 - rate))


def draw_knobs(seed: int) -> Knobs:
    """The knobs of market ``seed`` (every range from :data:`KNOBS`)."""
    rng = random.Random(f"market:{seed}")
    calm = rng.random() < CALM_SHARE
    mean_up = _calm_mean_up_h(rng) if calm else _log_uniform(rng, 0.2, 30.0)
    mean_down = _log_uniform(rng, 0.1, 12.0)
    shortest_s = min(mean_up, mean_down) * HOUR
    gaps = [g for g in (32, 60, 300, 600) if g <= shortest_s / 4] or [32]
    return Knobs(
        seed=seed,
        pools=round(_log_uniform(rng, 1, 16.49)),
        gap_s=rng.choice(gaps),
        mean_up_h=mean_up,
        mean_down_h=mean_down,
        run_cv=rng.uniform(0.5, 4.0),
        pool_spread=rng.uniform(0.0, 0.8),
        correlation=rng.uniform(0.0, 0.8),
        daily_amplitude=rng.uniform(0.0, 0.8),
        weekly_amplitude=rng.uniform(0.0, 0.6),
        spot_share=rng.uniform(0.3, 1.0),
        spot_ratio=_log_uniform(rng, 0.1, 0.9),
        price_level=rng.uniform(0.6, 1.6),
        offer_spread=rng.uniform(0.0, 0.45),
        price_cycle=rng.uniform(0.0, 0.5),
        churn_share=rng.uniform(0.0, 0.7),
        mean_listed_h=_log_uniform(rng, 6.0, 7 * 24.0),
        mean_delisted_h=_log_uniform(rng, 0.5, 48.0),
        calm=calm,
    )


# --------------------------------------------------------------------------- traces


def _lognormal(rng: random.Random, mean: float, cv: float) -> float:
    sigma2 = math.log1p(cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def _cycle(t: float, daily: float, weekly: float, phase: float) -> float:
    """Log-factor on the mean of an available run starting at ``t`` (unavailable: minus)."""
    return daily * math.sin(2 * math.pi * (t / DAY + phase)) + weekly * math.sin(
        2 * math.pi * (t / WEEK + phase)
    )


def renewal(
    rng: random.Random,
    ticks: int,
    gap_s: float,
    mean_up_s: float,
    mean_down_s: float,
    cv: float,
    *,
    daily: float = 0.0,
    weekly: float = 0.0,
    phase: float = 0.0,
) -> list[bool]:
    """An alternating renewal trace of ``ticks`` ticks: runs of log-normal lengths (means
    ``mean_up_s``/``mean_down_s`` scaled by the cycles at each run's start, whole ticks, at
    least one); the first state drawn with the stationary probability."""
    out: list[bool] = []
    state = rng.random() < mean_up_s / (mean_up_s + mean_down_s)
    while len(out) < ticks:
        shift = _cycle(len(out) * gap_s, daily, weekly, phase)
        mean = mean_up_s * math.exp(shift) if state else mean_down_s * math.exp(-shift)
        length = max(1, round(_lognormal(rng, mean, cv) / gap_s))
        out.extend([state] * min(length, ticks - len(out)))
        state = not state
    return out


def pool_traces(knobs: Knobs, days: float = TRACE_DAYS) -> list[Pool]:
    """The market's pools, correlated through a shared trace (see the module docstring)."""
    rng = random.Random(f"pools:{knobs.seed}")
    gap = float(knobs.gap_s)
    ticks = max(1, math.ceil(days * DAY / gap))
    up_s, down_s = knobs.mean_up_h * HOUR, knobs.mean_down_h * HOUR
    cycles = {"daily": knobs.daily_amplitude, "weekly": knobs.weekly_amplitude}
    region_phase = rng.random()
    shared = renewal(rng, ticks, gap, up_s, down_s, knobs.run_cv, phase=region_phase, **cycles)
    follow = math.sqrt(knobs.correlation)
    segment_s = 2 * DAY
    pools = []
    for index in range(knobs.pools):
        factor = math.exp(rng.gauss(0.0, knobs.pool_spread))
        own = renewal(rng, ticks, gap, up_s * factor, down_s / factor, knobs.run_cv,
                      phase=region_phase + rng.uniform(-0.1, 0.1), **cycles)  # fmt: skip
        if follow >= 1.0:
            mask = [True] * ticks
        elif follow <= 0.0:
            mask = [False] * ticks
        else:
            mask = renewal(rng, ticks, gap, segment_s * follow, segment_s * (1 - follow), 1.0)
        available = tuple(s if m else o for s, o, m in zip(shared, own, mask, strict=True))
        pools.append(Pool(name=f"gen{knobs.seed}/zone-{index:02d}", gap_s=gap,
                          available=available))  # fmt: skip
    return pools


def listing_trace(knobs: Knobs, offer_id: str, days: float = TRACE_DAYS) -> Pool:
    """When a churning offer is listed (value > 0) and delisted (0), as a trace."""
    rng = random.Random(f"listing:{knobs.seed}:{offer_id}")
    gap = 600.0
    ticks = math.ceil(days * DAY / gap)
    listed = renewal(rng, ticks, gap, knobs.mean_listed_h * HOUR,
                     knobs.mean_delisted_h * HOUR, 1.0)  # fmt: skip
    return Pool(name=f"listing/{offer_id}", gap_s=gap, available=tuple(listed))


# --------------------------------------------------------------------------- market


def _price(value: Decimal, factor: float) -> Decimal:
    return max(Decimal("0.0001"), (value * Decimal(str(round(factor, 6)))).quantize(
        Decimal("0.0001")))  # fmt: skip


def build_market(knobs: Knobs, days: float = TRACE_DAYS) -> Market:
    """The market of ``knobs``: the local stack's offers, repriced, on generated pools."""
    pools = pool_traces(knobs, days)
    base = load_market([])
    rng = random.Random(f"offers:{knobs.seed}")
    offers = []
    for listed in base.offers:
        on_demand = listed.on_demand
        factor = knobs.price_level * math.exp(rng.gauss(0.0, knobs.offer_spread))
        price = _price(on_demand.usd_per_hour, factor)
        ratio = min(0.95, knobs.spot_ratio * rng.uniform(0.8, 1.2))
        bid = min(_price(price, ratio), price)
        has_spot = rng.random() < knobs.spot_share
        pool = rng.choice(pools) if has_spot and pools else None
        churns = rng.random() < knobs.churn_share
        new_on_demand = on_demand.model_copy(update={"usd_per_hour": price})
        spot = new_on_demand.model_copy(update={"interruptible": True, "min_bid_usd_per_hour": bid})
        cycle = (
            PriceCycle(knobs.price_cycle, rng.random())
            if pool is not None and knobs.price_cycle > 0
            else None
        )
        offers.append(
            MarketOffer(
                on_demand=new_on_demand,
                spot=spot,
                pool=pool,
                listed=listing_trace(knobs, on_demand.offer_id, days) if churns else None,
                price_cycle=cycle,
            )
        )
    return Market(offers)


def market_for(seed: int) -> Market:
    return build_market(draw_knobs(seed))


# --------------------------------------------------------------------------- files


def write_traces(pools: Sequence[Pool], directory: Path) -> list[Path]:
    """Each pool as a spot-traces JSON file (1 = capacity, 0 = none) under ``directory``."""
    paths = []
    for pool in pools:
        path = directory / f"{pool.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"metadata": {"gap_seconds": pool.gap_s}, "data": [int(a) for a in pool.available]}
        path.write_text(json.dumps(body))
        paths.append(path)
    return paths


def describe(knobs: Knobs) -> dict[str, object]:
    out: dict[str, object] = {f.name: getattr(knobs, f.name) for f in fields(knobs)}
    out["drops_per_day"] = round(knobs.drops_per_day, 3)
    out["available_share"] = round(knobs.available_share, 3)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.planner.market_family")
    parser.add_argument("--seed", type=int, required=True, help="the market's seed")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--days", type=float, default=TRACE_DAYS)
    args = parser.parse_args(argv)
    knobs = draw_knobs(args.seed)
    market = build_market(knobs, args.days)
    write_traces(market.pools, args.out / "pools")
    offers = [
        {
            "offer_id": o.on_demand.offer_id,
            "gpu": o.on_demand.gpu,
            "usd_per_hour": str(o.on_demand.usd_per_hour),
            "interruptible_usd_per_hour": str(o.spot.min_bid_usd_per_hour) if o.pool else None,
            "pool": o.pool.name if o.pool else None,
            "price_cycle": asdict(o.price_cycle) if o.price_cycle else None,
            "listed": [int(a) for a in o.listed.available] if o.listed else None,
            "listed_gap_seconds": o.listed.gap_s if o.listed else None,
        }
        for o in market.offers
    ]
    body = {"knobs": describe(knobs), "offers": offers}
    (args.out / "market.json").write_text(json.dumps(body, indent=1))
    print(json.dumps(describe(knobs)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
