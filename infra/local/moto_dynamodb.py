"""One DynamoDB request at a time in moto, as DynamoDB itself behaves for ours.

moto applies a TransactWriteItems to its tables and, if any condition fails, puts back a deep
copy of each table taken when the transaction began. A write another thread made in between is
undone with it; the copy can also fail outright ("dictionary changed size during iteration").
DynamoDB applies each request atomically, and our invariants lean on that (a lease taken by a
conditional put, a run written only under the lease, one order per quote). So wherever moto
serves several threads at once (the local stack's server, tests that race ticks or
acceptances) its DynamoDB handler runs one request at a time: threads still interleave between
requests, as Lambdas do, never inside one.

With requests one at a time, a transaction's rollback needs only the items it names, not a
copy of every table it touches: moto's whole-table copy made each image's record (a
transaction) cost time in proportion to the table, a seventh of the founding example's busy
time in a profile. While serialised, a transaction backs up the items it names and puts them
back if it fails; moto's own table copies are skipped (:class:`_TablesUncopied`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.RLock()  # one request at a time (re-entrant: a handler never waits on itself)
_USERS = threading.Lock()  # guards the three below
_original: Any = None
_original_transact: Any = None
_users = 0


class _TablesUncopied:
    """``copy`` as moto's DynamoDB models see it: while a transaction runs (under ``_LOCK``)
    a table's deep copy is the table itself; anything else is copied as ever."""

    def __init__(self) -> None:
        self.active = False

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if self.active and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


_COPY = _TablesUncopied()


def _named_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(table, hash key, range key, a copy of the item or None) for each item named."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    named = []
    for entry in transact_items:
        try:
            (op_type, op), *_ = entry.items()
            table = backend.tables.get(op.get("TableName"))
            key = op.get("Item") if op_type == "Put" else op.get("Key")
            if table is None or not key or table.hash_key_attr not in key:
                continue  # moto refuses it before writing anything
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in key:
                    continue
                range_key = DynamoType(key[table.range_key_attr])
            item = table.get_item(hash_key, range_key)
        # a malformed entry: moto answers it with its own error and writes nothing for it
        except Exception:  # noqa: S112
            continue
        named.append((table, hash_key, range_key, copy.deepcopy(item)))
    return named


def _put_back(named: list[tuple[Any, ...]]) -> None:
    for table, hash_key, range_key, item in reversed(named):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
            continue
        bucket = table.items[hash_key]
        if item is None:
            bucket.pop(range_key, None)
            if not bucket:
                table.items.pop(hash_key, None)
        else:
            bucket[range_key] = item


def serialise() -> None:
    """Patch moto's DynamoDB handler; each call needs its own :func:`unserialise` (a local
    stack started inside a test's moto must not unpatch the test's)."""
    import moto.dynamodb.models as models
    from moto.dynamodb.responses import DynamoHandler

    global _original, _original_transact, _users
    with _USERS:
        _users += 1
        if _original is not None:
            return
        _original = original = DynamoHandler.call_action
        _original_transact = transact = models.DynamoDBBackend.transact_write_items

        def call_action(self: Any) -> Any:
            with _LOCK:
                return original(self)

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            with _LOCK:
                named = _named_items(self, transact_items)
                _COPY.active = True
                try:
                    transact(self, transact_items)
                except Exception:
                    _put_back(named)
                    raise
                finally:
                    _COPY.active = False

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        models.copy = _COPY  # type: ignore[attr-defined,assignment]


def unserialise() -> None:
    """Undo one :func:`serialise`; moto is left as found once every user has (a call with no
    user left changes nothing)."""
    import moto.dynamodb.models as models
    from moto.dynamodb.responses import DynamoHandler

    global _original, _original_transact, _users
    with _USERS:
        _users = max(0, _users - 1)
        if _users == 0 and _original is not None:
            DynamoHandler.call_action = _original  # type: ignore[method-assign]
            models.DynamoDBBackend.transact_write_items = _original_transact  # type: ignore[method-assign]
            models.copy = copy  # type: ignore[attr-defined]
            _original = _original_transact = None


@contextmanager
def serialised() -> Iterator[None]:
    """Serialised while inside."""
    serialise()
    try:
        yield
    finally:
        unserialise()
