"""Spot pools replayed from traces, and the emulated market's interruptible machines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.emulated_market import BidTooLow, EmulatedMarket, MachineFaults, NoSpotCapacity
from infra.local.spot import (
    SPOT_PROVIDERS,
    TRACES_DIR,
    SpotMarket,
    SpotTrace,
    TraceError,
    calm_start,
    load_traces,
)

SECRET = "render-bot:pa55-w0rd-xyz"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trace(values: list[int], name: str = "pool-a", gap: float = 600) -> SpotTrace:
    return SpotTrace.parse(name, {"metadata": {"gap_seconds": gap}, "data": values})


def offer(offer_id: str, provider: str = "Vast.ai", price: str = "0.309") -> dict[str, object]:
    return {
        "offer_id": offer_id,
        "provider_name": provider,
        "gpu": "RTX 4090",
        "gpu_count": 1,
        "gpu_memory_gb": 24,
        "usd_per_hour": price,
        "interruptible": False,
        "reliability": "0.99",
        "location": "global",
        "startup_s": 1.0,
    }


# --------------------------------------------------------------------------- traces


def test_a_value_is_the_number_of_available_instances() -> None:
    # The README's reading: above 0 is capacity, 0 is none; the trace wraps around.
    spot = trace([2, 0, 1])
    assert [spot.available(tick) for tick in range(6)] == [True, False, True, True, False, True]


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"data": [1]},
        {"metadata": {"gap_seconds": 0}, "data": [1]},
        {"metadata": {"gap_seconds": True}, "data": [1]},
        {"metadata": {"gap_seconds": 60}, "data": []},
        {"metadata": {"gap_seconds": 60}, "data": [1, -1]},
        {"metadata": {"gap_seconds": 60}, "data": [1, 0.5]},
        {"metadata": {"gap_seconds": 60}, "data": [True]},
    ],
)
def test_a_malformed_trace_is_refused(document: Any) -> None:
    with pytest.raises(TraceError):
        SpotTrace.parse("bad", document)


def test_traces_load_from_files(tmp_path: Path) -> None:
    (tmp_path / "zone-b.json").write_text(
        json.dumps({"metadata": {"gap_seconds": 32}, "data": [0]})
    )
    (tmp_path / "zone-a.json").write_text(
        json.dumps({"metadata": {"gap_seconds": 32}, "data": [1]})
    )
    loaded = load_traces(tmp_path)
    assert [(t.name, t.gap_seconds, t.values) for t in loaded] == [
        ("zone-a", 32.0, (1,)),
        ("zone-b", 32.0, (0,)),
    ]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TraceError):
        load_traces(tmp_path)
    with pytest.raises(TraceError):
        load_traces(tmp_path / "empty")


def test_the_shipped_traces_are_the_availability_traces() -> None:
    shipped = load_traces(TRACES_DIR)
    assert len(shipped) == 4
    assert all(t.gap_seconds == 600 and set(t.values) <= {0, 1} for t in shipped)
    start = calm_start(shipped)
    assert all(t.available(start) for t in shipped)


def test_calm_start_is_the_longest_stretch_with_capacity_everywhere() -> None:
    a = trace([1, 1, 0, 1, 1, 1, 0, 1], "a")
    b = trace([1, 0, 1, 1, 1, 1, 1, 1], "b")
    assert calm_start([a, b]) == 3
    assert calm_start([trace([0, 0], "none")]) == 0


def test_ticks_follow_the_clock_at_the_speed_up() -> None:
    clock = FakeClock()
    spot = SpotMarket([trace([1, 0, 1, 0])], tick_s=2.0, start_tick=1, clock=clock)
    assert spot.tick() == 1 and not spot.available("pool-a")
    clock.now += 3.9
    assert spot.tick() == 2 and spot.available("pool-a")
    clock.now += 0.1
    assert spot.tick() == 3 and not spot.available("pool-a")


def test_pools_and_minimum_bids() -> None:
    spot = SpotMarket([trace([1], "a"), trace([1], "b")])
    assert spot.pool_for(offer("x", "TensorDock")) is None
    pools = {spot.pool_for(offer(f"o-{i}", SPOT_PROVIDERS[i % 3])) for i in range(40)}
    assert pools == {"a", "b"}
    assert spot.pool_for(offer("o-1")) == spot.pool_for(offer("o-1"))
    assert spot.min_bid("0.309") == Decimal("0.1545")
    assert spot.min_bid("1.0685") == Decimal("0.5343")  # rounded up, never under half


@pytest.mark.parametrize(
    ("traces", "kwargs", "message"),
    [
        ([trace([1])], {"tick_s": 0}, "tick_s"),
        ([trace([1])], {"start_tick": -1}, "start_tick"),
        ([trace([1])], {"min_bid_fraction": Decimal(0)}, "min_bid_fraction"),
        ([], {}, "at least one trace"),
        ([trace([1]), trace([0])], {}, "unique"),
    ],
)
def test_a_bad_spot_market_is_refused(
    traces: list[SpotTrace], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SpotMarket(traces, **kwargs)


# --------------------------------------------------------------------------- the market


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def market(tmp_path: Path, clock: FakeClock) -> Iterator[EmulatedMarket]:
    # one pool: capacity for two ticks of 10 s, then none for one, then back
    spot = SpotMarket([trace([1, 1, 0, 1])], tick_s=10.0, clock=clock)
    emulated = EmulatedMarket(
        offers=[offer("vast-1"), offer("td-1", "TensorDock")],
        default_faults=MachineFaults(startup_delay_s=0.0),
        log_dir=tmp_path / "machines",
        spot=spot,
    )
    yield emulated
    emulated.shutdown()


def test_offers_in_a_pool_carry_it_and_their_minimum_bid(market: EmulatedMarket) -> None:
    by_id = {o["offer_id"]: o for o in market.offers()}
    assert by_id["vast-1"]["spot_pool"] == "pool-a"
    assert by_id["vast-1"]["min_bid"] == "0.1545"
    assert "spot_pool" not in by_id["td-1"] and "min_bid" not in by_id["td-1"]
    assert market.spot_available("vast-1") and not market.spot_available("td-1")
    assert not market.spot_available("no-such-offer")


def test_bids_are_checked_against_the_pool_and_the_minimum(
    market: EmulatedMarket, clock: FakeClock
) -> None:
    with pytest.raises(BidTooLow) as refused:
        market.launch("vast-1", "subc-low", SECRET, bid_usd_per_hour=Decimal("0.1544"))
    assert refused.value.min_bid == Decimal("0.1545")
    with pytest.raises(NoSpotCapacity):
        market.launch("td-1", "subc-td", SECRET, bid_usd_per_hour=Decimal("1"))
    clock.now += 20  # tick 2: no capacity
    with pytest.raises(NoSpotCapacity):
        market.launch("vast-1", "subc-dry", SECRET, bid_usd_per_hour=Decimal("0.2"))
    assert market.machines() == []


def test_a_pool_without_capacity_preempts_its_interruptible_machines_only(
    market: EmulatedMarket, clock: FakeClock
) -> None:
    spot = market.launch("vast-1", "subc-spot", SECRET, bid_usd_per_hour=Decimal("0.1545"))
    on_demand = market.launch("vast-1", "subc-od", SECRET)
    assert spot["interruptible"] is True and spot["usd_per_hour"] == "0.1545"
    assert on_demand["interruptible"] is False and on_demand["usd_per_hour"] == "0.309"
    spot_id, od_id = str(spot["machine_id"]), str(on_demand["machine_id"])

    clock.now += 19.9  # still tick 1: capacity
    assert market.preempt_due() == []
    clock.now += 0.1  # tick 2: the trace says 0
    read = market.machine(spot_id)  # every read applies the trace first
    assert (read["status"], read["preempted"]) == ("exited", True)
    assert market.process(spot_id).poll() is not None
    assert market.process(od_id).poll() is None
    assert market.machine(od_id)["preempted"] is False
    assert market.preempt_due() == []  # once only

    clock.now += 10  # capacity again: the preempted machine stays down until given back
    assert market.machine(spot_id)["status"] == "exited"
    assert market.terminate(spot_id)["status"] == "terminated"


def test_an_interruptible_machine_is_preempted_on_demand(market: EmulatedMarket) -> None:
    spot = market.launch("vast-1", "subc-spot", SECRET, bid_usd_per_hour=Decimal("0.1545"))
    on_demand = market.launch("vast-1", "subc-od", SECRET)
    spot_id, od_id = str(spot["machine_id"]), str(on_demand["machine_id"])

    preempted = market.preempt(spot_id)  # the pool still has capacity: on a test's cue
    assert (preempted["status"], preempted["preempted"]) == ("exited", True)
    assert market.process(spot_id).poll() is not None
    with pytest.raises(ValueError, match="already ended"):
        market.preempt(spot_id)
    with pytest.raises(ValueError, match="on-demand"):
        market.preempt(od_id)
    assert market.process(od_id).poll() is None
    assert market.terminate(spot_id)["status"] == "terminated"


def test_the_watcher_preempts_without_anyone_asking(tmp_path: Path) -> None:
    spot = SpotMarket([trace([1, 0])], tick_s=0.3)
    with EmulatedMarket(
        offers=[offer("vast-1")],
        default_faults=MachineFaults(startup_delay_s=0.0),
        log_dir=tmp_path / "machines",
        spot=spot,
    ) as market:
        if not market.spot_available("vast-1"):  # started right at a tick's end: wait a cycle
            time.sleep(0.3)
        machine = market.launch("vast-1", "subc-w", SECRET, bid_usd_per_hour=Decimal(1))
        process = market.process(str(machine["machine_id"]))
        deadline = time.monotonic() + 5
        while process.poll() is None:
            assert time.monotonic() < deadline, "the watcher never preempted the machine"
            time.sleep(0.02)


def test_a_market_without_spot_has_no_interruptible_machines(tmp_path: Path) -> None:
    with EmulatedMarket(offers=[offer("vast-1")], log_dir=tmp_path) as market:
        assert "min_bid" not in market.offers()[0]
        assert not market.spot_available("vast-1")
        assert market.preempt_due() == []
        with pytest.raises(NoSpotCapacity):
            market.launch("vast-1", "subc-x", SECRET, bid_usd_per_hour=Decimal(1))
