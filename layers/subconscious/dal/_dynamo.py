"""Small helpers shared by the DynamoDB stores."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any


def now() -> datetime:
    return datetime.now(UTC)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def is_condition_failure(error: Exception) -> bool:
    response: Any = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code")
    if code == "TransactionCanceledException":
        # only a failed condition counts; a throttled or invalid transaction is a real error
        reasons = response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return bool(code == "ConditionalCheckFailedException")


def scan_all(table: Any) -> Iterator[dict[str, Any]]:
    """Every item, across all scan pages."""
    return _scan(table, {})


def scan_where_in(table: Any, attribute: str, values: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Every item whose ``attribute`` is one of ``values``, across all scan pages."""
    names = {f":v{i}": v for i, v in enumerate(sorted(values))}
    kwargs: dict[str, Any] = {
        "FilterExpression": f"#a IN ({', '.join(names)})",
        "ExpressionAttributeNames": {"#a": attribute},
        "ExpressionAttributeValues": names,
    }
    return _scan(table, kwargs)


def _scan(table: Any, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        page = table.scan(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}
