"""The exact fleet search: the same answer as trying every subset of the offers, never late by
the dispatch's own check, never below what the fleet costs, and never dearer when the market
gains an offer (pure; hypothesis)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subconscious.models import JobSpec, Offer
from subconscious.planner import fleets
from subconscious.planner.costs import (
    BILLING_INCREMENT_S,
    TEARDOWN_S,
    Rates,
    aws_images_micros,
    aws_machine_micros,
    cost_for,
    fleet_cost_micros,
    price_micros_per_hour,
    usable,
)
from subconscious.planner.fleets import cheapest_fleet
from subconscious.planner.policy import (
    DISPATCH_LATENCY_S,
    SAFETY_SHARE,
    TICK_S,
    Limits,
    OpenOrder,
    feasible,
    keepable,
)
from subconscious.planner.policy import _virtual as virtual
from subconscious.throughput_model import ThroughputModel
from tests import builders

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
RATES = Rates(ThroughputModel())
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def offer(
    offer_id: str,
    gpu: str = "RTX 3090",
    price: str = "0.30",
    provider: str = "vast",
    startup_s: int = 300,
    memory: int = 24,
) -> Offer:
    return builders.offer(
        offer_id, gpu, price, provider=provider, startup_s=startup_s, memory=memory
    )


def job_of(images: int) -> JobSpec:
    return JobSpec.model_validate({"prompts": [{"text": "p", "count": images}]})


offers_strategy = st.lists(
    st.builds(
        offer,
        offer_id=st.uuids().map(str),
        gpu=st.sampled_from(["RTX 3090", "RTX 4090", "RTX A6000", "A100 80GB", "H100 SXM", "T4"]),
        price=st.decimals("0.05", "4.00", places=2).map(str),
        provider=st.sampled_from(["vast", "runpod", "tensordock", "unknown"]),
        startup_s=st.sampled_from([60, 240, 300, 420, 900]),
        memory=st.sampled_from([16, 24, 48, 80]),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda o: o.offer_id,
)
limits_strategy = st.builds(
    Limits,
    max_machines=st.integers(1, 4),
    max_spend_micros_per_hour=st.sampled_from([2_000_000, 5_000_000, 20_000_000]),
)


_Fit = tuple[Offer, float, float, float]  # offer, images/s, ready after, guard


def brute_force(job: JobSpec, offers: list[Offer], limits: Limits, window_s: float) -> int | None:
    """The module's conservative cost, minimised by trying every subset: written from its
    docstring, sharing none of its code."""
    fit = _fit(job, offers, window_s)
    # thresholds rounded up to a minute and to 15 s
    sigmas = {math.ceil(ready / 60) * 60 for _, _, ready, _ in fit}
    sigmas = {sigma for sigma in sigmas if sigma < window_s}
    gammas = {math.ceil(g / 15) * 15 for *_, g in fit}
    gammas = {g for g in gammas if window_s * (1 - SAFETY_SHARE) > g}
    costs = [
        _cheapest_at(job.total_images, fleet, limits, window_s, sigma, gamma)
        for k in range(1, min(limits.max_machines, len(fit)) + 1)
        for fleet in itertools.combinations(fit, k)
        for sigma, gamma in itertools.product(sigmas, gammas)
        if not any(ready > sigma or g > gamma for _, _, ready, g in fleet)
    ]
    best = min((c for c in costs if c is not None), default=None)
    return None if best is None else best + aws_images_micros(job, job.total_images)


def _fit(job: JobSpec, offers: list[Offer], window_s: float) -> list[_Fit]:
    """The offers that can run the job and be ready inside the window."""
    fit: list[_Fit] = []
    for o in offers:
        speed = RATES.speed(o, job)
        ready = DISPATCH_LATENCY_S + o.startup_s
        if usable(o, job) and ready < window_s:
            fit.append((o, speed.images_per_s, ready, max(TICK_S, speed.batch_s)))
    return fit


def _cheapest_at(
    images: int,
    fleet: tuple[_Fit, ...],
    limits: Limits,
    window_s: float,
    sigma: float,
    gamma: float,
) -> int | None:
    """The fleet's cheapest cost over the speed grid, for one start-up and guard threshold."""
    need = images * window_s / ((window_s - sigma) * (window_s * 0.85 - gamma))
    need *= 1 + 1e-9
    best: int | None = None
    for octave in range(fleets.OCTAVES):
        unit = 2**octave * images / (window_s * 0.85 - TICK_S) / fleets.UNITS
        units = sum(math.floor(rate / unit) for _, rate, _, _ in fleet)
        for j in range(fleets.STEPS):
            speed = need * 2**octave * fleets.GRID**j
            if units < math.ceil(speed / unit):
                continue
            busy = images / speed
            cost = sum(
                cost_for(
                    o.provider,
                    price_micros_per_hour(o, False),
                    o.startup_s + busy + TEARDOWN_S,
                )
                + aws_machine_micros(o.startup_s + busy + TEARDOWN_S)
                for o, *_ in fleet
            )
            if cost > limits.max_spend_micros_per_hour * (busy + TEARDOWN_S) / 3600:
                continue
            best = cost if best is None else min(best, cost)
    return best


