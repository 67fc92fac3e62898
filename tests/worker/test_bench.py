"""``bench/worker.py`` runs end to end on the CPU with the tiny models (no timing claims)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.worker import main

pytestmark = pytest.mark.worker


def test_the_worker_benchmark_measures_every_path_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "worker.json"
    argv = ["--tiny", "--device", "cpu", "--steps", "2", "--iters", "2", "--batches", "2,1"]
    assert main([*argv, "--out", str(out)]) == 0
    body = json.loads(out.read_text())
    measured = {(r["model"], r["batch"], r["path"]) for r in body["results"]}
    assert measured == {
        (model, batch, path)
        for model in ("sd15", "sdxl")
        for batch in (2, 1)
        for path in ("a1111", "lean")
    }
    for row in body["results"]:
        assert row["images"] == 2 * row["batch"] and row["images_per_s"] > 0
        assert row["png_kb_per_image"] > 0 and not row["all_black_batch"]
        assert 0 < row["decode_s_per_batch"] < row["generate_s_per_batch"]
    assert {(r["model"], r["batch"]) for r in body["ratios"]} == {
        (m, b) for m in ("sd15", "sdxl") for b in (2, 1)
    }
    assert body["meta"]["weights"].startswith("random, tiny") and body["skipped"] == []


def test_the_budget_skips_what_would_not_finish(tmp_path: Path) -> None:
    out = tmp_path / "worker.json"
    argv = ["--tiny", "--device", "cpu", "--models", "sd15", "--batches", "1", "--steps", "1"]
    paths = ["--paths", "a1111,compiled", "--compile", "sd15:1"]
    assert main([*argv, *paths, "--budget-s", "60", "--out", str(out)]) == 0  # compile: ~100 s
    body = json.loads(out.read_text())
    assert [r["path"] for r in body["results"]] == ["a1111"]
    assert body["skipped"] == ["sd15 b1 compiled: a compile would pass --budget-s"]
    assert main([*argv, "--budget-s", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["skipped"] == ["sd15: over --budget-s"]


def test_paths_run_in_separate_processes_add_up_to_one_comparison(tmp_path: Path) -> None:
    out = tmp_path / "worker.json"
    argv = ["--tiny", "--device", "cpu", "--models", "sd15", "--batches", "1", "--steps", "1"]
    assert main([*argv, "--paths", "a1111", "--out", str(out)]) == 0
    assert main([*argv, "--paths", "lean", "--append", "--out", str(out)]) == 0
    body = json.loads(out.read_text())
    assert [r["path"] for r in body["results"]] == ["a1111", "lean"]
    assert [(r["path"], r["batch"]) for r in body["ratios"]] == [("lean", 1)]
    assert body["meta"]["earlier_processes"] == [[*argv, "--paths", "a1111", "--out", str(out)]]
    # without --append a run starts afresh
    assert main([*argv, "--paths", "lean", "--out", str(out)]) == 0
    assert [r["path"] for r in json.loads(out.read_text())["results"]] == ["lean"]
