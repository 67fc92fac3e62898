"""Fixtures of the emulator tests: an emulated market (plain, or with one spot pool on a fake
clock) and the Vast.ai and TensorDock emulators over the plain one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.emulated_market import EmulatedMarket, MachineFaults
from infra.local.emulators import EmulatorServer, serve_tensordock, serve_vast
from infra.local.spot import SpotMarket, SpotTrace
from tests.local.emulators.helpers import TD_TOKEN, VAST_KEY, FakeClock


@pytest.fixture
def market(tmp_path: Path) -> Iterator[EmulatedMarket]:
    emulated = EmulatedMarket(
        default_faults=MachineFaults(startup_delay_s=0.0), log_dir=tmp_path / "machines"
    )
    yield emulated
    emulated.shutdown()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spot_market(tmp_path: Path, clock: FakeClock) -> Iterator[EmulatedMarket]:
    # One spot pool for every Vast.ai and RunPod offer: capacity for a tick of 10 s, then none.
    trace = SpotTrace.parse("pool", {"metadata": {"gap_seconds": 600}, "data": [1, 0]})
    emulated = EmulatedMarket(
        default_faults=MachineFaults(startup_delay_s=0.0),
        log_dir=tmp_path / "machines",
        spot=SpotMarket([trace], tick_s=10.0, clock=clock),
    )
    yield emulated
    emulated.shutdown()


@pytest.fixture
def vast(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_vast(market, VAST_KEY)
    yield server
    server.close()


@pytest.fixture
def tensordock(market: EmulatedMarket) -> Iterator[EmulatorServer]:
    server = serve_tensordock(market, TD_TOKEN)
    yield server
    server.close()
