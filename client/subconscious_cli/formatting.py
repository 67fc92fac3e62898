"""What the ``subconscious`` command prints: quote tables, order summaries, progress lines
(redrawn in place on a terminal) and JSON. Kept apart from :mod:`subconscious_cli.main`, which
parses arguments and talks to the API, so the output can be read and tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TextIO

from pydantic import BaseModel

from subconscious_cli.deadlines import describe
from subconscious_cli.models import MarketView, OrderOut, OrderPage, QuoteOption, QuoteOut

BAR_WIDTH = 10
CENT = Decimal("0.01")
QUOTE_COLUMNS = (
    "OPTION",
    "LABEL",
    "GPU",
    "PRICE/IMAGE",
    "TOTAL",
    "EXPECTED",  # our expected finish (no reserve)
    "COMPLETES AT",  # the promise
    "DEADLINE",
    "BUDGET",
)


def _when(value: datetime | str | None, now: datetime | None = None) -> str:
    """A UTC time as ``2025-06-01 18:00Z``, or ``18:00Z`` when ``now`` is the same day."""
    if not value:
        return "-"
    try:
        moment = (
            value if isinstance(value, datetime) else datetime.fromisoformat(value)
        ).astimezone(UTC)
    except ValueError:
        return str(value)
    if now is not None and moment.date() == now.astimezone(UTC).date():
        return f"{moment:%H:%M}Z"
    return f"{moment:%Y-%m-%d %H:%M}Z"


def _usd(value: object, *, cents: bool = False) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return f"${value}"
    # Cents read best on a progress line, but a small order's charge would show as $0.00.
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


def gpu_label(option: QuoteOption) -> str:
    gpu = option.gpu if option.machines <= 1 else f"{option.machines}x {option.gpu}"
    return gpu + (" (spot)" if option.interruptible else "")


def format_quote(quote: QuoteOut, *, hint: bool = True) -> str:
    rows = [
        [
            option.option_id,
            option.label,
            gpu_label(option),
            _usd(option.price_per_image_usd),
            _usd(option.total_usd),
            _when(option.expected_completion_at),
            _when(option.completes_at),
            _yes(option.meets_deadline),
            _yes(option.meets_budget),
        ]
        for option in quote.options
    ]
    lines = [_table(QUOTE_COLUMNS, rows, right={3, 4})] if rows else ["(no options)"]
    lines.append("")
    lines.append(f"quote {quote.quote_id}  expires {_when(quote.expires_at)}")
    if quote.constraints.deadline is not None:
        lines.append(f"your deadline {describe(quote.constraints.deadline)}")
    if not quote.feasible_as_requested:
        lines.append("no option meets both the deadline and the budget as requested")
    if rows and hint:
        lines.append(f"accept with: subconscious order {quote.quote_id} [OPTION]")
    return "\n".join(lines)


def progress_line(order: OrderOut, now: datetime | None = None) -> str:
    """``[#####.....] 50/100 images  $0.62 charged  eta 14:05Z  state rendering``"""
    done, total = order.images_done, order.images_total
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    now = now or datetime.now(UTC)
    line = (
        f"[{bar}] {done}/{total} images  {_usd(order.charge_usd, cents=True)} charged  "
        f"eta {_when(order.eta, now)}  state {order.state}"
    )
    return line + _held(order, now) + _ending(order)


def _held(order: OrderOut, now: datetime) -> str:
    """``  held until 14:40Z: sharing a machine start-up with 2 other orders`` while held."""
    if order.held_until is None or order.ended:
        return ""
    reason = f": {order.held_reason}" if order.held_reason else ""
    return f"  held until {_when(order.held_until, now)}{reason}"


def _ending(order: OrderOut) -> str:
    """``  (tasks_failed: 3 given up, charged $0.0124)`` once an order ended, else nothing."""
    if not order.end_reason:
        return ""
    given_up = f": {order.images_failed} given up" if order.images_failed else ""
    return f"  ({order.end_reason}{given_up}, charged {_usd(order.charge_usd)})"


def format_order(order: OrderOut) -> str:
    lines = [
        f"order {order.order_id}  state {order.state}",
        f"  images    {order.images_done}/{order.images_total}",
        f"  price     {_usd(order.price_per_image_usd)}/image, total {_usd(order.total_usd)}, "
        f"charged so far {_usd(order.charge_usd)}",
        f"  promised  {_when(order.promised_at)}  eta {_when(order.eta)}",
    ]
    if order.held_until is not None and not order.ended:
        reason = f"  {order.held_reason}" if order.held_reason else ""
        lines.append(f"  held      until {_when(order.held_until)}{reason}")
    if order.end_reason:
        lines.append(
            f"  ended     {_when(order.ended_at)}  {order.end_reason}, "
            f"{order.images_failed} given up, charged {_usd(order.charge_usd)}"
        )
    return "\n".join(lines)


ORDER_COLUMNS = ("ORDER", "STATE", "IMAGES", "PRICE/IMAGE", "CHARGED", "CREATED", "PROMISED")


def format_orders(page: OrderPage) -> str:
    rows = [
        [
            o.order_id,
            o.state,
            f"{o.images_done}/{o.images_total}",
            _usd(o.price_per_image_usd),
            _usd(o.charge_usd),
            _when(o.created_at),
            _when(o.promised_at),
        ]
        for o in page.orders
    ]
    lines = [_table(ORDER_COLUMNS, rows, right={2, 3, 4})] if rows else ["(no orders)"]
    if page.next_token:
        lines.append(f"more: subconscious list --next-token {page.next_token}")
    return "\n".join(lines)


MARKET_COLUMNS = (
    "GPU",
    "PROVIDER",
    "$/HOUR",
    "SPOT $/HOUR",
    "$/IMAGE SD15",
    "$/IMAGE SDXL",
    "WHERE",
)


def format_market(market: MarketView) -> str:
    rows = [
        [
            group.gpu,
            offer.provider,
            _usd(offer.usd_per_hour),
            "-"
            if offer.interruptible_usd_per_hour is None
            else _usd(offer.interruptible_usd_per_hour),
            _usd(offer.usd_per_image_sd15),
            _usd(offer.usd_per_image_sdxl),
            offer.location,
        ]
        for group in market.gpus
        for offer in group.offers
    ]
    lines = [_table(MARKET_COLUMNS, rows, right={2, 3, 4, 5})] if rows else ["(no offers)"]
    lines.append("")
    stale = [p.provider for p in market.providers if p.stale or not p.ok]
    lines.append(f"as of {_when(market.as_of)}" + (f"; stale: {', '.join(stale)}" if stale else ""))
    return "\n".join(lines)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def print_json(value: object) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_unset=True)
    print(json.dumps(value, indent=2, default=_json_default))


class Progress:
    """Redraws one line in place on a terminal; writes a line per change to a log or pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._last = ""

    def __call__(self, order: OrderOut) -> None:
        self.show(progress_line(order))

    def show(self, line: str) -> None:
        if line == self._last:
            return
        if self.tty:
            # Padding erases the tail of a longer previous line without terminal escapes.
            self._stream.write("\r" + line.ljust(len(self._last)))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._last = line

    def finish(self) -> None:
        if self.tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
