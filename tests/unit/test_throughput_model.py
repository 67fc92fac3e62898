"""The throughput model against its sources, its batch curves, and learning from runs."""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from subconscious.catalogue import canonical
from subconscious.models import ModelFamily
from subconscious.throughput_model import (
    FACTOR_BOUNDS,
    RUN_RATIO_BOUNDS,
    WEIGHT,
    Correction,
    ThroughputModel,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "layers" / "subconscious" / "data"
SHARED_H100 = ROOT.parent / "shared" / "data" / "h100-sd-throughput.jsonl"
SD15, SDXL = ModelFamily.SD15, ModelFamily.SDXL


def _family(model: str) -> ModelFamily:
    return SDXL if "SDXL" in model else SD15


def _measured() -> list[dict[str, str]]:
    lines = (DATA / "h100_measured.csv").read_text().splitlines()
    return list(csv.DictReader(line for line in lines if not line.startswith("#")))


MEASURED_CHECKS = [("SD1.5", 1), ("SD1.5", 8), ("SD1.5", 32), ("SDXL", 1), ("SDXL", 8)]


@pytest.mark.parametrize(("model", "batch"), MEASURED_CHECKS)
def test_our_h100_measurement_within_15_percent(model: str, batch: int) -> None:
    row = next(r for r in _measured() if r["model"] == model and int(r["batch"]) == batch)
    width, height = (int(v) for v in row["resolution"].split("x"))
    got = ThroughputModel().images_per_second(
        row["gpu"], _family(model), width, height, int(row["steps"]), batch
    )
    expected = Decimal(row["images_per_s_gpu"])
    assert abs(got - expected) <= expected * Decimal("0.15")


@pytest.mark.skipif(not SHARED_H100.exists(), reason="shared data not checked out")
def test_packaged_copy_matches_the_shared_measurement() -> None:
    source = [json.loads(line) for line in SHARED_H100.read_text().splitlines()[1:]]
    copied = _measured()
    assert len(source) == len(copied)
    for s, c in zip(source, copied, strict=True):
        assert (s["device"], s["batch"], s["images_per_s_gpu"], s["peak_mem_gib"]) == (
            c["gpu"],
            int(c["batch"]),
            float(c["images_per_s_gpu"]),
            float(c["peak_mem_gib"]),
        )


def _crowd_checks() -> list[tuple[str, str, str, int, float, float, float]]:
    """The crowd rows the model rests on: per (card, family, batch) the row with most
    submissions (n ≥ 3), for cards our own measurement does not cover. Bounds: the row's IQR
    where given, else ±30 % of its median (images/s)."""
    measured = {(canonical(r["gpu"]), _family(r["model"])) for r in _measured()}
    best: dict[tuple[str, ModelFamily, int], tuple[int, dict[str, str]]] = {}
    with (DATA / "gpu_throughput.csv").open() as f:
        for row in csv.DictReader(f):
            n = re.search(r"\bn=(\d+)", row["source"])
            if not row["unit"].startswith("it/s aggregate") or n is None or int(n[1]) < 3:
                continue
            key = (canonical(row["gpu"]), _family(row["model"]), int(row["batch_size"]))
            if key[:2] not in measured and (key not in best or int(n[1]) >= best[key][0]):
                best[key] = (int(n[1]), row)
    checks = []
    for (_, _, batch), (_, row) in sorted(best.items()):
        median = float(row["value"]) / 20
        iqr = re.search(r"IQR ([\d.]+)-([\d.]+)", row["source"])
        low, high = (
            (float(iqr[1]) / 20, float(iqr[2]) / 20) if iqr else (0.7 * median, 1.3 * median)
        )
        checks.append((row["gpu"], row["model"], row["resolution"], batch, median, low, high))
    return checks


CROWD_CHECKS = _crowd_checks()


def test_crowd_checks_cover_the_big_cards() -> None:
    cards = {canonical(gpu) for gpu, *_ in CROWD_CHECKS}
    assert {"RTX 4090", "RTX 3090", "A100 80GB", "A100 40GB", "H100 PCIe", "T4"} <= cards
    assert len(CROWD_CHECKS) > 150


@pytest.mark.parametrize(
    ("gpu", "model", "resolution", "batch", "median", "low", "high"), CROWD_CHECKS
)
def test_crowd_rows_within_their_spread(
    gpu: str, model: str, resolution: str, batch: int, median: float, low: float, high: float
) -> None:
    width, height = (int(v) for v in resolution.split("x"))
    got = float(ThroughputModel().images_per_second(gpu, _family(model), width, height, 20, batch))
    assert low * 0.999 <= got <= high * 1.001, (median, got)


GPUS = ["T4", "RTX 3060", "RTX 3090", "RTX 4090", "A100 40GB", "A100 80GB", "H100", "H100 PCIe",
        "H200", "B200", "L40S", "A40", "H100 NVL", "RTX 4000 Ada", "Some Future GPU"]  # fmt: skip


@pytest.mark.parametrize("gpu", GPUS)
@pytest.mark.parametrize("family", list(ModelFamily))
def test_batch_curves_never_fall(gpu: str, family: ModelFamily) -> None:
    model = ThroughputModel()
    rates = [model.images_per_second(gpu, family, 512, 512, 20, b) for b in range(1, 65)]
    assert rates == sorted(rates)
    assert all(r > 0 for r in rates)


def test_saturation_by_card_size() -> None:
    model = ThroughputModel()
    assert model.best_batch("Tesla T4", SD15, 512, 512) <= 2
    assert model.best_batch("NVIDIA GeForce RTX 4090", SD15, 512, 512, 24) == 4
    assert model.best_batch("NVIDIA H100 80GB HBM3", SD15, 512, 512, 80) >= 8
    assert model.best_batch("H100 PCIe", SD15, 512, 512) >= 8


def test_best_batch_is_bounded_by_memory() -> None:
    model = ThroughputModel()
    assert model.best_batch("H100", SDXL, 1024, 1024, 80) > model.best_batch(
        "H100", SDXL, 1024, 1024, 12
    )
    assert model.best_batch("H100", SDXL, 2048, 2048, 8) == 1  # nothing fits: still one
    assert model.best_batch("Unknown Card", SD15, 512, 512) == 1  # flat curve


def test_interpolates_between_measured_batches() -> None:
    model = ThroughputModel()
    b4, b6, b8 = (model.images_per_second("H100", SD15, 512, 512, 20, b) for b in (4, 6, 8))
    assert b4 < b6 < b8
    assert abs(b6 - (b4 + b8) / 2) < Decimal("0.001")


def test_scales_by_pixels_and_steps() -> None:
    model = ThroughputModel()
    base = model.images_per_second("RTX 4090", SD15, 512, 512, 20, 4)
    assert model.images_per_second("RTX 4090", SD15, 1024, 512, 20, 4) == pytest.approx(base / 2)
    assert model.images_per_second("RTX 4090", SD15, 512, 512, 40, 4) == pytest.approx(base / 2)


def test_one_family_derives_the_other_and_unknown_cards_are_slow() -> None:
    model = ThroughputModel()
    h100 = model.curve("H100", SDXL)[-1][1] / model.curve("H100", SD15)[-1][1]
    l40s_sd15 = model.curve("L40S", SD15)
    l40s_sdxl = model.curve("L40S", SDXL)
    assert l40s_sdxl[-1][1] / l40s_sd15[-1][1] == pytest.approx(h100)
    unknown = model.images_per_second("Mystery GPU", SD15, 512, 512, 20, 1)
    assert unknown == Decimal("0.5")
    assert not model.knows("Mystery GPU")
    assert model.curve("A40", SD15) == model.curve("RTX A6000", SD15)
    assert model.knows("A40") and model.knows("H100 NVL")


@pytest.mark.parametrize(("width", "height", "steps", "batch"), [(0, 512, 20, 1), (512, 512, 0, 1),
                                                                 (512, 512, 20, 0)])  # fmt: skip
def test_rejects_non_positive_settings(width: int, height: int, steps: int, batch: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ThroughputModel().images_per_second("T4", SD15, width, height, steps, batch)


def test_a_run_moves_the_prediction_towards_it() -> None:
    model = ThroughputModel()
    predicted = model.images_per_second("RTX 4090", SD15, 512, 512, 20, 4)
    measured = predicted * Decimal("1.5")
    after = model.with_correction("NVIDIA GeForce RTX 4090", measured, predicted)
    moved = after.images_per_second("RTX 4090", SD15, 512, 512, 20, 4)
    assert predicted < moved < measured
    assert float(after.correction("RTX 4090").factor) == pytest.approx(1.5**WEIGHT, rel=1e-5)
    assert after.correction("RTX 4090").runs == 1
    # other cards and the model it came from are untouched
    assert after.images_per_second("T4", SD15, 512, 512, 20, 1) == model.images_per_second(
        "T4", SD15, 512, 512, 20, 1
    )
    assert model.correction("RTX 4090") == Correction()


@pytest.mark.parametrize("truth", [Decimal("0.6"), Decimal("1.8"), Decimal("3")])
def test_repeated_runs_converge(truth: Decimal) -> None:
    model = ThroughputModel()
    prior = model.images_per_second("A100 80GB", SDXL, 1024, 1024, 30, 8)
    for _ in range(40):
        predicted = model.images_per_second("A100 80GB", SDXL, 1024, 1024, 30, 8)
        model = model.with_correction("A100 80GB", prior * truth, predicted)
    final = model.images_per_second("A100 80GB", SDXL, 1024, 1024, 30, 8)
    assert final == pytest.approx(prior * truth, rel=Decimal("0.001"))
    assert model.correction("A100 80GB").runs == 40


def test_one_bad_run_is_bounded_and_the_factor_too() -> None:
    model = ThroughputModel()
    one = model.with_correction("T4", Decimal("0.0001"), Decimal(1))
    assert float(one.correction("T4").factor) == pytest.approx(RUN_RATIO_BOUNDS[0] ** WEIGHT, 1e-5)
    for _ in range(60):
        one = one.with_correction("T4", Decimal(1000), Decimal(1))
    assert float(one.correction("T4").factor) == FACTOR_BOUNDS[1]
    for _ in range(60):
        one = one.with_correction("T4", Decimal("0.001"), Decimal(1))
    assert float(one.correction("T4").factor) == FACTOR_BOUNDS[0]


def test_rejects_runs_without_a_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        ThroughputModel().with_correction("T4", Decimal(0), Decimal(1))
    with pytest.raises(ValueError, match="positive"):
        ThroughputModel().with_correction("T4", Decimal(1), Decimal(0))


def test_corrected_restores_stored_factors_canonical_and_bounded() -> None:
    model = ThroughputModel().corrected(
        {
            "NVIDIA GeForce RTX 3090": Correction(Decimal(2), 5),
            "Tesla T4": Correction(Decimal(100), 1),
        }
    )
    assert set(model.corrections) == {"RTX 3090", "T4"}
    assert model.correction("RTX 3090") == Correction(Decimal(2), 5)
    assert model.correction("T4").factor == Decimal(4)
    base = ThroughputModel().images_per_second("RTX 3090", SD15, 512, 512, 20, 8)
    assert model.images_per_second("RTX 3090", SD15, 512, 512, 20, 8) == pytest.approx(2 * base)
    again = model.corrected({"RTX 3090": Correction(Decimal("0.5"), 6)})
    assert again.correction("RTX 3090").factor == Decimal("0.5")
    assert again.correction("T4").factor == Decimal(4)
