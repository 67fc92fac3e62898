"""Order acceptance's idempotency store: powertools over DynamoDB, or over the twin's dict."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyValidationError,
)

from subconscious.services import Services


def _acceptance(key: str, option: str = "opt-1") -> dict[str, Any]:
    return {"tenant_id": "t-1", "idempotency_key": key, "request": {"option_id": option}}


def test_an_acceptance_runs_once_per_key(stores: Services) -> None:
    calls: list[str] = []

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="acceptance",
        persistence_store=stores.idempotency.persistence,
        config=stores.idempotency.config,
    )
    def accept(acceptance: dict[str, Any]) -> dict[str, Any]:
        calls.append(acceptance["idempotency_key"])
        return {"order_id": f"o-{len(calls)}"}

    assert accept(acceptance=_acceptance("key-1")) == {"order_id": "o-1"}
    assert accept(acceptance=_acceptance("key-1")) == {"order_id": "o-1"}  # remembered
    assert accept(acceptance=_acceptance("key-2")) == {"order_id": "o-2"}
    with pytest.raises(IdempotencyValidationError):  # the same key, another request
        accept(acceptance=_acceptance("key-1", "opt-2"))
    assert calls == ["key-1", "key-2"]


def test_records_in_progress_then_completed_then_deleted(stores: Services) -> None:
    layer = stores.idempotency.persistence
    layer.configure(stores.idempotency.config, "contract")
    data = _acceptance("key-9")
    with pytest.raises(IdempotencyItemNotFoundError):
        layer.get_record(data)
    layer.save_inprogress(data)
    assert layer.get_record(data).status == "INPROGRESS"
    with pytest.raises(IdempotencyItemAlreadyExistsError):
        layer.save_inprogress(data)
    layer.save_success(data, {"order_id": "o-9"})
    record = layer.get_record(data)
    assert record.status == "COMPLETED" and record.response_json_as_dict() == {"order_id": "o-9"}
    layer.delete_record(data, RuntimeError("rolled back"))
    with pytest.raises(IdempotencyItemNotFoundError):
        layer.get_record(data)
    layer.save_inprogress(data)  # free again
