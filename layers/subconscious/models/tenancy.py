"""Who holds an API key: a tenant, as a customer or as the operator."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "customer"
    # The operator sees any tenant's order with what it costs us (GET /v1/orders/{id}?tenant_id)
    OPERATOR = "operator"

    @classmethod
    def of(cls, value: object) -> Role:
        """A tenant record's role; anything but "operator" (none, a typo) is a customer."""
        return cls.OPERATOR if value == cls.OPERATOR.value else cls.CUSTOMER


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: Role = Role.CUSTOMER

    @property
    def operator(self) -> bool:
        return self.role is Role.OPERATOR
