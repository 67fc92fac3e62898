"""Reading spot-trace files: value > 0 means capacity; drops preempt; the clock wraps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.planner.traces import Pool, TraceError, load_pools, parse
from tests.bench.helpers import pool, write_trace

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "spot-traces"


def test_positive_values_mean_capacity() -> None:
    p = parse("x", '{"metadata": {"gap_seconds": 60}, "data": [0, 1, 2, 0]}')
    assert p.available == (False, True, True, False)
    assert [p.available_at(t) for t in (0, 59, 60, 179, 180, 240 + 61)] == [
        False, False, True, True, False, True,
    ]  # fmt: skip


def test_drops_are_where_capacity_disappears_and_wrap() -> None:
    p = pool("0110", gap_s=100)
    assert p.drops_between(0, 400) == [300.0]
    assert p.drops_between(0, 800) == [300.0, 700.0]
    assert p.drops_between(300, 700) == [700.0]  # strictly after the start
    assert pool("1111").next_drop(0) is None
    assert pool("1").drops_between(0, 10_000) == []
    # a trace ending available and starting unavailable drops at every wrap
    assert pool("01", gap_s=10).drops_between(0, 45) == [20.0, 40.0]


def test_available_seconds_counts_partial_ticks_and_wraps() -> None:
    p = pool("0110", gap_s=100)
    assert p.available_seconds(0, 400) == 200
    assert p.available_seconds(150, 250) == 100
    assert p.available_seconds(50, 120) == 20
    assert p.available_seconds(350, 650) == 150  # 350–400 none, 400–500 none, 500–650: 150
    assert p.available_seconds(10, 10) == 0


@given(
    st.lists(st.booleans(), min_size=1, max_size=30),
    st.floats(0, 5000),
    st.floats(0, 5000),
)
def test_available_seconds_matches_a_sum_over_ticks(
    pattern: list[bool], a: float, b: float
) -> None:
    p = Pool("h", 10.0, tuple(pattern))
    start, end = min(a, b), max(a, b)
    expected = 0.0
    for tick in range(int(start // 10), int(end // 10) + 1):
        overlap = min(end, (tick + 1) * 10) - max(start, tick * 10)
        if overlap > 0 and pattern[tick % len(pattern)]:
            expected += overlap
    assert p.available_seconds(start, end) == pytest.approx(expected, abs=1e-6)


def test_load_pools_reads_every_json_file_recursively(tmp_path: Path) -> None:
    write_trace(tmp_path / "a" / "zone-b.json", [1, 0])
    write_trace(tmp_path / "zone-a.json", [0, 1], gap_s=32)
    (tmp_path / "README.md").write_text("not a trace")
    pools = load_pools(tmp_path)
    assert [p.name for p in pools] == ["a/zone-b", "zone-a"]
    assert pools[1].gap_s == 32


@pytest.mark.parametrize(
    "body",
    ['{"data": [1]}', '{"metadata": {"gap_seconds": 60}, "data": [true]}', "[1, 2]", "{"],
)
def test_malformed_files_are_refused(tmp_path: Path, body: str) -> None:
    (tmp_path / "bad.json").write_text(body)
    with pytest.raises(TraceError, match="bad"):
        load_pools(tmp_path)


def test_an_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError):
        load_pools(tmp_path)
    with pytest.raises(TraceError):
        load_pools(tmp_path / "missing")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")
def test_shipped_traces_load() -> None:
    pools = load_pools(SHARED)
    assert len(pools) == 12
    assert all(0 < p.available_share < 1 for p in pools)
