"""The price cache's rows as a read sees them, also in the middle of a refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from subconscious.dal.prices import meta_row, offer_rows, read_rows
from tests import builders

T1 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)
EXPIRES = 2_000_000_000


def _ids(items: list[dict[str, object]]) -> list[str]:
    return sorted(o.offer_id for o in read_rows("vast", items)[1])


def test_a_read_between_a_refreshs_rows_and_its_meta_keeps_the_overwritten_offers() -> None:
    # T1's refresh wrote a, b, c; T2's refresh has overwritten a and b, not yet its meta row
    old = offer_rows("vast", [builders.offer("c")], T1, EXPIRES)
    new = offer_rows("vast", [builders.offer("a"), builders.offer("b")], T2, EXPIRES)
    assert _ids([meta_row("vast", T1), *old, *new]) == ["a", "b", "c"]


def test_rows_older_than_the_meta_are_offers_the_market_no_longer_lists() -> None:
    gone = offer_rows("vast", [builders.offer("gone")], T1, EXPIRES)
    kept = offer_rows("vast", [builders.offer("a")], T2, EXPIRES)
    freshness, offers = read_rows("vast", [meta_row("vast", T2), *gone, *kept])
    assert [o.offer_id for o in offers] == ["a"]
    assert freshness is not None and freshness.fetched_at == T2 and freshness.ok


def test_no_meta_row_means_nothing_cached() -> None:
    assert read_rows("vast", offer_rows("vast", [builders.offer("a")], T1, EXPIRES)) == (None, [])
