"""Money is integer micro-dollars inside, ``Decimal`` dollars at the edges; never float."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
_MICRO = Decimal("0.000001")


def to_micros(usd: Decimal) -> int:
    """Dollars to micro-dollars, rounding half up (prices we charge are quoted to the micro)."""
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def to_micros_up(usd: Decimal) -> int:
    """Dollars to micro-dollars, rounding up (a cost is never under-counted)."""
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def to_usd(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(_MICRO)


def cost_micros(usd_per_hour: Decimal, seconds: Decimal | int) -> int:
    """What ``usd_per_hour`` costs for ``seconds``, rounded up (never under-counted)."""
    micros = usd_per_hour * MICROS_PER_USD * Decimal(seconds) / 3600
    return int(micros.to_integral_value(rounding=ROUND_CEILING))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
