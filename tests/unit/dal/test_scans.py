"""Scans follow DynamoDB's pages: a table bigger than one page (1 MB) is read to its end."""

from __future__ import annotations

from typing import Any

from subconscious.dal._dynamo import scan_all, scan_where_in


class PagedTable:
    """A table that answers ``scan`` a page of two items at a time, as DynamoDB does past 1 MB:
    ``LastEvaluatedKey`` on every page but the last, the next page from ``ExclusiveStartKey``."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[dict[str, Any]] = []

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        start = int(kwargs.get("ExclusiveStartKey", {}).get("i", 0))
        page: dict[str, Any] = {"Items": self.items[start : start + 2]}
        if start + 2 < len(self.items):
            page["LastEvaluatedKey"] = {"i": start + 2}
        return page


ITEMS = [{"k": str(i), "status": "a" if i % 2 else "b"} for i in range(5)]


def test_scan_all_reads_every_page() -> None:
    table = PagedTable(ITEMS)
    assert list(scan_all(table)) == ITEMS
    assert [c.get("ExclusiveStartKey") for c in table.calls] == [None, {"i": 2}, {"i": 4}]


def test_scan_where_in_keeps_its_filter_on_every_page() -> None:
    table = PagedTable(ITEMS)
    list(scan_where_in(table, "status", ["a"]))
    assert len(table.calls) == 3
    assert all(c["FilterExpression"] == "#a IN (:v0)" for c in table.calls)
    assert all(c["ExpressionAttributeValues"] == {":v0": "a"} for c in table.calls)
