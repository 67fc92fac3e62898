"""A tenant record's role: only the exact "operator" makes an operator."""

from __future__ import annotations

import pytest

from subconscious.models.tenancy import Principal, Role


@pytest.mark.parametrize("value", [None, "", "Operator", "admin", "customer", 1])
def test_anything_but_operator_is_a_customer(value: object) -> None:
    assert Role.of(value) is Role.CUSTOMER
    assert not Principal("t", Role.of(value)).operator


def test_operator() -> None:
    assert Role.of("operator") is Role.OPERATOR
    assert Principal("t", Role.OPERATOR).operator
