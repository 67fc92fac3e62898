"""``python -m bench.planner --traces DIR [--workload NAME] [--seed N]``: the planner benchmark.

``--markets N --split tune|report`` runs it over N generated markets instead
(:mod:`bench.planner.distribution`, :mod:`bench.planner.market_family`), plus the shipped
traces when ``--traces`` is given, and reports the distribution per workload;
``--market-seed S`` gives the single-market report (``--diagnose`` etc.) on generated market S,
with the orders markets mode drew for it (unless ``--seed`` is given).

For each workload: the orders are drawn (seeded), the policy (``subconscious.planner.policy
.decide``) runs with the real quote deciding which orders are accepted and what is promised;
naive and greedy then serve the same accepted orders with the same promises; the LP lower
bound is solved on those orders; and ``--small`` small instances (≤ 20 orders arriving in 12
hours, deadlines within the day) are simulated with the policy and solved exactly as a MILP.
Prints a table, then one JSON line per workload.

``quote_latency_p99_ms`` is the larger of the p99 of the quotes made during the runs and the
p99 of a dedicated measurement: a backlog of 1,000 open orders holding 10,000 tasks (80 SD 1.5
images each, 8 images a task) and 1,000 offers (the market's offers repeated at prices ±10 %).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.planner import distribution
from bench.planner.baselines import Naive, greedy
from bench.planner.bounds import Bound, Demand, solve
from bench.planner.distribution import MarketJob, default_processes, order_seed
from bench.planner.market_family import SPLITS, market_for, market_seeds
from bench.planner.quoting import choose, quote, timed_quote
from bench.planner.sim import START, SimResult, SpeedError, at, simulate
from bench.planner.simulated_market import Market, MarketOffer, load_market
from bench.planner.traces import Pool, load_pools
from bench.planner.workloads import DAY, HOUR, WORKLOADS, OrderSpec, generate, make_job
from subconscious.models import Constraints, JobSpec, Offer
from subconscious.money import MICROS_PER_USD, to_micros
from subconscious.planner.costs import Rates, price_micros_per_hour
from subconscious.planner.policy import Limits, OpenOrder, decide
from subconscious.throughput_model import ThroughputModel

FULL_SLOT_S = 7200.0
FULL_TIME_LIMIT_S = 300.0
# Slots of the exact MILP: half the shortest order window (a coarser grid lets the optimum
# render an order over whole slots its window only partly covers), within [longest start-up,
# 1 hour]: 30 minutes for tight's 1-hour windows, 1 hour for steady's 2-hour ones.
SMALL_SLOT_MAX_S = 3600.0
SMALL_ORDERS = 20
SMALL_ARRIVAL_DAYS = 0.5
SMALL_TIME_LIMIT_S = 20.0
SMALL_OFFERS = 8
LATENCY_ORDERS = 1000
LATENCY_IMAGES_PER_ORDER = 80  # 10 tasks of 8 images
LATENCY_OFFERS = 1000
LATENCY_CALLS = 30


def p99(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def demands(result: SimResult) -> list[Demand]:
    return [
        Demand(o.order_id, o.spec.job, o.images, o.spec.arrival_s, o.deadline_s)
        for o in result.orders
    ]


@dataclass(frozen=True)
class Small:
    ratios: list[float]
    lp_over_milp: list[float]
    optimal: int
    instances: int
    lp_above_milp: int  # must stay 0
    seconds: float


def small_market(market: Market, rates: Rates, count: int = SMALL_OFFERS) -> Market:
    """The ``count`` offers cheapest per SD 1.5 image on-demand, with their pools."""
    job = make_job(random.Random(0), 10, sdxl=False)

    def per_image(listed: MarketOffer) -> float:
        offer = listed.on_demand
        return price_micros_per_hour(offer, False) / rates.speed(offer, job).images_per_s

    return Market(sorted(market.offers, key=per_image)[:count])


def small_instances(
    workload: str, seed: int, count: int, full_market: Market, rates: Rates
) -> Small:
    """The policy on ``count`` small instances (≤ 20 orders, one day, a market of the 8
    offers cheapest per image) against the exact MILP optimum of the same instance; the
    instances are solved in parallel, one process per core."""
    started = time.perf_counter()
    market = small_market(full_market, rates)
    jobs = [(workload, seed * 1000 + i, market) for i in range(count)]
    if count > 1:
        with ProcessPoolExecutor(max_workers=min(count, os.cpu_count() or 1)) as pool:
            outcomes = list(pool.map(_small_one, jobs))
    else:
        outcomes = [_small_one(job) for job in jobs]
    ratios = [o[0] for o in outcomes if o is not None]
    tightness = [o[1] for o in outcomes if o is not None]
    optimal = sum(o[2] for o in outcomes if o is not None)
    above = sum(o[3] for o in outcomes if o is not None)
    return Small(ratios, tightness, optimal, count, above, time.perf_counter() - started)


def _small_one(args: tuple[str, int, Market]) -> tuple[float, float, bool, bool] | None:
    """(policy ÷ optimum, LP ÷ optimum, solved to optimality, LP above the MILP's bound).
    An instance the MILP does not prove optimal within its time limit is measured against the
    MILP's proven lower bound (the ratio is then an over-estimate)."""
    workload, seed, market = args
    rates = Rates(ThroughputModel())  # per process: the model does not pickle
    result = simulate(small_orders(workload, seed), market, rates, decide)
    if not result.orders:
        return None
    wanted = demands(result)
    slot_s = small_slot_s(wanted, market)
    exact = solve(wanted, market, rates, slot_s=slot_s, time_limit_s=SMALL_TIME_LIMIT_S)
    relaxed = solve(wanted, market, rates, slot_s=slot_s, integral=False)
    optimum = exact.cost_micros if exact.optimal else exact.dual_micros
    if not optimum > 0:
        return None
    above = relaxed.cost_micros > optimum * (1 + 1e-6) + 1e-6
    return result.cost_micros / optimum, relaxed.cost_micros / optimum, exact.optimal, above


def small_slot_s(wanted: Sequence[Demand], market: Market) -> float:
    shortest = min(d.deadline_s - d.arrival_s for d in wanted)
    longest_start = max(o.on_demand.startup_s for o in market.offers)
    return float(max(longest_start, min(SMALL_SLOT_MAX_S, shortest / 2)))


def small_orders(workload: str, seed: int) -> list[OrderSpec]:
    """At most 20 orders of the workload arriving within 12 hours, deadlines within the day."""
    orders = generate(workload, seed, days=SMALL_ARRIVAL_DAYS)[:SMALL_ORDERS]
    return [replace(o, deadline_s=min(o.deadline_s, DAY)) for o in orders]


# --------------------------------------------------------------------------- quote latency


def latency_offers(market: Market, count: int = LATENCY_OFFERS) -> list[Offer]:
    rng = random.Random(0)
    listed = market.offers_at(0.0)
    out = []
    for i in range(count):
        base = listed[i % len(listed)]
        factor = Decimal(str(round(rng.uniform(0.9, 1.1), 3)))
        update: dict[str, Any] = {
            "offer_id": f"{base.offer_id}-x{i}",
            "usd_per_hour": (base.usd_per_hour * factor).quantize(Decimal("0.0001")),
        }
        if base.min_bid_usd_per_hour is not None:
            bid = base.min_bid_usd_per_hour * factor
            update["min_bid_usd_per_hour"] = bid.quantize(Decimal("0.0001"))
        out.append(base.model_copy(update=update))
    return out


def latency_backlog(count: int | None = None) -> list[OpenOrder]:
    count = count or LATENCY_ORDERS
    rng = random.Random(1)
    job = make_job(rng, LATENCY_IMAGES_PER_ORDER, sdxl=False)
    return [
        OpenOrder(f"b{i:05d}", job, LATENCY_IMAGES_PER_ORDER, at(HOUR + i * 3 * DAY / count))
        for i in range(count)
    ]


def quote_latency_10k(market: Market, rates: Rates, calls: int | None = None) -> list[float]:
    calls = calls or LATENCY_CALLS
    offers = latency_offers(market)
    backlog = latency_backlog()
    rng = random.Random(2)
    times = []
    for _ in range(calls):
        job = make_job(rng, round(10 ** rng.uniform(1, 3.7)))
        deadline = at(rng.uniform(2 * HOUR, 3 * DAY))
        _, ms = timed_quote(job, Constraints(deadline=deadline), offers, START, rates,
                            backlog, (), Limits())  # fmt: skip
        times.append(ms)
    return times


# --------------------------------------------------------------------------- one workload


@dataclass
class WorkloadRun:
    name: str
    orders: list[OrderSpec]
    policy: SimResult
    naive: SimResult
    greedy: SimResult
    bound: Bound
    small: Small
    seconds: float


def run_workload(
    name: str, seed: int, market: Market, rates: Rates, *, days: float | None, small: int
) -> WorkloadRun:
    started = time.perf_counter()
    orders = generate(name, seed, days=days)
    policy = simulate(orders, market, rates, decide)
    given = policy.acceptances
    naive = simulate(orders, market, rates, Naive(), acceptances=given)
    greedy_run = simulate(orders, market, rates, greedy, acceptances=given)
    bound = solve(
        demands(policy),
        market,
        rates,
        slot_s=FULL_SLOT_S,
        integral=False,
        time_limit_s=FULL_TIME_LIMIT_S,
    )
    small_run = small_instances(name, seed, small, market, rates)
    return WorkloadRun(name, orders, policy, naive, greedy_run, bound, small_run,
                       time.perf_counter() - started)  # fmt: skip


def _per_image(result: SimResult) -> float:
    return result.cost_per_image_usd


def summary(run: WorkloadRun, latency_10k_ms: float, traces: str, seed: int) -> dict[str, Any]:
    policy = run.policy
    images = policy.images_delivered
    in_run = p99(policy.quote_latencies_ms)
    bound_per_image = run.bound.cost_micros / MICROS_PER_USD / images if images else math.nan
    small = run.small
    return {
        "workload": run.name,
        "policy_cost_per_image_usd": _round(_per_image(policy)),
        "greedy_cost_per_image_usd": _round(_per_image(run.greedy)),
        "naive_cost_per_image_usd": _round(_per_image(run.naive)),
        "lower_bound_cost_per_image_usd": _round(bound_per_image),
        "optimum_ratio_small": _round(statistics.fmean(small.ratios) if small.ratios else math.nan),
        "deadline_attainment": _round(policy.deadline_attainment),
        "orders_over_quote": policy.orders_over_quote,
        "quote_latency_p99_ms": _round(max(in_run, latency_10k_ms)),
        "quote_latency_p99_ms_in_run": _round(in_run),
        "quote_latency_p99_ms_10k_tasks_1k_offers": _round(latency_10k_ms),
        "greedy_deadline_attainment": _round(run.greedy.deadline_attainment),
        "naive_deadline_attainment": _round(run.naive.deadline_attainment),
        "greedy_orders_over_quote": run.greedy.orders_over_quote,
        "naive_orders_over_quote": run.naive.orders_over_quote,
        "policy_over_naive": _round(_per_image(policy) / _per_image(run.naive)),
        "policy_over_greedy": _round(_per_image(policy) / _per_image(run.greedy)),
        "policy_over_lower_bound": _round(_per_image(policy) / bound_per_image),
        "quoted_price_per_image_usd": _round(policy.quoted_micros / MICROS_PER_USD / images)
        if images
        else None,
        "orders": len(run.orders),
        "accepted": len(policy.orders),
        "declined": len(policy.declined),
        "images": images,
        "policy_machines": len(policy.machines),
        "policy_interruptible_machines": sum(m.interruptible for m in policy.machines),
        "preemptions": policy.preemptions,
        "images_lost_to_preemption": policy.images_lost,
        "invalid_decisions": policy.invalid_decisions,
        "lower_bound_optimal": run.bound.optimal,
        "small_instances": small.instances,
        "small_solved_optimal": small.optimal,
        "small_lp_over_milp_mean": _round(
            statistics.fmean(small.lp_over_milp) if small.lp_over_milp else math.nan
        ),
        "small_lp_above_milp": small.lp_above_milp,
        "seed": seed,
        "traces": traces,
        "seconds": round(run.seconds, 1),
    }


def _round(value: float) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(f"{value:.6g}")


ATTAINMENT = ("deadline_attainment", "greedy_deadline_attainment", "naive_deadline_attainment")
OVER_QUOTE = ("orders_over_quote", "greedy_orders_over_quote", "naive_orders_over_quote")


def table(lines: Sequence[dict[str, Any]]) -> str:
    columns: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
        ("workload", "<8", lambda r: r["workload"]),
        ("acc/decl", ">8", lambda r: f"{r['accepted']}/{r['declined']}"),
        ("policy $/img", ">12", lambda r: _fmt(r["policy_cost_per_image_usd"])),
        ("greedy", ">10", lambda r: _fmt(r["greedy_cost_per_image_usd"])),
        ("naive", ">10", lambda r: _fmt(r["naive_cost_per_image_usd"])),
        ("LP bound", ">10", lambda r: _fmt(r["lower_bound_cost_per_image_usd"])),
        ("pol/naive", ">9", lambda r: _fmt(r["policy_over_naive"], 3)),
        ("pol/greedy", ">10", lambda r: _fmt(r["policy_over_greedy"], 3)),
        ("opt ratio", ">9", lambda r: _fmt(r["optimum_ratio_small"], 3)),
        ("on time p/g/n", ">17", lambda r: "/".join(_fmt(r[k], 2) for k in ATTAINMENT)),
        ("over quote p/g/n", ">16", lambda r: "/".join(str(r[k]) for k in OVER_QUOTE)),
        ("preempt", ">7", lambda r: str(r["preemptions"])),
        ("p99 ms", ">7", lambda r: _fmt(r["quote_latency_p99_ms"], 1)),
    ]
    head = " ".join(f"{title:{spec}}" for title, spec, _ in columns)
    body = [" ".join(f"{get(r):{spec}}" for _, spec, get in columns) for r in lines]
    return "\n".join([head, *body])


