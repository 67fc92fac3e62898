"""What the ``subconscious`` command prints: quote tables, order summaries, progress lines
(redrawn in place on a terminal) and JSON. Kept apart from :mod:`subconscious_cli.main`, which
parses arguments and talks to the API, so the output can be read and tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

BAR_WIDTH = 10
CENT = Decimal("0.01")
QUOTE_COLUMNS = (
    "OPTION",
    "LABEL",
    "GPU",
    "PRICE/IMAGE",
    "TOTAL",
    "EXPECTED",  # our expected finish (no reserve); "-" from a server that does not say
    "COMPLETES AT",  # the promise
    "DEADLINE",
    "BUDGET",
)


def _when(value: object, now: datetime | None = None) -> str:
    """A UTC time as ``2025-06-01 18:00Z``, or ``18:00Z`` when ``now`` is the same day."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return value
    if now is not None and moment.date() == now.astimezone(UTC).date():
        return f"{moment:%H:%M}Z"
    return f"{moment:%Y-%m-%d %H:%M}Z"


def _usd(value: object, *, cents: bool = False) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return f"${value}"
    # Cents read best on a progress line, but a small order's spend would show as $0.00.
    if cents and (amount == 0 or abs(amount) >= CENT):
        amount = amount.quantize(CENT)
    return f"${amount}"


def _yes(value: object) -> str:
    return "yes" if value else "NO"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_quote(quote: dict[str, Any]) -> str:
    header = QUOTE_COLUMNS
    rows = []
    for option in quote.get("options") or []:
        gpu = str(option.get("gpu", "?"))
        if int(option.get("machines") or 1) > 1:
            gpu = f"{option['machines']}x {gpu}"
        if option.get("interruptible"):
            gpu += " (spot)"
        rows.append(
            [
                str(option.get("option_id", "?")),
                str(option.get("label", "")),
                gpu,
                _usd(option.get("price_per_image_usd")),
                _usd(option.get("total_usd")),
                _when(option.get("expected_completion_at")),
                _when(option.get("completes_at")),
                _yes(option.get("meets_deadline")),
                _yes(option.get("meets_budget")),
            ]
        )
    lines = [_table(header, rows, right={3, 4})] if rows else ["(no options)"]
    lines.append("")
    lines.append(f"quote {quote.get('quote_id')}  expires {_when(quote.get('expires_at'))}")
    if quote.get("feasible_as_requested") is False:
        lines.append("no option meets both the deadline and the budget as requested")
    if rows:
        lines.append(f"accept with: subconscious order {quote.get('quote_id')} [OPTION]")
    return "\n".join(lines)


def progress_line(order: dict[str, Any], now: datetime | None = None) -> str:
    """``[#####.....] 50/100 images  $0.12 spent  eta 14:05Z  state rendering``"""
    done = int(order.get("images_done") or 0)
    total = int(order.get("images_total") or 0)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    line = (
        f"[{bar}] {done}/{total} images  {_usd(order.get('spend_usd'), cents=True)} spent  "
        f"eta {_when(order.get('eta'), now or datetime.now(UTC))}  state {order.get('state')}"
    )
    return line + _ending(order)


def _ending(order: dict[str, Any]) -> str:
    """``  (tasks_failed: 3 given up, charged $0.0124)`` once an order ended, else nothing."""
    reason = order.get("end_reason")
    if not reason:
        return ""
    failed = int(order.get("images_failed") or 0)
    given_up = f": {failed} given up" if failed else ""
    return f"  ({reason}{given_up}, charged {_usd(order.get('charge_usd'))})"


def format_order(order: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"order {order.get('order_id')}  state {order.get('state')}",
            f"  images    {order.get('images_done')}/{order.get('images_total')}",
            f"  price     {_usd(order.get('price_per_image_usd'))}/image, "
            f"total {_usd(order.get('total_usd'))}, spent {_usd(order.get('spend_usd'))}",
            f"  promised  {_when(order.get('promised_at'))}  eta {_when(order.get('eta'))}",
            *(
                [
                    f"  ended     {_when(order.get('ended_at'))}  {order['end_reason']}, "
                    f"{order.get('images_failed') or 0} given up, "
                    f"charged {_usd(order.get('charge_usd'))}"
                ]
                if order.get("end_reason")
                else []
            ),
        ]
    )


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=_json_default))


class Progress:
    """Redraws one line in place on a terminal; writes a line per change to a log or pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        isatty = getattr(stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._last = ""

    def __call__(self, order: dict[str, Any]) -> None:
        line = progress_line(order)
        if line == self._last:
            return
        if self._tty:
            # Padding erases the tail of a longer previous line without terminal escapes.
            self._stream.write("\r" + line.ljust(len(self._last)))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._last = line

    def finish(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