@PROPERTY
@given(
    st.integers(10, 5000),
    st.integers(20 * 60, 2 * 24 * 3600),
    offers_strategy,
    limits_strategy,
)
def test_the_search_finds_what_trying_every_subset_finds(
    images: int, window_s: int, offers: list[Offer], limits: Limits
) -> None:
    job = job_of(images)
    found = cheapest_fleet(job, offers, RATES, limits, window_s)
    expected = brute_force(job, offers, limits, window_s)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        # integer micro-dollars; the search sums costs computed in float64, exact below 2^53
        # (twice: the GPU's cost and AWS's per machine are each rounded up on their own)
        assert abs(found.cost_micros - expected) <= 2 * len(found.offers)


@PROPERTY
@given(st.integers(10, 5000), st.integers(20 * 60, 2 * 24 * 3600), offers_strategy)
def test_the_fleet_is_on_time_by_the_dispatchs_check_and_costs_no_less_than_it_takes(
    images: int, window_s: int, offers: list[Offer]
) -> None:
    job = job_of(images)
    limits = Limits()
    fleet = cheapest_fleet(job, offers, RATES, limits, window_s)
    if fleet is None:
        return
    order = OpenOrder("o", job, images, NOW + timedelta(seconds=window_s))
    rented = [virtual(o, False, NOW) for o in fleet.offers]
    assert feasible([order], rented, RATES, NOW)
    assert keepable([order], [], offers, RATES, NOW, limits, fleet.offers)
    speeds = [RATES.speed(o, job) for o in fleet.offers]
    assert fleet.cost_micros >= fleet_cost_micros(job, list(fleet.offers), speeds, images)
    assert len(fleet.offers) <= limits.max_machines
    hourly = sum(price_micros_per_hour(o, False) for o in fleet.offers)
    assert hourly <= limits.max_spend_micros_per_hour
    assert len({o.offer_id for o in fleet.offers}) == len(fleet.offers)  # one host per offer


@PROPERTY
@given(
    st.integers(10, 5000),
    st.integers(20 * 60, 2 * 24 * 3600),
    offers_strategy,
    offers_strategy,
    limits_strategy,
)
def test_a_market_that_gains_offers_never_costs_more(
    images: int, window_s: int, offers: list[Offer], more: list[Offer], limits: Limits
) -> None:
    job = job_of(images)
    before = cheapest_fleet(job, offers, RATES, limits, window_s)
    after = cheapest_fleet(job, [*offers, *more], RATES, limits, window_s)
    if before is not None:
        assert after is not None and after.cost_micros <= before.cost_micros


def test_a_tight_window_takes_several_machines_and_a_loose_one_the_cheapest_alone() -> None:
    market = [
        offer("slow-cheap", "RTX 3090", "0.20"),
        offer("fast-dear", "H100 SXM", "2.69", provider="runpod", startup_s=240, memory=80),
        offer("mid", "RTX 4090", "0.35"),
    ]
    job = job_of(10_000)
    tight = cheapest_fleet(job, market, RATES, Limits(), 3600)
    assert tight is not None and len(tight.offers) > 1
    loose = cheapest_fleet(job, market, RATES, Limits(), 3 * 24 * 3600)
    assert loose is not None and [o.offer_id for o in loose.offers] == ["slow-cheap"]


def test_the_caps_bind_and_nothing_fits_a_window_shorter_than_a_start_up() -> None:
    market = [offer(f"h{i}", "H100 SXM", "2.69", startup_s=240, memory=80) for i in range(6)]
    job = job_of(10_000)
    free = cheapest_fleet(job, market, RATES, Limits(), 1800)
    assert free is not None and len(free.offers) == 2
    # one H100 is not enough for the half hour; the hourly cap allows only one
    assert cheapest_fleet(job, market, RATES, Limits(8, 3_000_000), 1800) is None
    assert cheapest_fleet(job, market, RATES, Limits(1), 1800) is None
    assert cheapest_fleet(job, market, RATES, Limits(), DISPATCH_LATENCY_S + 240) is None
    assert cheapest_fleet(job, [], RATES, Limits(), 3600) is None


def test_dropping_dominated_offers_never_changes_the_answer() -> None:
    # 30 copies of one card at rising prices, and a few others: a fleet of at most 3 needs
    # only the 3 cheapest copies
    market = [offer(f"c{i:02d}", "RTX 4090", f"{0.30 + i / 100:.2f}") for i in range(30)]
    market += [offer("h", "H100 SXM", "2.50", provider="runpod", startup_s=240, memory=80)]
    kept = fleets._undominated(fleets._machines(job_of(3000), market, RATES, 7200), 3)
    assert {m.offer.offer_id for m in kept} >= {"c00", "c01", "c02", "h"}
    assert len(kept) < 10
    limits = Limits(max_machines=3)
    found = cheapest_fleet(job_of(3000), market, RATES, limits, 7200)
    assert found is not None
    assert found.cost_micros == brute_force(job_of(3000), market[:3] + market[-1:], limits, 7200)


@pytest.mark.parametrize("provider", sorted(BILLING_INCREMENT_S))
def test_each_providers_billing_increment_is_charged(provider: str) -> None:
    market = [offer("x", provider=provider)]
    found = cheapest_fleet(job_of(100), market, RATES, Limits(), 7200)
    assert found is not None
    step = BILLING_INCREMENT_S[provider]
    held = 300 + found.busy_s + TEARDOWN_S
    billed = max(step, math.ceil(held / step) * step)
    aws = aws_machine_micros(held) + aws_images_micros(job_of(100), 100)
    assert abs(found.cost_micros - math.ceil(300_000 * billed / 3600) - aws) <= 1
    assert aws > 0
