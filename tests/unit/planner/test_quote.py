"""Quotes: the requested terms when feasible, counter-proposals when not, and the promises
behind every option (pure; no AWS). Property tests with hypothesis."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subconscious.catalogue import canonical
from subconscious.errors import NoCapacity
from subconscious.models import Constraints, JobSpec, Offer, QuoteOption
from subconscious.money import to_micros
from subconscious.planner.costs import TEARDOWN_S, Rates, cost_for, fleet_cost_micros
from subconscious.planner.policy import DISPATCH_LATENCY_S, Limits, OpenOrder, edf, keepable
from subconscious.planner.quote import fleet_plan, frontier, plan_quote, singles
from subconscious.planner.serving import serving_cost_usd
from subconscious.throughput_model import ThroughputModel
from tests import builders

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
END_OF_DAY = NOW.replace(hour=23, minute=59)
RATES = Rates(ThroughputModel())
MARGIN = 30


def founding_job(per_prompt: int = 100) -> JobSpec:
    """The founding document's example: 1000 SD 1.5 images from 10 prompts."""
    prompts = [{"text": f"prompt {i}", "count": per_prompt} for i in range(10)]
    return JobSpec.model_validate({"prompts": prompts})


def offer(
    offer_id: str,
    gpu: str = "RTX 3090",
    price: str = "0.22",
    bid: str | None = None,
    provider: str = "vast",
    startup_s: int = 300,
    memory: int = 24,
) -> Offer:
    return builders.offer(
        offer_id, gpu, price, bid=bid, provider=provider, startup_s=startup_s, memory=memory
    )


MARKET = [
    offer("v-3090", bid="0.09"),
    offer("v-4090", "RTX 4090", "0.35", bid="0.15"),
    offer("td-a6000", "RTX A6000", "0.45", provider="tensordock", startup_s=420, memory=48),
    offer("rp-h100", "H100 SXM", "2.69", provider="runpod", startup_s=240, memory=80),
]


def quote(job: JobSpec, offers: list[Offer] | None = None, **constraints: Any) -> list[QuoteOption]:
    return plan_quote(
        job, Constraints(**constraints), offers or MARKET, NOW, MARGIN, RATES, limits=Limits()
    )


def labels(options: list[QuoteOption]) -> list[str]:
    return [o.label for o in options]


def test_founding_example_feasible_returns_the_requested_terms() -> None:
    options = quote(founding_job(), deadline=END_OF_DAY, max_price_per_image_usd=Decimal("0.03"))
    requested = options[0]
    assert requested.label == "requested" and requested.meets_budget and requested.meets_deadline
    assert requested.completes_at == END_OF_DAY  # promised by the deadline: room to batch
    assert requested.price_per_image_usd <= Decimal("0.03")
    assert requested.total_usd == requested.price_per_image_usd * 1000
    assert labels(options) == ["requested", "earliest"]
    # faster at a higher price: the earliest finish on this market, promised when it completes
    earliest = options[1]
    assert earliest.completes_at < requested.completes_at
    assert earliest.price_per_image_usd > requested.price_per_image_usd
    assert earliest.machines > 1 and earliest.gpu == "H100"


def test_founding_example_infeasible_budget_returns_counter_proposals() -> None:
    options = quote(
        founding_job(), deadline=END_OF_DAY, max_price_per_image_usd=Decimal("0.000001")
    )
    assert "requested" not in labels(options)
    cheapest = next(o for o in options if o.label == "cheapest")
    assert cheapest.meets_deadline and not cheapest.meets_budget
    # nothing in budget on this market, at any speed: no "earliest" either
    assert all(not o.meets_budget for o in options)


