"""Every client test mocks HTTP (respx) and keeps the CLI's quote cache in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import respx

from subconscious_cli.client import Client
from tests.client.fakes import API, KEY


@pytest.fixture(autouse=True)
def _client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SUBCONSCIOUS_API_URL", "SUBCONSCIOUS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # Retries keep their count and order; only the waiting between them goes.
    monkeypatch.setattr(Client, "retry_backoff_s", 0.0)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """Any request to a host without a route fails the test: nothing reaches a network."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(API, KEY) as c:
        yield c
