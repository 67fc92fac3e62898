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

_LOCK = threading.RLock()  # re-entrant: a nested patch never deadlocks on itself
_original: Any = None


def serialise() -> None:
    """Patch moto's DynamoDB handler (once; a second call changes nothing)."""
    from moto.dynamodb.responses import DynamoHandler

    global _original
    if _original is not None:
        return
    _original = original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def unserialise() -> None:
    """Leave moto as found (nothing if it was not patched)."""
    from moto.dynamodb.responses import DynamoHandler

    global _original
    if _original is not None:
        DynamoHandler.call_action = _original  # type: ignore[method-assign]
        _original = None


@contextmanager
def serialised() -> Iterator[None]:
    """Serialised while inside; restored after unless it was already patched on entry."""
    patched_here = _original is None
    serialise()
    try:
        yield
    finally:
        if patched_here:
            unserialise()