def test_an_impossible_deadline_offers_the_earliest_which_is_within_budget() -> None:
    options = quote(
        founding_job(),
        deadline=NOW + timedelta(minutes=2),
        max_price_per_image_usd=Decimal("0.03"),
    )
    # the earliest at any price is within budget, so it is also the earliest within budget:
    # shown once, as "earliest"
    assert labels(options) == ["earliest", "wait_1d"]
    earliest = options[0]
    assert earliest.meets_budget and not earliest.meets_deadline
    assert earliest.completes_at > NOW + timedelta(minutes=2)


def test_an_impossible_deadline_offers_the_earliest_within_budget_and_the_earliest() -> None:
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    # the 3090 and the 4090 alone, not the H100s (prices count AWS: ~80 µ$ of ~220 an image)
    budget = Decimal("0.0003")
    options = quote(
        founding_job(),
        on_demand,
        deadline=NOW + timedelta(minutes=2),
        max_price_per_image_usd=budget,
    )
    # (and a day's wait for the cheapest card alone, cheaper still)
    assert labels(options) == ["earliest_in_budget", "earliest", "wait_1d"]
    in_budget, earliest, _ = options
    assert in_budget.meets_budget and not in_budget.meets_deadline
    assert in_budget.price_per_image_usd <= budget < earliest.price_per_image_usd
    assert earliest.completes_at < in_budget.completes_at
    # the earliest within budget: no plan within budget finishes sooner
    plans = frontier(founding_job(), on_demand, RATES, Limits())
    sooner = [p for p in plans if p.completes(NOW) < in_budget.completes_at]
    assert all(p.cost_micros * (100 + MARGIN) > to_micros(budget) * 100 * 1000 for p in sooner)


def test_the_earliest_within_budget_is_one_the_backlog_lets_us_promise() -> None:
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    job, budget, limits = founding_job(), Decimal("0.0005"), Limits(max_machines=2)
    backlog = [OpenOrder("b", founding_job(), 1000, NOW + timedelta(minutes=20))]
    terms = Constraints(deadline=NOW + timedelta(minutes=2), max_price_per_image_usd=budget)
    options = plan_quote(job, terms, on_demand, NOW, MARGIN, RATES, backlog=backlog, limits=limits)
    assert labels(options) == ["earliest_in_budget", "earliest"]
    in_budget = options[0]
    # a quicker plan within budget exists, but promising it would break the earlier promise
    quicker = [
        p
        for p in frontier(job, on_demand, RATES, limits)
        if p.completes(NOW) < in_budget.completes_at
        and p.cost_micros * (100 + MARGIN) <= to_micros(budget) * 100 * 1000
    ]
    assert quicker
    for plan in quicker:
        new = OpenOrder("quote", job, 1000, plan.completes(NOW))
        assert not keepable(edf([new, *backlog]), [], on_demand, RATES, NOW, limits, plan.offers)


def test_when_neither_term_can_be_met_the_quote_says_how_far_off_each_is() -> None:
    deadline = NOW + timedelta(minutes=2)
    options = quote(founding_job(), deadline=deadline, max_price_per_image_usd=Decimal("0.000001"))
    assert labels(options) == ["fastest", "lowest_price"]
    fastest, lowest = options
    # each breaks both terms, and says so
    assert not (fastest.meets_deadline or fastest.meets_budget)
    assert not (lowest.meets_deadline or lowest.meets_budget)
    assert fastest.completes_at < lowest.completes_at
    assert lowest.price_per_image_usd < fastest.price_per_image_usd
    # the lowest price at any time: waiting a day for interruptible capacity is cheaper than
    # any on-demand plan, so that is the lowest price (and no wait_1d repeats it)
    assert lowest.completes_at == NOW + timedelta(days=1)
    for days in (None, 1, 3):
        other = quote(founding_job(), deadline=NOW + timedelta(days=days) if days else None)
        assert min(o.price_per_image_usd for o in other) >= lowest.price_per_image_usd


