"""Images/s per (GPU, model family, size, steps, batch), corrected by what our own runs measure.

Sources (provenance in ``docs/data.md`` and in the files' own rows/header):

* ``data/h100_measured.csv`` — our measurement on an H100 SXM (diffusers, fp16, eager, 20 steps):
  SD 1.5 512² at batch 1–32, SDXL 1024² at batch 1–8; ``images_per_s_gpu`` (UNet + VAE decode,
  the same span as the crowd's figure). Where it covers a (card, family) it is the whole curve.
* ``data/gpu_throughput.csv`` — crowd medians of the sd-extension-system-info benchmark, unit
  "it/s aggregate" at 20 steps, so images/s = value / 20. Rows in other units (the tuned SD.Next
  runs, a ComfyUI base+refiner timing) are left out. For each (card, family, batch) the row with
  the most submissions wins (the 2023 and 2025 sets overlap); rows with n < 3 are used only
  where a curve has no row with n ≥ 3 (so a curve with confident rows saturates at its last
  confident batch rather than follow one or two submissions: the safe side for a quote).

Shape: each curve is made non-decreasing by a weighted isotonic fit (a dip is noise: a bigger
batch could always be split; weights are the submissions, 1 per measured point),
interpolated linearly between measured batches and flat past the last one. Sizes scale linearly
by pixels from the family's reference (512² SD 1.5, 1024² SDXL; SDXL rows taken at 512² are
brought to 1024² the same way), steps linearly from 20. A card measured for one family only gets
the other from our H100's ratio of best SDXL 1024² to best SD 1.5 512² rate (1.134 / 6.595).
Stand-ins (same chip, no data of their own): A40 → RTX A6000 (GA102, 48 GB), H100 NVL → H100
PCIe. Catalogue cards with no data and no stand-in (``UNMEASURED``) and names outside the
catalogue are priced as slow: 0.5 images/s at SD 1.5 512², 20 steps, flat in batch.

Correction: a run's measured rate moves a per-GPU factor multiplying the prior. The factor is
an exponentially weighted geometric mean of measured/predicted ratios, weight 0.3 per run (a
run's weight halves after about two further runs); each run's ratio is clipped to 0.5×..2× and
the factor to 0.25×..4×, so one bad run moves quotes by at most 2^0.3 ≈ 1.23× and no run of
runs by more than 4×.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType

from subconscious.catalogue import canonical, memory_gb
from subconscious.models import ModelFamily

REFERENCE_STEPS = 20
REFERENCE_PIXELS = {ModelFamily.SD15: 512 * 512, ModelFamily.SDXL: 1024 * 1024}
UNKNOWN_SD15_IMAGES_PER_S = 0.5  # a card we know nothing about is priced as slow
CONFIDENT_N = 3
STAND_INS = {"A40": "RTX A6000", "H100 NVL": "H100 PCIe"}
UNMEASURED = frozenset({"RTX 4000 Ada", "P4000"})

WEIGHT = 0.3  # weight of the newest run in the per-GPU factor
RUN_RATIO_BOUNDS = (0.5, 2.0)
FACTOR_BOUNDS = (0.25, 4.0)
KNEE = 0.95  # best_batch: smallest batch within 5 % of the best rate that fits
MAX_BATCH = 64
MEMORY_HEADROOM = 0.9  # share of a card's memory a batch may plan to use

Curve = tuple[tuple[int, float], ...]  # (batch, images/s at reference size and steps), sorted


@dataclass(frozen=True)
class Correction:
    """Per-GPU factor on the prior rate, learned from runs (persist ``factor`` and ``runs``)."""

    factor: Decimal = Decimal(1)
    runs: int = 0


@dataclass(frozen=True)
class _Data:
    curves: Mapping[tuple[str, ModelFamily], Curve]
    sdxl_per_sd15: float
    memory: Mapping[ModelFamily, tuple[float, float]]  # GiB: fixed, per image at reference size


def _family(model: str) -> ModelFamily:
    return ModelFamily.SDXL if "SDXL" in model else ModelFamily.SD15


def _pixels(resolution: str) -> int:
    width, height = (int(v) for v in resolution.split("x"))
    return width * height


def _text(name: str) -> str:
    return (resources.files("subconscious") / "data" / name).read_text()


Point = tuple[int, float, float, float]  # submissions, images/s, lower and upper quartile


def _monotone(points: dict[int, Point]) -> Curve:
    """Weighted isotonic fit (pool adjacent violators, weights = submissions): a dip between
    batches is noise, averaged with its neighbours rather than followed; each pooled value is
    then kept inside its row's interquartile range and the curve made non-decreasing again."""
    blocks: list[list[float]] = []  # [weight, mean, count]
    for batch in sorted(points):
        weight, value, _, _ = points[batch]
        blocks.append([float(weight), value, 1.0])
        while len(blocks) > 1 and blocks[-2][1] > blocks[-1][1]:
            w2, v2, c2 = blocks.pop()
            w1, v1, c1 = blocks.pop()
            blocks.append([w1 + w2, (w1 * v1 + w2 * v2) / (w1 + w2), c1 + c2])
    pooled = [v for _, v, count in blocks for _ in range(int(count))]
    out: list[tuple[int, float]] = []
    floor = 0.0
    for batch, value in zip(sorted(points), pooled, strict=True):
        _, _, low, high = points[batch]
        floor = max(floor, min(max(value, low), high))
        out.append((batch, floor))
    return tuple(out)


