"""``python -m bench.planner`` on a tiny trace folder: a table, then valid JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.planner import report
from tests.bench.helpers import write_trace

KEYS = {
    "workload",
    "policy_cost_per_image_usd",
    "greedy_cost_per_image_usd",
    "naive_cost_per_image_usd",
    "lower_bound_cost_per_image_usd",
    "optimum_ratio_small",
    "deadline_attainment",
    "orders_over_quote",
    "quote_latency_p99_ms",
}


def test_the_command_prints_a_table_then_one_json_line_per_workload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "LATENCY_CALLS", 2)
    monkeypatch.setattr(report, "LATENCY_ORDERS", 50)
    write_trace(tmp_path / "traces" / "zone-a.json", [1, 1, 0, 1] * 10)
    write_trace(tmp_path / "traces" / "deep" / "zone-b.json", [0, 1] * 20, gap_s=32)
    plot = tmp_path / "plot.png"
    code = report.main(
        ["--traces", str(tmp_path / "traces"), "--workload", "steady", "--days", "0.15",
         "--small", "1", "--plot", str(plot), "--diagnose"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    assert [line["workload"] for line in lines] == ["steady"]
    (line,) = lines
    assert set(line) >= KEYS
    assert line["deadline_attainment"] is not None
    assert line["small_lp_above_milp"] == 0
    assert any(row.startswith("workload") for row in out)  # the table's head
    assert plot.stat().st_size > 1000


def test_an_unknown_workload_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        report.main(["--traces", str(tmp_path), "--workload", "nope"])