def test_when_neither_term_can_be_met_without_interruptible_capacity() -> None:
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    options = quote(
        founding_job(),
        on_demand,
        deadline=NOW + timedelta(minutes=2),
        max_price_per_image_usd=Decimal("0.000001"),
    )
    assert labels(options) == ["fastest", "lowest_price"]
    fastest, lowest = options
    cheapest_plan = min(
        frontier(founding_job(), on_demand, RATES, Limits()), key=lambda p: p.cost_micros
    )
    assert lowest.completes_at == cheapest_plan.completes(NOW)  # no waiting: promised when done
    assert lowest.gpu == "RTX 3090" and fastest.gpu == "H100"


def test_one_offer_and_no_terms_is_one_option() -> None:
    # the cheapest plan is also the earliest: shown once, as the answer
    on_demand = [MARKET[0].model_copy(update={"min_bid_usd_per_hour": None})]
    assert labels(quote(founding_job(), on_demand)) == ["requested"]


def test_expected_completion_is_start_up_and_rendering_without_the_reserve() -> None:
    job = founding_job()
    [single] = singles(job, [MARKET[0]], RATES)
    [option] = quote(job, [MARKET[0].model_copy(update={"min_bid_usd_per_hour": None})])
    render_s = job.total_images / RATES.speed(MARKET[0], job).images_per_s
    expected_s = DISPATCH_LATENCY_S + MARKET[0].startup_s + render_s
    assert option.expected_completion_at == NOW + timedelta(seconds=math.ceil(expected_s))
    assert option.completes_at == single.completes(NOW) > option.expected_completion_at


def test_a_fleet_is_expected_to_finish_when_its_machines_together_have_rendered_the_job() -> None:
    job = founding_job()
    [earliest] = [o for o in quote(job) if o.label == "earliest"]
    [fleet] = [p for p in frontier(job, MARKET, RATES, Limits()) if p.machines == 3]

    def rendered(seconds: float) -> float:  # each machine from when it is ready
        return sum(
            RATES.speed(o, job).images_per_s * max(0.0, seconds - DISPATCH_LATENCY_S - o.startup_s)
            for o in fleet.offers
        )

    expected_s = (earliest.expected_completion_at - NOW).total_seconds()
    assert rendered(expected_s - 1) < job.total_images <= rendered(expected_s)
    assert earliest.completes_at == fleet.completes(NOW)


def test_waiting_is_cheaper_where_interruptible_capacity_exists() -> None:
    # two hours leave no room for interruptible machines; three days do
    options = quote(founding_job(), deadline=NOW + timedelta(hours=2))
    by_label = {o.label: o for o in options}
    # today's prices hold for every day ahead (no forecast here), so a day is as cheap as
    # three: the three-day option is left out rather than repeat the one-day price
    assert labels(options) == ["requested", "earliest", "wait_1d"]
    assert by_label["wait_1d"].price_per_image_usd < by_label["requested"].price_per_image_usd
    assert by_label["wait_1d"].completes_at == NOW + timedelta(days=1)


def test_wait_options_never_price_below_what_on_demand_would_cost_us() -> None:
    job = founding_job()
    plan = min(frontier(job, MARKET, RATES, Limits()), key=lambda p: p.cost_micros)
    for option in quote(job, deadline=NOW + timedelta(hours=2)):
        assert to_micros(option.total_usd) >= plan.cost_micros


def test_no_interruptible_offer_no_cheaper_wait_option() -> None:
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    assert labels(quote(founding_job(), on_demand, deadline=NOW + timedelta(hours=2))) == [
        "requested",
        "earliest",
    ]


def test_a_window_with_hours_of_slack_is_priced_on_interruptible_capacity() -> None:
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    od_price, *_ = quote(founding_job(), on_demand, deadline=END_OF_DAY)
    spot_price, *_ = quote(founding_job(), deadline=END_OF_DAY)
    assert od_price.label == spot_price.label == "requested"
    assert spot_price.price_per_image_usd < od_price.price_per_image_usd


