"""Deadlines as people say them, read in the machine's zone (TZ set per test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from subconscious_cli.deadlines import DeadlineError, describe, parse_deadline


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This machine in Europe/Berlin: UTC+1 in winter, UTC+2 in summer."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# 2026-01-15 10:00 in Berlin (winter, UTC+1)
WINTER = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
# 2026-07-15 10:00 in Berlin (summer, UTC+2)
SUMMER = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+30s", timedelta(seconds=30)),
        ("+90m", timedelta(minutes=90)),
        ("+6h", timedelta(hours=6)),
        ("+3d", timedelta(days=3)),
        ("+1d12h", timedelta(days=1, hours=12)),
        ("+6H", timedelta(hours=6)),
    ],
)
def test_relative_deadlines(text: str, expected: timedelta) -> None:
    assert parse_deadline(text, WINTER) == WINTER + expected


@pytest.mark.usefixtures("berlin")
@pytest.mark.parametrize(
    ("text", "now", "expected_utc"),
    [
        ("eod", WINTER, datetime(2026, 1, 15, 22, 59, 59, tzinfo=UTC)),
        ("EOD", SUMMER, datetime(2026, 7, 15, 21, 59, 59, tzinfo=UTC)),
        ("today", WINTER, datetime(2026, 1, 15, 22, 59, 59, tzinfo=UTC)),
        ("23:59", WINTER, datetime(2026, 1, 15, 22, 59, tzinfo=UTC)),
        ("23:59", SUMMER, datetime(2026, 7, 15, 21, 59, tzinfo=UTC)),
        # a time already past today is the next one: tomorrow morning
        ("09:00", WINTER, datetime(2026, 1, 16, 8, 0, tzinfo=UTC)),
        ("tomorrow 09:00", WINTER, datetime(2026, 1, 16, 8, 0, tzinfo=UTC)),
        ("tomorrow", WINTER, datetime(2026, 1, 16, 22, 59, 59, tzinfo=UTC)),
        # no offset: local; with one: as given
        ("2026-01-20T18:00", WINTER, datetime(2026, 1, 20, 17, 0, tzinfo=UTC)),
        ("2026-01-20", WINTER, datetime(2026, 1, 20, 22, 59, 59, tzinfo=UTC)),
        ("2026-01-20T18:00Z", WINTER, datetime(2026, 1, 20, 18, 0, tzinfo=UTC)),
        ("2026-01-20T20:00+02:00", WINTER, datetime(2026, 1, 20, 18, 0, tzinfo=UTC)),
    ],
)
def test_local_and_named_deadlines(text: str, now: datetime, expected_utc: datetime) -> None:
    moment = parse_deadline(text, now)
    assert moment == expected_utc
    assert moment.tzinfo is UTC


@pytest.mark.usefixtures("berlin")
def test_the_echo_shows_local_time_its_zone_and_utc() -> None:
    assert describe(datetime(2026, 1, 15, 22, 59, tzinfo=UTC)) == (
        "2026-01-15 23:59 CET (UTC+01:00), 2026-01-15 22:59Z"
    )
    assert describe(datetime(2026, 7, 15, 21, 59, tzinfo=UTC)) == (
        "2026-07-15 23:59 CEST (UTC+02:00), 2026-07-15 21:59Z"
    )


def test_the_echo_in_utc_says_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert (
            describe(datetime(2026, 1, 15, 22, 59, tzinfo=UTC))
            == "2026-01-15 22:59 UTC (UTC+00:00)"
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.usefixtures("berlin")
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("+", "not a deadline"),
        ("+0h", "must lie ahead"),
        ("+6x", "not a deadline"),
        ("soon", "not a deadline"),
        ("25:00", "not a time of day"),
        ("tomorrow 9", "not a time of day"),
        ("tomorrow at 9", "not a deadline"),
        ("2026-01-01T00:00Z", "has already passed"),
    ],
)
def test_unusable_deadlines_are_refused_with_the_forms_that_work(text: str, says: str) -> None:
    with pytest.raises(DeadlineError, match=says):
        parse_deadline(text, WINTER)


def test_without_now_the_clock_is_read() -> None:
    before = datetime.now(UTC)
    moment = parse_deadline("+6h")
    assert before + timedelta(hours=6) <= moment <= datetime.now(UTC) + timedelta(hours=6)
