"""How fast a GPU renders: images/s for (GPU, model family, size, steps).

Seeded from ``data/gpu_throughput.csv`` (crowd-sourced medians of the sd-extension-system-info
benchmark; provenance per row in the file, explained in ``docs/data.md``). The value column is
"it/s aggregate" = steps × batch / wall time at 20 steps, so images/s = value / 20. We take each
GPU's best median at batch ≤ 8 (what an automatic1111 call of ours uses), then scale linearly by
pixels and steps. A later issue adds batch curves and a correction learned from our own runs.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from functools import cache
from importlib import resources

from subconscious.models import JobSpec, ModelFamily

_REFERENCE_STEPS = 20
_REFERENCE_PIXELS = {ModelFamily.SD15: 512 * 512, ModelFamily.SDXL: 1024 * 1024}
# SDXL at 1024² is ~5× slower than SD 1.5 at 512² on the same card (our H100 measurement:
# 6.35 vs 1.13 images/s at batch 8); used where the crowd data has no SDXL row for a card.
_SDXL_PER_SD15 = Decimal("0.178")
_UNKNOWN_GPU_IMAGES_PER_S = Decimal("0.5")  # pessimistic: an unknown card is priced as slow

_NOISE = re.compile(r"\(.*?\)|\b(NVIDIA|GEFORCE|TESLA|PCIE|SXM\d?|HBM\d?|HGX|NVL|\d+\s?GB)\b", re.I)


def canonical_gpu(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' → 'RTX 4090'; 'A100 80GB PCIe' → 'A100'; 'H100 SXM' → 'H100'."""
    return " ".join(_NOISE.sub(" ", name).upper().split())


@cache
def _table() -> dict[tuple[str, ModelFamily], Decimal]:
    best: dict[tuple[str, ModelFamily], Decimal] = {}
    source = resources.files("subconscious") / "data" / "gpu_throughput.csv"
    for row in csv.DictReader(io.StringIO(source.read_text())):
        family = ModelFamily.SDXL if "SDXL" in row["model"] else ModelFamily.SD15
        width, height = (int(v) for v in row["resolution"].split("x"))
        if int(row["batch_size"]) > 8 or "refiner" in row["model"]:
            continue
        images_per_s = Decimal(row["value"]) / _REFERENCE_STEPS
        # normalise rows at other sizes to the family's reference size
        images_per_s *= Decimal(width * height) / _REFERENCE_PIXELS[family]
        key = (canonical_gpu(row["gpu"]), family)
        best[key] = max(best.get(key, Decimal(0)), images_per_s)
    return best


def images_per_second(gpu: str, job: JobSpec) -> Decimal:
    return rate(gpu, job.model_family, job.width, job.height, job.steps)


def rate(gpu: str, family: ModelFamily, width: int, height: int, steps: int) -> Decimal:
    """Images/s of ``gpu`` for one image setting."""
    table = _table()
    name = canonical_gpu(gpu)
    base = table.get((name, family))
    # a card measured for one family only: derive the other from the measured ratio
    if base is None and family is ModelFamily.SDXL and (name, ModelFamily.SD15) in table:
        base = table[(name, ModelFamily.SD15)] * _SDXL_PER_SD15
    if base is None and family is ModelFamily.SD15 and (name, ModelFamily.SDXL) in table:
        base = table[(name, ModelFamily.SDXL)] / _SDXL_PER_SD15
    if base is None:
        base = _UNKNOWN_GPU_IMAGES_PER_S
    scale = Decimal(_REFERENCE_PIXELS[family]) / (width * height)
    return base * scale * Decimal(_REFERENCE_STEPS) / steps


def max_batch(job: JobSpec, gpu_memory_gb: int) -> int:
    """Images per txt2img call: bounded by VRAM (SD 1.5 at 512² fits ~8 per 12 GB) and kept
    small enough that one call ends well inside a provider's 100 s proxy limit."""
    per_image_gb = Decimal("1.5") * Decimal(job.width * job.height) / (512 * 512)
    if job.model_family is ModelFamily.SDXL:
        per_image_gb *= 2
    fits = int(Decimal(max(gpu_memory_gb - 4, 1)) / per_image_gb)
    return max(1, min(8, fits))