def test_tight_deadlines_price_several_machines_each_offer_once() -> None:
    job = JobSpec.model_validate({"prompts": [{"text": "x", "count": 10_000}]})
    [requested, *_] = quote(job, deadline=NOW + timedelta(hours=1))
    assert requested.meets_deadline and requested.machines > 1
    fleets = [p for p in frontier(job, MARKET, RATES, Limits()) if p.machines > 1]
    assert fleets and all(len({o.offer_id for o in p.offers}) == p.machines for p in fleets)


def test_no_usable_offer_is_no_capacity() -> None:
    sdxl = JobSpec.model_validate(
        {
            "prompts": [{"text": "x", "count": 1}],
            "model_family": "sdxl",
            "width": 1024,
            "height": 1024,
        }
    )
    with pytest.raises(NoCapacity):
        quote(sdxl, [offer("tiny", "RTX 3060 Ti", memory=8)])


def test_a_full_backlog_refuses_what_it_could_not_keep() -> None:
    job = founding_job()
    # every machine the caps allow is needed for work already promised within the hour
    big = OpenOrder("o-big", job, 40_000, NOW + timedelta(hours=1))
    with pytest.raises(NoCapacity):
        plan_quote(
            job,
            Constraints(deadline=NOW + timedelta(hours=1)),
            MARKET,
            NOW,
            MARGIN,
            RATES,
            backlog=[big],
            limits=Limits(max_machines=2),
        )


def test_quote_latency_inputs_of_the_benchmark_size_are_handled() -> None:
    # 1,000 offers and a backlog of 10,000 tasks: the quote answers (speed is in bench/)
    offers = [offer(f"o{i}", price=f"0.{20 + i % 50:02d}") for i in range(1000)]
    backlog = [
        OpenOrder(f"b{i}", founding_job(8), 80, NOW + timedelta(hours=6 + i % 48))
        for i in range(1250)
    ]
    options = plan_quote(
        founding_job(),
        Constraints(deadline=END_OF_DAY),
        offers,
        NOW,
        MARGIN,
        RATES,
        backlog=backlog,
        limits=Limits(max_machines=64, max_spend_micros_per_hour=10**9),
    )
    assert options[0].label == "requested"


def test_a_fleet_on_time_by_seconds_is_the_answer_where_the_exact_search_rounds_it_out() -> None:
    """Found by hypothesis: a two-card fleet the frontier times exactly finishes 2 s before the
    deadline; the exact search, which rounds start-ups, call lengths and rates against us,
    finds none. The quote offered that fleet as ``earliest`` (on time) and no answer at all."""
    job = JobSpec.model_validate({"prompts": [{"text": "p", "count": 4310}]})
    market = [
        offer("a", "T4", "0.05", startup_s=30, memory=16),
        offer("b", "RTX 3090", "0.05", startup_s=30, memory=16),
    ]
    deadline = NOW + timedelta(seconds=4335)
    assert fleet_plan(job, market, RATES, Limits(), 4335.0) is None  # the corner itself
    options = quote(job, market, deadline=deadline)
    answer = options[0]
    assert answer.label == "requested" and answer.machines == 2
    assert answer.completes_at == deadline
    assert answer.price_per_image_usd == min(o.price_per_image_usd for o in _on_time(options))


