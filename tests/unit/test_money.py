"""Money: integer micro-dollars inside, Decimal dollars at the edges, never float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from subconscious.money import MICROS_PER_USD, ceil_div, cost_micros, to_micros, to_usd


def test_one_dollar_is_a_million_micros() -> None:
    assert MICROS_PER_USD == 1_000_000
    assert to_micros(Decimal(1)) == 1_000_000


@pytest.mark.parametrize(
    ("usd", "micros"),
    [
        ("0", 0),
        ("0.000001", 1),
        ("1.234567", 1_234_567),
        ("0.0000005", 1),  # half rounds up
        ("0.0000004999", 0),
        ("1.2345675", 1_234_568),
        ("1.2345665", 1_234_567),  # half up, not banker's (half-even would give ...566)
        ("0.0000015", 2),
        ("0.0000025", 3),  # half-even would give 2
        ("12.5", 12_500_000),
    ],
)
def test_to_micros_rounds_half_up(usd: str, micros: int) -> None:
    result = to_micros(Decimal(usd))
    assert result == micros
    assert type(result) is int


@pytest.mark.parametrize(
    ("micros", "usd"),
    [(0, "0.000000"), (1, "0.000001"), (1_234_567, "1.234567"), (12_500_000, "12.500000")],
)
def test_to_usd_is_a_decimal_quantized_to_the_micro(micros: int, usd: str) -> None:
    result = to_usd(micros)
    assert type(result) is Decimal
    assert result == Decimal(usd)
    assert str(result) == usd  # six places, always
    assert result.as_tuple().exponent == -6


@pytest.mark.parametrize("micros", [0, 1, 999_999, 1_000_000, 123_456_789, 10**12 + 7])
def test_micros_round_trip(micros: int) -> None:
    assert to_micros(to_usd(micros)) == micros


@pytest.mark.parametrize("usd", ["0.000001", "0.12", "3.999999", "1000.5"])
def test_usd_round_trip(usd: str) -> None:
    assert to_usd(to_micros(Decimal(usd))) == Decimal(usd)


@pytest.mark.parametrize(
    ("usd_per_hour", "seconds", "micros"),
    [
        ("0.36", 1, 100),  # exactly 100 micros
        ("0.36", 3600, 360_000),
        ("0.40", 1, 112),  # 111.1 rounds up
        ("0.40", 9, 1000),  # exactly 1000
        ("0.40", 10, 1112),  # 1111.1 rounds up
        ("0.36", Decimal("0.5"), 50),
        ("0.36", Decimal("0.51"), 51),
        ("2.50", 0, 0),
        ("0.000001", 1, 1),  # a tiny positive cost is never zero
    ],
)
def test_cost_micros_rounds_up(usd_per_hour: str, seconds: Decimal | int, micros: int) -> None:
    result = cost_micros(Decimal(usd_per_hour), seconds)
    assert result == micros
    assert type(result) is int


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0, 5, 0),
        (1, 1000, 1),
        (7, 2, 4),
        (8, 2, 4),
        (9, 3, 3),
        (10, 3, 4),
        (1_232_400, 10_000, 124),
    ],
)
def test_ceil_div(a: int, b: int, expected: int) -> None:
    assert ceil_div(a, b) == expected
    assert type(ceil_div(a, b)) is int