def _crowd(text: str) -> dict[tuple[str, ModelFamily], Curve]:
    # (gpu, family) → batch → (n, images/s at reference size)
    rows: dict[tuple[str, ModelFamily], dict[int, Point]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        n_match = re.search(r"\bn=(\d+)", row["source"])
        if not row["unit"].startswith("it/s aggregate") or n_match is None:
            continue
        family = _family(row["model"])
        per_s = float(row["value"]) / REFERENCE_STEPS
        per_s *= _pixels(row["resolution"]) / REFERENCE_PIXELS[family]
        n = int(n_match.group(1))
        iqr = re.search(r"IQR ([\d.]+)-([\d.]+)", row["source"])
        scale = per_s / float(row["value"])
        low, high = (float(iqr[1]) * scale, float(iqr[2]) * scale) if iqr else (0.0, math.inf)
        points = rows.setdefault((canonical(row["gpu"]), family), {})
        batch = int(row["batch_size"])
        if batch not in points or n >= points[batch][0]:
            points[batch] = (n, per_s, low, high)
    curves = {}
    for key, points in rows.items():
        confident = {b: p for b, p in points.items() if p[0] >= CONFIDENT_N}
        curves[key] = _monotone(confident or points)
    return curves


@cache
def _data() -> _Data:
    curves = _crowd(_text("gpu_throughput.csv"))
    lines = [line for line in _text("h100_measured.csv").splitlines() if not line.startswith("#")]
    measured: dict[tuple[str, ModelFamily], dict[int, Point]] = {}
    mem_points: dict[ModelFamily, list[tuple[int, float]]] = {}
    for row in csv.DictReader(lines):
        family = _family(row["model"])
        scale = _pixels(row["resolution"]) / REFERENCE_PIXELS[family]
        per_s = float(row["images_per_s_gpu"]) * scale * int(row["steps"]) / REFERENCE_STEPS
        measured.setdefault((canonical(row["gpu"]), family), {})[int(row["batch"])] = (
            1,
            per_s,
            0.0,
            math.inf,
        )
        mem_points.setdefault(family, []).append((int(row["batch"]), float(row["peak_mem_gib"])))
    measured_curves = {key: _monotone(points) for key, points in measured.items()}
    curves.update(measured_curves)  # our own measurement replaces the crowd's
    best = {family: 0.0 for family in ModelFamily}
    for (_, family), curve in measured_curves.items():
        best[family] = max(best[family], max(v for _, v in curve))
    return _Data(
        curves=MappingProxyType(curves),
        sdxl_per_sd15=best[ModelFamily.SDXL] / best[ModelFamily.SD15],
        memory=MappingProxyType({f: _line(p) for f, p in mem_points.items()}),
    )


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares fixed + per-image memory."""
    mean_b = sum(b for b, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    slope = sum((b - mean_b) * (m - mean_m) for b, m in points) / sum(
        (b - mean_b) ** 2 for b, _ in points
    )
    return mean_m - slope * mean_b, slope


def _at(curve: Curve, batch: int) -> float:
    previous = curve[0]
    if batch <= previous[0]:
        return previous[1]
    for point in curve[1:]:
        if batch <= point[0]:
            share = (batch - previous[0]) / (point[0] - previous[0])
            return previous[1] + share * (point[1] - previous[1])
        previous = point
    return previous[1]


def _to_decimal(value: float) -> Decimal:
    return Decimal(format(value, ".6g"))


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


class ThroughputModel:
    """Prior from the packaged data, times a per-GPU factor learned from runs. Immutable."""

    def __init__(self, corrections: Mapping[str, Correction] | None = None) -> None:
        self._data = _data()
        self._corrections: dict[str, Correction] = {}
        for gpu, correction in (corrections or {}).items():
            factor = _clamp(float(correction.factor), FACTOR_BOUNDS)
            self._corrections[canonical(gpu)] = Correction(_to_decimal(factor), correction.runs)

    @property
    def corrections(self) -> Mapping[str, Correction]:
        return MappingProxyType(self._corrections)

    def knows(self, gpu: str) -> bool:
        """True when the rate of ``gpu`` comes from data (its own, or a stand-in's)."""
        name = canonical(gpu)
        if name in STAND_INS:
            name = STAND_INS[name]
        return any((name, family) in self._data.curves for family in ModelFamily)

    def curve(self, gpu: str, family: ModelFamily) -> Curve:
        """Prior images/s by batch at the family's reference size and 20 steps."""
        return self._curve(canonical(gpu), family)

    def _curve(self, name: str, family: ModelFamily) -> Curve:
        curves = self._data.curves
        if (name, family) in curves:
            return curves[(name, family)]
        other = ModelFamily.SD15 if family is ModelFamily.SDXL else ModelFamily.SDXL
        if (name, other) in curves:
            ratio = self._data.sdxl_per_sd15
            ratio = ratio if family is ModelFamily.SDXL else 1 / ratio
            return tuple((b, v * ratio) for b, v in curves[(name, other)])
        if name in STAND_INS:
            return self._curve(STAND_INS[name], family)
        unknown = UNKNOWN_SD15_IMAGES_PER_S
        if family is ModelFamily.SDXL:
            unknown *= self._data.sdxl_per_sd15
        return ((1, unknown),)

    def _rate(
        self, name: str, family: ModelFamily, width: int, height: int, steps: int, batch: int
    ) -> float:
        if min(width, height, steps, batch) < 1:
            raise ValueError("width, height, steps and batch must be positive")
        per_s = _at(self._curve(name, family), batch)
        per_s *= REFERENCE_PIXELS[family] / (width * height) * REFERENCE_STEPS / steps
        return per_s * float(self.correction(name).factor)

    def images_per_second(
        self, gpu: str, family: ModelFamily, width: int, height: int, steps: int, batch: int
    ) -> Decimal:
        """Images/s of one ``gpu`` rendering ``batch`` images per call."""
        return _to_decimal(self._rate(canonical(gpu), family, width, height, steps, batch))

    def fitting_batch(
        self, family: ModelFamily, width: int, height: int, memory_gb: int, most: int = MAX_BATCH
    ) -> int:
        """The largest batch (up to ``most``) whose memory fits in ``memory_gb``; at least 1."""
        fixed, per_image = self._data.memory[family]
        per_image *= width * height / REFERENCE_PIXELS[family]
        fits = int((memory_gb * MEMORY_HEADROOM - fixed) // per_image)
        return max(1, min(most, fits))

    def best_batch(
        self, gpu: str, family: ModelFamily, width: int, height: int, memory_gb: int | None = None
    ) -> int:
        """Smallest batch within 5 % of the best rate among the batches that fit in memory
        (fixed + per-image memory fitted to our H100 measurement, scaled by pixels, within 90 %
        of the card's memory; the catalogue's memory when ``memory_gb`` is None). At least 1."""
        name = canonical(gpu)
        memory = memory_gb if memory_gb is not None else _catalogue_memory(name)
        # a GPU's factor scales every batch alike: the prior's answer is the answer (cached,
        # since a quote asks it for a thousand offers of a few dozen cards)
        return _prior_best_batch(name, family, width, height, memory)

    def correction(self, gpu: str) -> Correction:
        return self._corrections.get(canonical(gpu), Correction())

    def corrected(self, observations: Mapping[str, Correction]) -> ThroughputModel:
        """This model with ``observations`` (e.g. loaded from storage) replacing its factors."""
        return ThroughputModel({**self._corrections, **observations})

    def with_correction(
        self, gpu: str, measured_images_per_s: Decimal, predicted: Decimal
    ) -> ThroughputModel:
        """This model after a run of ``gpu`` that rendered ``measured_images_per_s`` where this
        model had predicted ``predicted`` (its own corrected rate for that run's setting)."""
        if measured_images_per_s <= 0 or predicted <= 0:
            raise ValueError("a run's measured and predicted rates must be positive")
        name = canonical(gpu)
        old = self.correction(name)
        ratio = _clamp(float(measured_images_per_s / predicted), RUN_RATIO_BOUNDS)
        factor = math.exp(math.log(float(old.factor)) + WEIGHT * math.log(ratio))
        factor = _clamp(factor, FACTOR_BOUNDS)
        return self.corrected({name: Correction(_to_decimal(factor), old.runs + 1)})


@lru_cache(maxsize=4096)
def _prior_best_batch(name: str, family: ModelFamily, width: int, height: int, memory: int) -> int:
    prior = ThroughputModel()
    fixed, per_image = prior._data.memory[family]
    per_image *= width * height / REFERENCE_PIXELS[family]
    fits = [
        b for b in range(1, MAX_BATCH + 1) if fixed + per_image * b <= memory * MEMORY_HEADROOM
    ] or [1]
    rates = {b: prior._rate(name, family, width, height, REFERENCE_STEPS, b) for b in fits}
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= KNEE * best)


def _catalogue_memory(name: str) -> int:
    return memory_gb(name) or 16  # an unknown card: plan for a small one