def test_a_new_listing_never_raises_the_price_of_a_fleet() -> None:
    """Found by a random search against the rule quotes used to fleets by (the k offers
    cheapest per image, or quickest to start): adding a dear T4 that starts in a minute
    reordered the fleet and raised the price on time by 18 %. The exact fleet search cannot."""
    market = [
        offer("a", "RTX 3090", "0.68", provider="runpod", startup_s=900, memory=16),
        offer("b", "RTX A6000", "3.10", provider="runpod", startup_s=900, memory=24),
        offer("c", "T4", "0.35", provider="runpod", startup_s=900, memory=16),
        offer("d", "RTX 3090", "0.38", provider="tensordock", startup_s=300, memory=48),
        offer("e", "A100 80GB", "2.76", provider="vast", startup_s=60, memory=16),
    ]
    newcomer = offer("f", "T4", "2.28", provider="tensordock", startup_s=60, memory=48)
    job = JobSpec.model_validate({"prompts": [{"text": "p", "count": 2537}]})
    deadline = NOW + timedelta(seconds=2236)

    def on_time_price(offers: list[Offer]) -> Decimal:
        return min(o.price_per_image_usd for o in _on_time(quote(job, offers, deadline=deadline)))

    assert on_time_price([*market, newcomer]) <= on_time_price(market)


def test_a_new_listing_never_hides_a_machine_the_fleet_search_alone_counts_on_time() -> None:
    """Found in review: the 3090 is on time by the dispatch's check (which the fleet search
    uses) but not by a single plan's stricter one; the H100 made the search look only for
    fleets of two or more, which cannot beat it, and the 3090 was lost: +50 %."""
    slow = offer("m", "RTX 3090", "0.10", startup_s=90)
    fast = offer("o", "H100 SXM", "0.60", startup_s=240, memory=80)
    # 2,740-2,760 images: the 3090 alone is on time by the dispatch's check, not by its plan's
    job = JobSpec.model_validate({"prompts": [{"text": "p", "count": 2750}]})
    deadline = NOW + timedelta(hours=1)
    assert singles(job, [slow], RATES)[0].seconds > 3600 and _on_time(
        quote(job, [slow], deadline=deadline)
    )

    def on_time_price(offers: list[Offer]) -> Decimal:
        return min(o.price_per_image_usd for o in _on_time(quote(job, offers, deadline=deadline)))

    assert on_time_price([slow, fast]) <= on_time_price([slow])


def test_an_offer_over_the_hourly_cap_is_never_priced() -> None:
    """Found in review: an H100 at $3.91/h under a $3/h cap priced the quote at half what the
    RTX 4090 the dispatch could rent costs."""
    rentable = offer("o1", "RTX 4090", "2.69", provider="runpod", startup_s=60, memory=16)
    over_cap = offer("o2", "H100 SXM", "3.91", provider="runpod", startup_s=60, memory=48)
    job = JobSpec.model_validate({"prompts": [{"text": "p", "count": 2288}]})
    deadline = NOW + timedelta(seconds=3094)
    limits = Limits(2, 3_000_000)

    def on_time_price(offers: list[Offer]) -> Decimal:
        options = plan_quote(
            job, Constraints(deadline=deadline), offers, NOW, MARGIN, RATES, limits=limits
        )
        return min(o.price_per_image_usd for o in _on_time(options))

    assert on_time_price([rentable, over_cap]) == on_time_price([rentable])


# --- properties ---

offer_strategy = st.builds(
    offer,
    offer_id=st.uuids().map(str),
    gpu=st.sampled_from(["RTX 3090", "RTX 4090", "RTX A6000", "A100 80GB", "H100 SXM", "T4"]),
    price=st.decimals("0.05", "4.00", places=2).map(str),
    bid=st.none() | st.decimals("0.02", "0.05", places=2).map(str),
    provider=st.sampled_from(["vast", "runpod", "tensordock"]),
    startup_s=st.integers(30, 900),
    memory=st.sampled_from([16, 24, 48, 80]),
)
job_strategy = st.integers(10, 5000).map(
    lambda n: JobSpec.model_validate({"prompts": [{"text": "p", "count": n}]})
)
deadline_strategy = st.integers(20 * 60, 7 * 24 * 3600).map(lambda s: NOW + timedelta(seconds=s))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _on_time(options: list[QuoteOption]) -> list[QuoteOption]:
    return [o for o in options if o.meets_deadline]


