"""The spot outlook from the market history, and how the quote uses it (pure; no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from subconscious.models import Constraints, Offer
from subconscious.models.spot import SpotOutlook
from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR
from subconscious.planner.forecast import outlook
from subconscious.planner.policy import Limits
from subconscious.planner.quote import plan_quote, spot_cost_micros
from tests.unit.planner.test_quote import (
    END_OF_DAY,
    MARGIN,
    MARKET,
    NOW,
    RATES,
    founding_job,
    offer,
)


def hourly(snapshots: list[list[Offer]]) -> list[tuple[datetime, list[Offer]]]:
    """Snapshots an hour apart, the first at NOW."""
    return [(NOW + timedelta(hours=i), offers) for i, offers in enumerate(snapshots)]


def test_shares_count_the_snapshots_listing_a_card_in_which_it_took_bids() -> None:
    spot = offer("a", "RTX 3090", bid="0.09")
    steady = offer("b", "RTX 3090")
    h100 = offer("c", "H100 SXM", "2.50", memory=80)
    snapshots = [[spot, h100], [steady], [steady, spot], [h100]]
    seen = outlook(hourly(snapshots), computed_at=NOW)
    assert seen.snapshots == 4
    assert seen.share("RTX 3090") == 2 / 3
    assert seen.share("NVIDIA GeForce RTX 3090") == 2 / 3  # names are normalised
    assert seen.share("H100 SXM") == 0.0
    assert seen.share("RTX 5090") == 1.0  # never listed: today's market decides
    assert SpotOutlook.from_json(seen.to_json()) == seen


def test_no_history_is_an_empty_outlook_that_changes_nothing() -> None:
    empty = outlook([])
    assert empty.snapshots == 0 and empty.share("RTX 3090") == 1.0
    job = founding_job()
    assert spot_cost_micros(job, MARKET, RATES, empty) == spot_cost_micros(job, MARKET, RATES)


def _wait_price(
    spot_outlook: SpotOutlook | None,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
    market: list[Offer] = MARKET,
) -> Decimal:
    options = plan_quote(
        founding_job(),
        Constraints(deadline=END_OF_DAY),
        market,
        NOW,
        MARGIN,
        RATES,
        limits=Limits(),
        outlook=spot_outlook,
        preemptions_per_hour=preemptions_per_hour,
    )
    return options[0].price_per_image_usd


def test_cards_rarely_interruptible_in_the_history_are_priced_nearer_on_demand() -> None:
    today = _wait_price(None)
    always = _wait_price(SpotOutlook({"RTX 3090": 1.0, "RTX 4090": 1.0}, 10))
    rarely = _wait_price(SpotOutlook({"RTX 3090": 0.1, "RTX 4090": 0.1}, 10))
    never = _wait_price(SpotOutlook({"RTX 3090": 0.0, "RTX 4090": 0.0}, 10))
    assert always == today
    assert today < rarely <= never
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    od, *_ = plan_quote(
        founding_job(), Constraints(deadline=END_OF_DAY), on_demand, NOW, MARGIN, RATES
    )
    assert od.label == "requested" and never <= od.price_per_image_usd


def test_the_discount_is_priced_at_the_preemptions_our_machines_saw_never_below_default() -> None:
    """Where our machines were preempted often, every interruptible rental loses a batch and a
    start-up each time: the "can wait" price rises towards on-demand (never above it). A calm
    day prices at the default rate, not lower: a quote is a promise."""
    usual = _wait_price(None)
    stormy = _wait_price(None, preemptions_per_hour=6.0)
    storm = _wait_price(None, preemptions_per_hour=60.0)
    assert usual < stormy <= storm
    # bids near the on-demand price, where the discount is not held up by its floor: no
    # preemption at all would price below the default's rate
    near = [offer("a", "RTX 3090", "0.22", bid="0.19")]
    assert _wait_price(None, 0.0, near) == _wait_price(None, market=near)
    on_demand = [o.model_copy(update={"min_bid_usd_per_hour": None}) for o in MARKET]
    od, *_ = plan_quote(
        founding_job(), Constraints(deadline=END_OF_DAY), on_demand, NOW, MARGIN, RATES
    )
    assert storm <= od.price_per_image_usd


def test_outlook_dates_round_trip_in_utc() -> None:
    at = datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert SpotOutlook.from_json(SpotOutlook({}, 0, at).to_json()).computed_at == at


def test_a_cards_typical_bid_and_how_long_its_capacity_stays_gone() -> None:
    """The lowest bid per snapshot, averaged over the snapshots with bids; the spells without
    bids that ended, timed by the snapshots' own times (one still running is not counted)."""
    low, high = offer("a", "RTX 3090", bid="0.06"), offer("b", "RTX 3090", bid="0.10")
    gone = offer("c", "RTX 3090")
    snapshots = [[low, high], [gone], [gone], [high], [gone], [low], [gone], [gone], [gone]]
    seen = outlook(hourly(snapshots), computed_at=NOW)
    assert seen.bids == {"RTX 3090": (60_000 + 100_000 + 60_000) // 3}
    assert seen.gaps == {"RTX 3090": (2 + 1) / 2 * 3600}
    assert SpotOutlook.from_json(seen.to_json()) == seen
    # today's snapshots are read 5 minutes apart, not an hour: the spell lasted 10 minutes
    close = [
        (NOW, [low]),
        *((NOW + timedelta(minutes=m), [gone]) for m in (5, 10)),
        (NOW + timedelta(minutes=15), [low]),
    ]
    assert outlook(close).gaps == {"RTX 3090": 600.0}


def test_a_spell_already_running_when_a_card_is_first_seen_is_not_counted() -> None:
    """Its start is not known: counting it from the first sighting would make the gap look
    shorter than it is, and waiting look safer."""
    low, gone = offer("a", "RTX 3090", bid="0.06"), offer("c", "RTX 3090")
    assert outlook(hourly([[gone], [gone], [low]])).gaps == {}
    assert outlook(hourly([[gone], [low], [gone], [low]])).gaps == {"RTX 3090": 3600.0}


def test_an_outlook_stored_before_bids_and_gaps_were_kept_still_reads() -> None:
    stored = '{"shares": {"RTX 3090": 0.5}, "snapshots": 12, "computed_at": null}'
    read = SpotOutlook.from_json(stored)
    assert (read.shares, read.bids, read.gaps) == ({"RTX 3090": 0.5}, {}, {})
