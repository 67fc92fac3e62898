"""Which server renders on a rented machine, and what that does to its rate. Pure.

The throughput data (``subconscious/data``) is automatic1111 / SD.Next's: eager PyTorch, each
PNG encoded on the CPU before the next batch starts. Our lean worker (``worker/``) speaks the
same API but encodes in a thread pool while the next batch renders, and may compile the UNet
for a shape (``torch.compile``, once per machine and shape).

* **Lean, eager**: the encoding no longer adds to the GPU's time per image. With ``r`` the
  automatic1111 rate and ``e`` the encoding time per image, ``1/r = gpu + e`` becomes ``gpu``:
  ``× 1 / (1 − e·r)``. That is 1.30 on an H100 for SD 1.5 (``e`` 42 ms, ``r`` 5.5/s), where we
  measured 1.28 in one run (``docs/benchmarks.md``, ``bench/worker.py``), and ~1.02 on a T4:
  the faster the card, the more the encoding costs automatic1111.
* **Lean, compiled**: the compiled UNet on top: × 1.35 for SD 1.5 (compiled 9.52 images/s against
  lean 7.05 in the same run), × 1.29 for SDXL (``shared/data/h100-sd-worker-ceiling.jsonl``).
  Measured on an H100 only; taken to hold on other cards (compiling fuses the same kernels).
  It costs ``COMPILE_S`` once per shape (43–78 s SD 1.5, 120 s SDXL on the H100), during the
  worker's warm-up, so the machine is ready that much later.
"""

from __future__ import annotations

from enum import StrEnum

from subconscious.models import JobSpec, ModelFamily


class WorkerKind(StrEnum):
    AUTOMATIC1111 = "automatic1111"
    LEAN = "lean"


# Encoding one 512² PNG (level 6) on the host's CPU, as the worker benchmark measured it.
ENCODE_S = 0.042
# Never credit the lean worker with more than 2x from encoding alone (e·r capped at 0.5).
MAX_ENCODE_SHARE = 0.5
COMPILED_OVER_EAGER = {ModelFamily.SD15: 1.35, ModelFamily.SDXL: 1.29}
COMPILE_S = {ModelFamily.SD15: 80, ModelFamily.SDXL: 120}
# Compile only where it saves at least this many times what it costs on the work in sight,
# and only where the closest promise is this far away (the compile delays the first batch).
COMPILE_PAYBACK = 2.0
COMPILE_MIN_WINDOW_S = 3600


def speedup(
    kind: WorkerKind,
    family: ModelFamily,
    pixels: int,
    automatic1111_rate: float,
    compiled: bool,
) -> float:
    """What the ``kind`` of server renders at, over automatic1111 on the same card and batch
    (``automatic1111_rate`` images/s of ``pixels`` each)."""
    if kind is WorkerKind.AUTOMATIC1111:
        return 1.0
    share = min(MAX_ENCODE_SHARE, ENCODE_S * pixels / (512 * 512) * automatic1111_rate)
    lean = 1 / (1 - share)
    return lean * COMPILED_OVER_EAGER[family] if compiled else lean


def compile_pays(kind: WorkerKind, job: JobSpec, eager_seconds: float) -> bool:
    """Whether compiling the UNet for ``job``'s shape pays for itself on ``eager_seconds`` of
    rendering (what the machine would spend on it uncompiled)."""
    if kind is not WorkerKind.LEAN:
        return False
    saved = eager_seconds * (1 - 1 / COMPILED_OVER_EAGER[job.model_family])
    return saved >= COMPILE_PAYBACK * COMPILE_S[job.model_family]


def shape(job: JobSpec, batch: int) -> str:
    """The worker's ``--compile-shapes`` entry for ``job`` at ``batch`` images per call."""
    return f"{job.width}x{job.height}x{batch}"


def compile_seconds(shapes: tuple[str, ...]) -> int:
    """How much later a machine that compiles ``shapes`` is ready (SDXL's cost for shapes
    past 768², SD 1.5's below)."""
    total = 0
    for entry in shapes:
        width, height, _ = (int(part) for part in entry.split("x"))
        total += COMPILE_S[ModelFamily.SDXL if width * height > 768 * 768 else ModelFamily.SD15]
    return total
