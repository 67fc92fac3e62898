"""Price cache, market history and GET /v1/market against moto and fake providers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from functions.prices.handler import lambda_handler
from infra import definitions as d
from infra.local.stack import context_for
from subconscious.logic.prices import current_offers, refresh
from subconscious.market.fake import FakeProvider
from subconscious.models import Offer
from subconscious.services import Services
from tests.conftest import load_event, offer
from tests.integration.api_helpers import call


def _second_provider(svc: Services) -> FakeProvider:
    other = FakeProvider([offer("o-a100", "A100 80GB PCIe", "1.10", 80)], name="other")
    other.offers = [o.model_copy(update={"provider": "other"}) for o in other.offers]
    svc.providers_by_name.add(other)
    object.__setattr__(
        svc, "settings", svc.settings.model_copy(update={"providers": ("fake", "other")})
    )
    return other


def test_refresh_caches_each_provider_and_one_failure_spares_the_others(
    svc: Services, market: FakeProvider
) -> None:
    other = _second_provider(svc)
    now = datetime.now(UTC)
    refresh(svc, now)
    other.fail_offers = True

    report = refresh(svc, now + timedelta(minutes=5))

    assert report.offers == {"fake": 3}
    assert report.failed == {"other": "provider_error"}
    freshness, kept = svc.prices.read("other")
    assert freshness is not None and not freshness.ok
    assert freshness.fetched_at == now  # the last good fetch, with its age
    assert [o.offer_id for o in kept] == ["o-a100"]


@pytest.mark.moto  # reads or writes AWS itself
def test_snapshots_land_in_the_history_as_gzip_json_lines(
    svc: Services, market: FakeProvider
) -> None:
    at = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
    key = refresh(svc, at).history_key
    assert key == "market/date=2026-11-26/120500.jsonl.gz"
    body = boto3.client("s3").get_object(Bucket=d.HISTORY_BUCKET, Key=key)["Body"].read()
    lines = [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
    assert {line["offer_id"] for line in lines} == {"o-4090", "o-3090", "o-h100"}
    assert all(line["at"] == at.isoformat() for line in lines)
    assert lines[0]["usd_per_hour"] == "0.40"  # money stays a decimal string


def test_quotes_use_fresh_cached_prices_and_ask_live_when_stale(
    svc: Services, market: FakeProvider
) -> None:
    now = datetime.now(UTC)
    refresh(svc, now)
    market.offers = [offer("o-new", "RTX 4090", "0.10")]

    cached = current_offers(svc, now + timedelta(minutes=1))
    stale = current_offers(svc, now + timedelta(seconds=svc.settings.price_max_age_s + 1))

    assert {o.offer_id for o in cached} == {"o-4090", "o-3090", "o-h100"}
    assert [o.offer_id for o in stale] == ["o-new"]


def test_market_route_groups_offers_by_gpu_with_cost_per_image(
    svc: Services, market: FakeProvider, api_key: str
) -> None:
    refresh(svc)
    status, body = call("GET", "/v1/market", key=api_key)
    assert status == 200, body
    assert [p["provider"] for p in body["providers"]] == ["fake"]
    assert body["providers"][0]["ok"] is True
    groups = {g["gpu"]: g["offers"] for g in body["gpus"]}
    assert set(groups) == {"RTX 4090", "RTX 3090", "H100"}
    h100 = groups["H100"][0]
    assert Decimal(h100["usd_per_image_sdxl"]) > Decimal(h100["usd_per_image_sd15"]) > 0
    cheapest = body["gpus"][0]["offers"][0]["usd_per_image_sd15"]
    assert all(
        Decimal(cheapest) <= Decimal(o["usd_per_image_sd15"])
        for g in body["gpus"]
        for o in g["offers"]
    )


def test_market_route_needs_a_key(svc: Services) -> None:
    status, _ = call("GET", "/v1/market", key=None)
    assert status == 401


def test_handler_takes_the_scheduled_event(svc: Services, market: FakeProvider) -> None:
    function = next(f for f in d.FUNCTIONS if f.name == "subc-prices")
    result = lambda_handler(load_event("schedule_dispatch.json"), context_for(function))
    assert result["offers"] == {"fake": 3}


def test_a_provider_that_just_failed_is_not_asked_again_live(
    svc: Services, market: FakeProvider
) -> None:
    now = datetime.now(UTC)
    market.fail_offers = True
    refresh(svc, now)
    calls = {"n": 0}
    original = market.list_offers

    def counted() -> list[Offer]:
        calls["n"] += 1
        return original()

    market.list_offers = counted  # type: ignore[method-assign]
    assert current_offers(svc, now + timedelta(seconds=30)) == []
    assert calls["n"] == 0  # a quote does not stall on a provider that failed moments ago


def test_market_route_marks_a_stale_provider_and_hides_its_offers(
    svc: Services, market: FakeProvider, api_key: str
) -> None:
    old = datetime.now(UTC) - timedelta(seconds=svc.settings.price_max_age_s + 60)
    refresh(svc, old)
    status, body = call("GET", "/v1/market", key=api_key)
    assert status == 200
    assert body["providers"][0]["stale"] is True
    assert body["gpus"] == []


def test_a_misconfigured_provider_does_not_stop_the_others(
    svc: Services, market: FakeProvider
) -> None:
    object.__setattr__(
        svc, "settings", svc.settings.model_copy(update={"providers": ("vast", "fake")})
    )
    assert [p.name for p in svc.providers()] == ["fake"]  # vast has no key: left out, logged
    assert refresh(svc).offers == {"fake": 3}


def test_a_known_start_up_time_replaces_the_adapters_estimate(svc: Services) -> None:
    _second_provider(svc)
    settings = svc.settings.model_copy(update={"startup_s_by_provider": {"other": 7}})
    object.__setattr__(svc, "settings", settings)

    offers = current_offers(svc)

    assert {o.provider: o.startup_s for o in offers} == {"fake": 60, "other": 7}


def test_the_spot_outlook_is_read_back_from_the_history_hourly(
    svc: Services, market: FakeProvider
) -> None:
    start = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    bids = offer("o-3090", "RTX 3090", "0.20").model_copy(
        update={"interruptible": True, "min_bid_usd_per_hour": Decimal("0.08")}
    )
    # two days of snapshots, every 6 hours; the 3090 took bids in one snapshot of four
    for i in range(8):
        at = start + timedelta(hours=6 * i)
        listed = [offer(), bids if i % 4 == 0 else offer("o-3090", "RTX 3090", "0.20")]
        svc.history.append(listed, at)
    now = start + timedelta(days=2)

    report = refresh(svc, now)  # its own snapshot (the fake market's, no bids) counts too

    assert report.outlook_snapshots == 9
    stored = svc.prices.load_outlook()
    assert stored is not None and stored.computed_at == now
    assert stored.share("RTX 3090") == 2 / 9 and stored.share("RTX 4090") == 0.0
    # within the hour it is not read again; after it, it is
    assert refresh(svc, now + timedelta(minutes=5)).outlook_snapshots is None
    assert refresh(svc, now + timedelta(hours=1)).outlook_snapshots == 11


def test_the_outlook_keeps_each_cards_typical_bid_and_how_long_its_capacity_stays_gone(
    svc: Services, market: FakeProvider
) -> None:
    """With the refresh's own schedule (a snapshot every 5 minutes, 24 an hour apart read back
    per day) a spell of 3 hourly snapshots without bids lasted 3 hours."""
    start = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    on_demand = offer("o-3090", "RTX 3090", "0.20")
    for minute in range(0, 24 * 60, 5):
        hour = minute // 60
        bid = Decimal("0.08") if hour % 2 else Decimal("0.06")
        listed = on_demand.model_copy(update={"interruptible": True, "min_bid_usd_per_hour": bid})
        svc.history.append(
            [on_demand if 5 <= hour < 8 else listed], start + timedelta(minutes=minute)
        )

    refresh(svc, start + timedelta(days=1))

    stored = svc.prices.load_outlook()
    assert stored is not None and stored.gaps == {"RTX 3090": 3 * 3600.0}
    # 21 hourly snapshots with bids, 10 at 0.08 and 11 at 0.06 (the bid cycles by the hour)
    assert stored.bids == {"RTX 3090": (10 * 80_000 + 11 * 60_000) // 21}


def test_the_history_sample_is_spread_over_each_day(svc: Services) -> None:
    start = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    for minute in range(0, 24 * 60, 60):  # 24 snapshots
        svc.history.append([offer()], start + timedelta(minutes=minute))
    taken = list(svc.history.snapshots(start + timedelta(hours=23), days=0, per_day=6))
    assert len(taken) == 6
    assert svc.prices.load_outlook() is None


def test_an_unreadable_history_keeps_the_old_outlook_and_the_fresh_prices(
    svc: Services, market: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    refresh(svc, now)
    before = svc.prices.load_outlook()

    def broken(*_args: object, **_kwargs: object) -> Iterator[list[Offer]]:
        raise RuntimeError("s3 said no")
        yield []  # pragma: no cover

    monkeypatch.setattr(type(svc.history), "snapshots", broken)
    report = refresh(svc, now + timedelta(hours=2))

    assert report.offers == {"fake": 3} and report.outlook_snapshots is None
    assert svc.prices.load_outlook() == before
    freshness, _ = svc.prices.read("fake")
    assert freshness is not None and freshness.fetched_at == now + timedelta(hours=2)


@pytest.mark.moto  # reads or writes AWS itself
def test_an_unreadable_outlook_never_fails_a_quote(svc: Services, market: FakeProvider) -> None:
    from subconscious.logic.quotes import create_quote
    from subconscious.models import QuoteRequest

    boto3.resource("dynamodb").Table(svc.settings.prices_table).put_item(
        Item={"provider": "#forecast", "offer_id": "spot", "doc": "{not json"}
    )
    request = QuoteRequest.model_validate({"job": {"prompts": [{"text": "p", "count": 8}]}})

    quote = create_quote(svc, "tenant-a", request)

    assert quote.options
