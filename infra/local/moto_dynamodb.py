"""One DynamoDB request at a time in moto, as DynamoDB itself behaves for ours.

moto applies a TransactWriteItems to its tables and, if any condition fails, puts back a deep
copy of each table taken when the transaction began. A write another thread made in between is
undone with it; the copy can also fail outright ("dictionary changed size during iteration").
DynamoDB applies each request atomically, and our invariants lean on that (a lease taken by a
conditional put, a run written only under the lease, one order per quote). So wherever moto
serves several threads at once (the local stack's server, tests that race ticks or
acceptances) its DynamoDB handler runs one request at a time: threads still interleave between
requests, as Lambdas do, never inside one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.RLock()  # one request at a time (re-entrant: a handler never waits on itself)
_USERS = threading.Lock()  # guards the two below
_original: Any = None
_users = 0


def serialise() -> None:
    """Patch moto's DynamoDB handler; each call needs its own :func:`unserialise` (a local
    stack started inside a test's moto must not unpatch the test's)."""
    from moto.dynamodb.responses import DynamoHandler

    global _original, _users
    with _USERS:
        _users += 1
        if _original is not None:
            return
        _original = original = DynamoHandler.call_action

        def call_action(self: Any) -> Any:
            with _LOCK:
                return original(self)

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def unserialise() -> None:
    """Undo one :func:`serialise`; moto is left as found once every user has (a call with no
    user left changes nothing)."""
    from moto.dynamodb.responses import DynamoHandler

    global _original, _users
    with _USERS:
        _users = max(0, _users - 1)
        if _users == 0 and _original is not None:
            DynamoHandler.call_action = _original  # type: ignore[method-assign]
            _original = None


@contextmanager
def serialised() -> Iterator[None]:
    """Serialised while inside."""
    serialise()
    try:
        yield
    finally:
        unserialise()