@PROPERTY
@given(job_strategy, deadline_strategy, st.lists(offer_strategy, min_size=1, max_size=6))
def test_a_quoted_feasible_order_can_be_kept_by_dispatch(
    job: JobSpec, deadline: datetime, offers: list[Offer]
) -> None:
    try:
        options = plan_quote(job, Constraints(deadline=deadline), offers, NOW, MARGIN, RATES)
    except NoCapacity:
        return
    for option in _on_time(options):
        assert option.completes_at <= deadline
        promised = OpenOrder("o", job, job.total_images, option.completes_at)
        # on-demand capacity alone, rented now, finishes it by the promise
        assert keepable([promised], [], offers, RATES, NOW, Limits())


@PROPERTY
@given(job_strategy, deadline_strategy, st.lists(offer_strategy, min_size=1, max_size=6))
def test_no_option_is_priced_below_the_plan_it_was_priced_on(
    job: JobSpec, deadline: datetime, offers: list[Offer]
) -> None:
    try:
        options = plan_quote(job, Constraints(deadline=deadline), offers, NOW, MARGIN, RATES)
    except NoCapacity:
        return
    window_s = (deadline - NOW).total_seconds()
    exact = fleet_plan(job, offers, RATES, Limits(), window_s)
    plans = [*frontier(job, offers, RATES, Limits()), *singles(job, offers, RATES)]
    plans += [exact] if exact else []
    for option in options:
        # what renting that plan on-demand costs us, start-ups and billing increments included
        candidates = [
            fleet_cost_micros(
                job, list(p.offers), [RATES.speed(o, job) for o in p.offers], job.total_images
            )
            for p in plans
            if (p.machines, canonical(p.offer.gpu), p.offer.provider)
            == (option.machines, option.gpu, option.provider)
        ]
        assert candidates
        assert to_micros(option.total_usd) >= min(candidates)


@PROPERTY
@given(
    job_strategy,
    deadline_strategy,
    st.lists(offer_strategy, min_size=1, max_size=6),
    offer_strategy,
    st.sampled_from([Limits(), Limits(max_machines=1), Limits(3, 4_000_000)]),
)
def test_adding_an_offer_never_raises_the_quoted_price(
    job: JobSpec, deadline: datetime, offers: list[Offer], extra: Offer, limits: Limits
) -> None:
    """Fleets included: the answer on time (``requested``, or ``cheapest`` over budget) is
    priced from every offer alone and the exact cheapest fleet (planner/fleets.py), and each
    can only fall when the market gains an offer. The ``earliest`` option is the fastest plan
    at any price: it may finish on time too, and a market with one more offer may have a
    faster, dearer one (hypothesis found it: under an hourly cap the exact search, which keeps
    the cap conservatively, found no fleet for a 20-minute window, and the earliest plan, on
    time, rose by a micro-dollar an image when a third card made a faster fleet)."""

    def best(market: list[Offer]) -> Decimal | None:
        try:
            options = plan_quote(
                job, Constraints(deadline=deadline), market, NOW, MARGIN, RATES, limits=limits
            )
        except NoCapacity:
            return None
        answers = [o for o in _on_time(options) if o.label in ("requested", "cheapest")]
        return min((o.price_per_image_usd for o in answers), default=None)

    before, after = best(offers), best([*offers, extra])
    if before is not None:
        assert after is not None and after <= before


def test_the_price_covers_the_gpu_and_what_aws_charges_for_serving() -> None:
    """One machine, on-demand: the quoted total is at least its GPU time billed as its provider
    bills plus AWS's charges (planner/serving.py) for that machine and the images, with the
    margin on both."""
    job = founding_job(per_prompt=10)  # 100 images, 512x512
    market = [offer("only", price="0.22")]
    option = quote(job, market)[0]
    speed = RATES.speed(market[0], job)
    held = market[0].startup_s + speed.seconds(job.total_images) + TEARDOWN_S
    gpu = cost_for("vast", 220_000, held)
    aws = serving_cost_usd(images=100, width=512, height=512, machine_seconds=held, machines=1)
    assert aws > Decimal("0.005")  # not a rounding error: about a sixth of the GPU's cost here
    floor = (gpu + to_micros(aws)) * (100 + MARGIN) // 100
    assert to_micros(option.total_usd) >= floor
    # and the AWS share is what lifted it: GPU time alone with the margin would be less
    assert to_micros(option.total_usd) > gpu * (100 + MARGIN) // 100 + to_micros(aws)