def _fmt(value: float | None, digits: int = 7) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits < 7 else f"{value:.3e}"


# --------------------------------------------------------------------------- plot


SLACK_BINS_H = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0 + 1)


def slack_series(result: SimResult) -> list[tuple[float, float]]:
    """(median slack in hours, cost per image in USD) per slack bin, over the accepted orders:
    slack = promised completion − arrival; cost = the orders' allocated cost / their images."""
    out = []
    for low, high in itertools.pairwise(SLACK_BINS_H):
        members = [
            o
            for o in result.orders
            if low <= (o.deadline_s - o.spec.arrival_s) / HOUR < high and o.done
        ]
        if not members:
            continue
        cost = sum(o.allocated_micros for o in members) / MICROS_PER_USD
        images = sum(o.done for o in members)
        slack = statistics.median((o.deadline_s - o.spec.arrival_s) / HOUR for o in members)
        out.append((slack, cost / images))
    return out


def plot(runs: Sequence[WorkloadRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        for label, result, style in (
            ("policy", run.policy, "o-"),
            ("greedy", run.greedy, "s--"),
            ("naive", run.naive, "^:"),
        ):
            series = slack_series(result)
            if series:
                xs, ys = zip(*series, strict=True)
                ax.plot(xs, [y * 1000 for y in ys], style, label=label)
        images = run.policy.images_delivered
        if images and not math.isnan(run.bound.cost_micros):
            bound = run.bound.cost_micros / MICROS_PER_USD / images * 1000
            ax.axhline(bound, color="grey", linewidth=1, label="LP bound (whole run)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(run.name)
        ax.set_xlabel("deadline slack (hours, promised − arrival)")
        ax.set_ylabel("cost per 1000 images (USD)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- example


EXAMPLE_NOW_S = 9 * HOUR  # 09:00 UTC on the simulation's first day


def example(market: Market, rates: Rates) -> list[dict[str, Any]]:
    """The founding document's example: 1000 SD 1.5 images from 10 prompts, by end of day and
    by 3 days, at the market's prices at 09:00 UTC; each accepted option then rendered alone by
    the policy in the simulator, for the margin we would actually make."""
    job = JobSpec.model_validate(
        {"prompts": [{"text": f"prompt {i}", "count": 100} for i in range(10)]}
    )
    out = []
    for label, deadline_s in (("end of day", DAY), ("3 days", EXAMPLE_NOW_S + 3 * DAY)):
        constraints = Constraints(deadline=at(deadline_s))
        offers = market.offers_at(EXAMPLE_NOW_S)
        options = quote(job, constraints, offers, at(EXAMPLE_NOW_S), rates)
        chosen = choose(options)
        row: dict[str, Any] = {
            "by": label,
            "deadline": at(deadline_s).isoformat(),
            "options": [
                {
                    "label": o.label,
                    "price_per_image_usd": str(o.price_per_image_usd),
                    "total_usd": str(o.total_usd),
                    "completes_at": o.completes_at.isoformat(),
                    "gpu": o.gpu,
                    "machines": o.machines,
                    "interruptible": o.interruptible,
                }
                for o in options
            ],
        }
        if chosen is not None:
            spec = OrderSpec("example", EXAMPLE_NOW_S, job, deadline_s, None)
            result = simulate([spec], market, rates, decide)
            cost = result.cost_micros
            quoted = to_micros(chosen.total_usd)
            row.update(
                accepted=chosen.label,
                simulated_cost_usd=round(cost / MICROS_PER_USD, 6),
                margin_of_price=round(1 - cost / quoted, 4) if quoted else None,
                on_time=result.deadline_attainment == 1.0,
                machines=[
                    f"{m.offer.gpu} {'interruptible' if m.interruptible else 'on-demand'}"
                    f" {m.end_reason}"
                    for m in result.machines
                ],
            )
        out.append(row)
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.planner", description=__doc__)
    parser.add_argument("--traces", type=Path, help="folder of spot-trace files")
    parser.add_argument("--markets", type=int, help="run over this many generated markets")
    parser.add_argument("--split", choices=sorted(SPLITS), default="tune",
                        help="which seeds the markets come from (tune: may be tuned on; "
                        "report: only reported)")  # fmt: skip
    parser.add_argument("--market-offset", type=int, default=0,
                        help="first market of the split (default 0)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=default_processes(),
                        help="processes (default: 2 at most)")  # fmt: skip
    parser.add_argument("--no-full-lp", action="store_true",
                        help="markets mode: no full-run LP on the shipped traces")  # fmt: skip
    parser.add_argument("--market-seed", type=int,
                        help="the full single-market report on generated market S")  # fmt: skip
    parser.add_argument("--dist-plot", type=Path,
                        help="markets mode: one PNG per workload, named after it")  # fmt: skip
    parser.add_argument("--speed-factor", type=float, default=1.0,
                        help="markets mode: machines render at this multiple of the model's "
                        "speed (default 1: the model is exact)")  # fmt: skip
    parser.add_argument("--speed-spread", type=float, default=0.0,
                        help="markets mode: and each machine within ± this share of that "
                        "(its own draw; default 0)")  # fmt: skip
    parser.add_argument("--no-learning", action="store_true",
                        help="markets mode: the planning model does not learn a card's speed "
                        "from finished machines (every machine its card's first)")  # fmt: skip
    parser.add_argument("--workload", choices=sorted(WORKLOADS), help="default: all of them")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, help="arrival window (default per workload)")
    parser.add_argument("--small", type=int, default=20, help="small exact instances per workload")
    parser.add_argument("--plot", type=Path, help="write the cost-vs-slack PNG here")
    parser.add_argument("--example", action="store_true", help="print the founding example")
    parser.add_argument("--diagnose", action="store_true", help="print the policy's late orders")
    args = parser.parse_args(argv)
    _check_speed_error(parser, args)
    if args.markets is not None:
        return markets_main(args)
    if args.market_seed is None and args.traces is None:
        parser.error("--traces is required (or --markets N, or --market-seed S)")
    market, pools = _single_market(args, parser.get_default("seed"))
    rates = Rates(ThroughputModel())
    names = [args.workload] if args.workload else list(WORKLOADS)
    latency = p99(quote_latency_10k(market, rates))
    runs = [
        run_workload(name, args.seed, market, rates, days=args.days, small=args.small)
        for name in names
    ]
    lines = [summary(run, latency, str(args.traces), args.seed) for run in runs]
    print(f"traces: {args.traces} ({len(pools)} pools); seed {args.seed}")
    print(table(lines))
    if args.diagnose:
        for run in runs:
            print(diagnosis(run))
    if args.example:
        for row in example(market, rates):
            print("example:", json.dumps(row))
    if args.plot:
        plot(runs, args.plot)
    for line in lines:
        print(json.dumps(line))
    return 0


def speed_error(args: argparse.Namespace) -> SpeedError:
    return SpeedError(args.speed_factor, args.speed_spread, learn=not args.no_learning)


def _check_speed_error(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        error = speed_error(args)
    except ValueError as wrong:
        parser.error(str(wrong))
    if args.markets is None and (not error.exact or args.no_learning):
        parser.error("--speed-factor, --speed-spread and --no-learning need --markets")


def _single_market(args: argparse.Namespace, default_seed: int) -> tuple[Market, list[Pool]]:
    """The shipped (``--traces``) or generated (``--market-seed``) market of a single run;
    a generated market gets the orders markets mode drew for it unless ``--seed`` is given."""
    if args.market_seed is None:
        pools = load_pools(args.traces)
        return load_market(pools), pools
    market = market_for(args.market_seed)
    args.traces = f"generated market {args.market_seed}"
    if args.seed == default_seed:
        args.seed = order_seed(args.market_seed, args.seed)
    return market, market.pools


def diagnosis(run: WorkloadRun) -> str:
    out = [f"== {run.name}: rents by reason {dict(run.policy.rent_reasons)}"]
    for order in run.policy.late_orders[:15]:
        late = "never done" if order.done_at is None else (
            f"{(order.done_at - order.deadline_s) / 60:.0f} min late"
        )  # fmt: skip
        out.append(
            f"  late {order.order_id}: {order.images} {order.spec.job.model_family.value} imgs, "
            f"arrived {order.spec.arrival_s / HOUR:.2f} h, promised "
            f"{(order.deadline_s - order.spec.arrival_s) / HOUR:.2f} h after "
            f"({order.acceptance.label}), {late}"
        )
    for order in [o for o in run.policy.orders if o.over_quote][:15]:
        out.append(
            f"  over quote {order.order_id}: {order.images} imgs, cost "
            f"${order.cost_micros / MICROS_PER_USD:.5f} (AWS "
            f"${order.aws_micros / MICROS_PER_USD:.5f}) vs quoted "
            f"${order.acceptance.quoted_micros / MICROS_PER_USD:.5f} "
            f"({order.acceptance.label}, slack "
            f"{(order.deadline_s - order.spec.arrival_s) / HOUR:.1f} h)"
        )
    return "\n".join(out)


def markets_main(args: argparse.Namespace) -> int:
    """``--markets N``: the distribution over N drawn markets of a split (and the shipped
    traces, when ``--traces`` is given) per workload, against the acceptance targets."""
    started = time.perf_counter()
    names = [args.workload] if args.workload else list(WORKLOADS)
    seeds = market_seeds(args.split, args.markets, args.market_offset)
    error = speed_error(args)
    jobs = [
        MarketJob(
            name,
            seed,
            order_seed(seed, args.seed),
            small=args.small > 0,
            days=args.days,
            speed_error=error,
        )
        for name in names
        for seed in seeds
    ]
    if args.traces is not None:
        load_pools(args.traces)  # a bad folder fails here, before any work
        jobs += [
            MarketJob(
                name,
                None,
                args.seed,
                traces=str(args.traces),
                small=args.small > 0,
                full_lp=not args.no_full_lp,
                days=args.days,
                speed_error=error,
            )
            for name in names
        ]
    rows = distribution.run_all(jobs, max(1, args.jobs))
    for row in rows:
        print(json.dumps(row))
    dist = distribution.distribution(rows)
    first, last = (seeds[0], seeds[-1]) if seeds else (None, None)
    print(f"split {args.split}: {len(seeds)} markets (seeds {first}..{last})"
          f"{' + shipped traces ' + str(args.traces) if args.traces else ''}; "
          f"order seed {args.seed}")  # fmt: skip
    if not error.exact:
        print(f"machines render at {args.speed_factor} × the model's speed, each within "
              f"± {args.speed_spread:.0%} of that; the planning model "
              f"{'does not learn' if args.no_learning else 'learns'} each card's speed from "
              "finished machines; no exact optimum (it plans with the model's speeds)")  # fmt: skip
    print(distribution.table(dist))
    print("acceptance (every market above, shipped traces included):")
    print(distribution.acceptance(dist))
    if args.example and args.traces is not None:
        market = load_market(load_pools(args.traces))
        for row in example(market, Rates(ThroughputModel())):
            print("example:", json.dumps(row))
    if args.dist_plot:
        for path in distribution.plot(rows, args.dist_plot):
            print(f"plot: {path}")
    for workload, stats in dist.items():
        print(json.dumps({"workload": workload, "split": args.split, **stats}))
    cpu = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    )  # fmt: skip
    print(f"wall: {time.perf_counter() - started:.0f} s with {args.jobs} processes; CPU: "
          f"{cpu:.0f} s in all (idle, the wall time would be about CPU / processes)")  # fmt: skip
    return 0
