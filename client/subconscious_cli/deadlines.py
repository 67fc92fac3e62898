"""Deadlines as people say them: ``eod``, ``tomorrow 09:00``, ``23:59``, ``+6h``, ISO-8601.

Times without a zone are read in this machine's local zone (its rules, daylight saving
included) and :func:`describe` shows that zone beside the time, so the reading is visible
before anything is ordered. Every result is a UTC-aware datetime.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

_RELATIVE = re.compile(
    r"^\+(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$", re.IGNORECASE
)
_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")
_END_OF_DAY = time(23, 59, 59)
FORMS = "eod, tomorrow [HH:MM], HH:MM (local), +30s/+90m/+6h/+3d, or ISO-8601"


class DeadlineError(ValueError):
    """A deadline that cannot be read, or that lies in the past."""


def _local(day: date, at: time) -> datetime:
    # A naive time's astimezone() applies the machine's zone rules for that date.
    return datetime.combine(day, at).astimezone()


def _clock(text: str) -> time:
    match = _CLOCK.match(text)
    if not match or int(match["h"]) > 23 or int(match["m"]) > 59:
        raise DeadlineError(f"{text!r} is not a time of day (HH:MM, 00:00 to 23:59)")
    return time(int(match["h"]), int(match["m"]))


def _relative(text: str, now: datetime) -> datetime | None:
    match = _RELATIVE.match(text)
    if not match or not any(match.groupdict().values()):
        return None
    parts = {unit: int(value or 0) for unit, value in match.groupdict().items()}
    delta = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if not delta:
        raise DeadlineError("a relative deadline must lie ahead")
    return now + delta


def _named(text: str, now: datetime) -> datetime | None:
    today = now.astimezone().date()
    words = text.lower().split()
    if words in (["eod"], ["today"]):
        return _local(today, _END_OF_DAY)
    if words and words[0] == "tomorrow" and len(words) <= 2:
        at = _clock(words[1]) if len(words) == 2 else _END_OF_DAY
        return _local(today + timedelta(days=1), at)
    if len(words) == 1 and _CLOCK.match(words[0]):
        # the next time the clock shows it: 23:59 is tonight, 01:00 said at 23:00 is tomorrow
        moment = _local(today, _clock(words[0]))
        return moment if moment > now else _local(today + timedelta(days=1), _clock(words[0]))
    return None


def _iso(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DeadlineError(f"{text!r} is not a deadline; use {FORMS}") from None
    if len(text) == 10:  # a date alone: the end of that day
        moment = datetime.combine(moment.date(), _END_OF_DAY)
    return moment if moment.tzinfo is not None else moment.astimezone()


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """The UTC instant ``text`` names; raises :class:`DeadlineError` if none or if it passed."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    moment = _relative(cleaned, now) or _named(cleaned, now) or _iso(cleaned)
    if moment <= now:
        raise DeadlineError(f"{text!r} ({describe(moment)}) has already passed")
    return moment.astimezone(UTC)


def describe(moment: datetime) -> str:
    """``2026-12-06 23:59 CET (UTC+01:00), 22:59Z``: local time, its zone, and UTC."""
    local = moment.astimezone()
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    text = f"{local:%Y-%m-%d %H:%M} {local.tzname()} (UTC{offset})"
    if local.utcoffset():
        text += f", {moment.astimezone(UTC):%Y-%m-%d %H:%M}Z"
    return text
