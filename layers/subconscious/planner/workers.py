"""Which server renders on a rented machine, and what that does to its rate. Pure.

The throughput prior (``subconscious/data``) counts UNet and VAE time only: our H100 rows are
``images_per_s_gpu`` (no PNG encoding) and the crowd rows are automatic1111 / SD.Next's own
benchmark, which saves no image. So the prior is already the rate of a server that hides its
encoding, as our lean worker (``worker/``) does with a thread pool. automatic1111 encodes each
PNG in the request thread before the next batch starts, so each image also costs its encoding
(``A1111_PNG_S_PER_MEGAPIXEL``): on an H100 SD 1.5 drops from 6.35 to 4.57 images/s at batch 8.
Hence, each corrected by the per-GPU factor its runs measure:

* **automatic1111**: the prior × ``1 / (1 + prior × encode seconds)`` (:func:`server_share`),
  computed on the prior, so a learned factor scales the whole rate and the learning stays a
  plain ratio; on slow cards the encoding is a few per cent, on an H100 about 30 %;
* **lean, eager**: the prior (× 1);
* **lean, compiled** (``torch.compile`` of the UNet and the VAE decoder for one shape): × 1.41
  for SD 1.5 (9.78 against 6.91 images/s in one run, ``docs/benchmarks.md``; the eager figure
  ran with cuDNN's heuristic algorithms, the compiled one probably autotuned), × 1.29 for SDXL
  (the UNet alone, ``shared/data/h100-sd-worker-ceiling.jsonl``). Measured on an H100 only;
  taken to hold on other cards. It costs ``COMPILE_S`` once per shape during the worker's
  warm-up, so the machine is ready that much later: 76 s measured for SD 1.5 (UNet and decoder);
  for SDXL 197 s for the UNet alone in our run (120 s in the recorded one), the decoder at 1024²
  unmeasured, hence 240.

Static servers are automatic1111 by definition, whatever ``SUBC_WORKER`` says.
"""

from __future__ import annotations

from collections.abc import Iterable

from subconscious.models import JobSpec, ModelFamily
from subconscious.models.servers import WorkerKind

COMPILED_OVER_EAGER = {ModelFamily.SD15: 1.41, ModelFamily.SDXL: 1.29}
COMPILE_S = {ModelFamily.SD15: 80, ModelFamily.SDXL: 240}
# Seconds automatic1111 spends encoding one PNG (level 6, one core), per megapixel: measured on
# the H100 host of h100-sd-throughput.jsonl at batch 8, 0.061 s at 512² (0.233 s/MP) and 0.288 s
# at 1024² (0.275 s/MP); the larger, so a quote errs on the slow side.
A1111_PNG_S_PER_MEGAPIXEL = 0.275
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


def server_share(kind: WorkerKind, prior_per_s: float, width: int, height: int) -> float:
    """The share of the prior's ``prior_per_s`` (one card, the call's batch) that a server of
    ``kind`` delivers: automatic1111 adds each image's PNG encoding to its GPU time."""
    if kind is not WorkerKind.AUTOMATIC1111:
        return 1.0
    encode_s = A1111_PNG_S_PER_MEGAPIXEL * width * height / 1e6
    return 1 / (1 + prior_per_s * encode_s)


def server_factor(
    kind: WorkerKind,
    family: ModelFamily,
    prior_per_s: float,
    width: int,
    height: int,
    compiled: bool = False,
) -> float:
    """What a server of ``kind`` renders at over the prior's ``prior_per_s``: its speed-up
    times the share its encoding leaves. Quotes, predictions and ETAs all count this."""
    return speedup(kind, family, compiled) * server_share(kind, prior_per_s, width, height)


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


def compile_seconds(jobs: Iterable[JobSpec]) -> int:
    """How much later a machine that compiles for ``jobs`` is ready: its family's compile for
    each setting (jobs of one setting share their shape, so it compiles once)."""
    settings = {(j.model_family, j.width, j.height) for j in jobs}
    return sum(COMPILE_S[family] for family, _, _ in settings)
