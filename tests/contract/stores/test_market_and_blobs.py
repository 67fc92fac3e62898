"""The image bucket, the price cache, throughput corrections, the market history and the
render runs' executions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from subconscious.models.spot import SpotOutlook
from subconscious.services import Services
from subconscious.throughput_model import Correction

from .conftest import NOW, offer, read_object, unique


def test_put_png_and_presign(stores: Services, backend: str) -> None:
    key = "t-1/o-1/000-0000000001.png"
    stores.bucket.put_png(key, b"\x89PNG...", {"seed": "1", "prompt_index": "0"})
    assert read_object(stores, backend, key) == (
        b"\x89PNG...",
        "image/png",
        {"seed": "1", "prompt_index": "0"},
    )
    url = urlsplit(stores.bucket.presign(key, 3600))
    assert (url.scheme, url.netloc) == (
        "https",
        f"{stores.settings.images_bucket}.s3.amazonaws.com",
    )
    assert url.path == f"/{key}"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Signature"] and query["X-Amz-Credential"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signed_at - datetime.now(UTC)) < timedelta(seconds=30)


def test_price_cache_reads_the_latest_good_fetch(stores: Services) -> None:
    assert stores.prices.read("fake") == (None, [])
    first = [offer("a"), offer("b", "0.20")]
    stores.prices.replace("fake", first, NOW, timedelta(hours=1))
    freshness, offers = stores.prices.read("fake")
    assert freshness is not None and freshness.ok and freshness.error is None
    assert (freshness.provider, freshness.fetched_at, freshness.attempted_at) == ("fake", NOW, NOW)
    assert sorted(offers, key=lambda o: o.offer_id) == first
    later = NOW + timedelta(minutes=5)
    stores.prices.replace("fake", [offer("c")], later, timedelta(hours=1))
    freshness, offers = stores.prices.read("fake")
    assert freshness is not None and freshness.fetched_at == later
    assert offers == [offer("c")]  # the older rows are left, and ignored
    assert stores.prices.read("vast") == (None, [])


def test_a_failed_fetch_keeps_the_last_good_offers(stores: Services) -> None:
    stores.prices.replace("fake", [offer("a")], NOW, timedelta(hours=1))
    failed_at = NOW + timedelta(minutes=1)
    stores.prices.mark_failed("fake", failed_at, "boom " * 100)
    freshness, offers = stores.prices.read("fake")
    assert freshness is not None and not freshness.ok
    assert (freshness.fetched_at, freshness.attempted_at) == (NOW, failed_at)
    assert freshness.error == ("boom " * 100)[:300]
    assert offers == [offer("a")]


def test_a_provider_never_fetched_well(stores: Services) -> None:
    stores.prices.mark_failed("fake", NOW, "down")
    freshness, offers = stores.prices.read("fake")
    assert freshness is not None and freshness.fetched_at is None
    assert (freshness.ok, freshness.error, offers) == (False, "down", [])


def test_outlook(stores: Services) -> None:
    assert stores.prices.load_outlook() is None
    outlook = SpotOutlook({"RTX 4090": 0.5}, 12, NOW)
    stores.prices.save_outlook(outlook)
    assert stores.prices.load_outlook() == outlook


def test_corrections_move_only_from_what_was_read(stores: Services) -> None:
    assert stores.corrections.load() == {}
    none = Correction(factor=Decimal(1), runs=0)
    one = Correction(factor=Decimal("1.25"), runs=1)
    two = Correction(factor=Decimal("1.5"), runs=2)
    assert stores.corrections.replace("RTX 4090", none, one)
    assert not stores.corrections.replace("RTX 4090", none, two)  # another wrote first
    assert not stores.corrections.replace("RTX 4090", two, two)
    assert stores.corrections.replace("RTX 4090", one, two)
    assert stores.corrections.replace("H100", none, one)
    assert stores.corrections.load() == {"RTX 4090": two, "H100": one}


def test_history_snapshots_spread_over_days(stores: Services) -> None:
    day = NOW.replace(hour=0)
    yesterday = day - timedelta(days=1)
    keys_at = [yesterday + timedelta(hours=3), *(day + timedelta(hours=h) for h in (1, 2, 3))]
    keys = [
        stores.history.append([offer("y")], keys_at[0]),
        stores.history.append([offer("a")], keys_at[1]),
        stores.history.append([offer("b"), offer("c", "0.2")], keys_at[2]),
        stores.history.append([offer("d")], keys_at[3]),
        stores.history.append([offer("old")], day - timedelta(days=5)),
    ]
    assert keys[1] == "market/date=2030-01-01/010000.jsonl.gz"
    got = list(stores.history.snapshots(day + timedelta(hours=12), days=1, per_day=2))
    assert [[o.offer_id for o in snapshot] for _, snapshot in got] == [["y"], ["a"], ["d"]]
    assert [at for at, _ in got] == [keys_at[0], keys_at[1], keys_at[3]]  # when each was taken
    assert got[0][1] == [offer("y")]
    everything = list(stores.history.snapshots(day, days=1, per_day=48))
    assert len(everything) == 4
    # per_day 0 (settings forbid it) still reads each day's first snapshot
    assert list(stores.history.snapshots(day, days=0, per_day=0)) == [(keys_at[1], [offer("a")])]


def test_executions_start_once_per_run(stores: Services) -> None:
    run_id = unique("r")
    arn = stores.executions.arn_for(run_id)
    assert ":execution:" in arn and arn.endswith(f":{run_id}")
    assert not stores.executions.is_running(arn)  # never started
    assert stores.executions.start(run_id, {"run_id": run_id}) == arn
    assert stores.executions.is_running(arn)
    assert stores.executions.start(run_id, {"run_id": run_id}) == arn  # a retried start
    assert stores.executions.start(run_id, {"other": 1}) == arn