budget_strategy = st.none() | st.decimals("0.00002", "0.004", places=6)
backlog_strategy = st.sampled_from(
    [
        [],
        [OpenOrder("b1", founding_job(), 4000, NOW + timedelta(hours=1))],
        [OpenOrder(f"b{i}", founding_job(8), 80, NOW + timedelta(hours=1 + i)) for i in range(20)],
    ]
)
LABELS = {"requested", "cheapest", "earliest", "earliest_in_budget", "fastest", "lowest_price"}
ANSWERS = {"requested", "cheapest", "earliest_in_budget"}


@PROPERTY
@given(
    job_strategy,
    deadline_strategy,
    budget_strategy,
    st.lists(offer_strategy, min_size=1, max_size=6),
    backlog_strategy,
)
def test_the_options_around_the_request(
    job: JobSpec,
    deadline: datetime,
    budget: Decimal | None,
    offers: list[Offer],
    backlog: list[OpenOrder],
) -> None:
    terms = Constraints(deadline=deadline, max_price_per_image_usd=budget)
    try:
        options = plan_quote(job, terms, offers, NOW, MARGIN, RATES, backlog=backlog)
    except NoCapacity:
        return
    found = labels(options)
    assert len(set(found)) == len(found)
    assert all(label in LABELS or label in ("wait_1d", "wait_3d") for label in found)
    for option in options:
        # our expected finish: after the machines can start, never after the promise
        assert NOW + timedelta(seconds=DISPATCH_LATENCY_S) < option.expected_completion_at
        assert option.expected_completion_at <= option.completes_at
        assert option.meets_deadline == (option.completes_at <= deadline)
        assert option.meets_budget == (budget is None or option.price_per_image_usd <= budget)
    # the earliest (or, where neither term can be met, the fastest) is never later than any
    for label in ("earliest", "fastest"):
        if label in found:
            first = options[found.index(label)]
            assert all(first.completes_at <= o.completes_at for o in options)
    # the answer on time is the cheapest on time; "requested" exactly when the terms are met
    on_time = [o for o in options if o.meets_deadline]
    answer = [o for o in options if o.label in ("requested", "cheapest")]
    if on_time:
        assert answer and answer[0].price_per_image_usd == min(
            o.price_per_image_usd for o in on_time
        )
    assert ("requested" in found) == any(o.meets_deadline and o.meets_budget for o in options)
    # fastest and lowest_price exactly where no option meets either term
    neither = budget is not None and not any(o.meets_deadline or o.meets_budget for o in options)
    assert ("fastest" in found or "lowest_price" in found) == neither
    assert not (neither and "earliest" in found)
    # each trade-off once: no option another beats or equals on time and price (bar the answer)
    for i, a in enumerate(options):
        for b in options[i + 1 :]:
            assert (a.completes_at, a.price_per_image_usd) != (
                b.completes_at,
                b.price_per_image_usd,
            )
        beaten = any(
            b is not a
            and b.completes_at <= a.completes_at
            and b.price_per_image_usd <= a.price_per_image_usd
            for b in options
        )
        assert not beaten or a.label in ("requested", "cheapest")
    # the answers first, then the others by promised completion
    kinds = [o.label not in ANSWERS for o in options]
    assert kinds == sorted(kinds)
    rest = [o.completes_at for o in options if o.label not in ANSWERS]
    assert rest == sorted(rest)
