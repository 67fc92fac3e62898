"""Which server renders on a rented machine, and what that does to its rate. Pure.

The throughput prior (``subconscious/data``) counts UNet and VAE time only: our H100 rows are
``images_per_s_gpu`` (no PNG encoding) and the crowd rows are automatic1111 / SD.Next's own
benchmark, which saves no image. So the prior is already the rate of a server that hides its
encoding, as our lean worker (``worker/``) does with a thread pool; automatic1111, which encodes
each PNG before the next batch, is slower than the prior on fast cards (H100, SD 1.5: 4.57
images/s against 6.35), and the per-GPU factors learned from our runs carry that. Hence:

* **automatic1111** and **lean, eager**: the prior (× 1), each corrected by what its runs
  measure;
* **lean, compiled** (``torch.compile`` of the UNet and the VAE decoder for one shape): × 1.41
  for SD 1.5 (9.78 against 6.91 images/s in one run, ``docs/benchmarks.md``), × 1.29 for SDXL
  (the UNet alone, ``shared/data/h100-sd-worker-ceiling.jsonl``). Measured on an H100 only;
  taken to hold on other cards. It costs ``COMPILE_S`` once per shape during the worker's
  warm-up, so the machine is ready that much later: 76 s measured for SD 1.5 (UNet and decoder);
  for SDXL 197 s for the UNet alone in our run (120 s in the recorded one), the decoder at 1024²
  unmeasured, hence 240.

Static servers are automatic1111 by definition, whatever ``SUBC_WORKER`` says.
"""

from __future__ import annotations

from enum import StrEnum

from subconscious.models import JobSpec, ModelFamily


class WorkerKind(StrEnum):
    AUTOMATIC1111 = "automatic1111"
    LEAN = "lean"


COMPILED_OVER_EAGER = {ModelFamily.SD15: 1.41, ModelFamily.SDXL: 1.29}
COMPILE_S = {ModelFamily.SD15: 80, ModelFamily.SDXL: 240}
# Compile only where it saves at least this many times what it costs on the work in sight,
# and at most this many shapes per machine (each delays its first batch).
COMPILE_PAYBACK = 2.0
MAX_COMPILE_SHAPES = 2
# Servers that already run (market/static.py): automatic1111, never launched from our image.
STATIC_PROVIDER = "static"


def kind_for(provider: str, configured: WorkerKind) -> WorkerKind:
    """The server a machine from ``provider`` runs when our images run ``configured``."""
    return WorkerKind.AUTOMATIC1111 if provider == STATIC_PROVIDER else configured


def speedup(kind: WorkerKind, family: ModelFamily, compiled: bool) -> float:
    """What the ``kind`` of server renders at, over the prior, on the same card and batch."""
    if kind is WorkerKind.LEAN and compiled:
        return COMPILED_OVER_EAGER[family]
    return 1.0


def compile_pays(kind: WorkerKind, job: JobSpec, eager_seconds: float) -> bool:
    """Whether compiling the UNet for ``job``'s shape pays for itself on ``eager_seconds`` of
    rendering (what the machine would spend on it uncompiled). Never without guidance
    (cfg_scale 1): the worker compiles for the guided batch."""
    if kind is not WorkerKind.LEAN or job.cfg_scale <= 1:
        return False
    saved = eager_seconds * (1 - 1 / COMPILED_OVER_EAGER[job.model_family])
    return saved >= COMPILE_PAYBACK * COMPILE_S[job.model_family]


def shape(job: JobSpec, batch: int) -> str:
    """The worker's ``--compile-shapes`` entry for ``job`` at ``batch`` images per call."""
    return f"{job.width}x{job.height}x{batch}"


def compile_seconds(shapes: tuple[object, ...]) -> int:
    """How much later a machine that compiles ``shapes`` (shape strings, or the settings they
    come from) is ready: each at the dearer family's cost (a shape does not say its family)."""
    return len(shapes) * max(COMPILE_S.values())
