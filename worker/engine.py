"""The generation engine: one diffusers pipeline, one generation at a time.

What it adds to a bare pipeline, each for a reason automatic1111 gets wrong or we need:

- **Seeds per image.** Image ``i`` of a batch with seed ``s`` is drawn from its own generator
  seeded ``s + i`` (on the CPU, so the same seed gives the same noise on any card), so an image
  depends on its seed, not on the batch it was rendered in.
- **A queue lock.** Generations run one after another; a second caller waits. Only the GPU
  part is serialised: what a caller does with the pixels (``on_batch``) runs on its side.
- **Out-of-memory recovery.** ``torch.OutOfMemoryError`` is caught, every reference to the
  failed batch's tensors is dropped, the CUDA cache is emptied, and :class:`WorkerOutOfMemory`
  is raised: the next, smaller batch runs on a clean card.
- **Compiled and eager models side by side.** ``torch.compile`` specialises on shapes and
  recompiles (for tens of seconds) on a new one; a request must never pay that mid-call. The
  compiled UNet and VAE decoder are used only for the shapes warmed up at start, the eager
  ones for the rest. The decoder is compiled too: at SD 1.5 512² batch 16 it was about an
  eighth of a batch's GPU time once the UNet was compiled (0.19 of 1.65 s on an H100).
- **cuDNN's autotuner** (``cudnn_benchmark``) times the convolution algorithms of a shape the
  first time it runs instead of taking cuDNN's heuristic pick: seconds of searching, so only
  for the shapes warmed up at start (same batch, guidance and size; the others keep the
  heuristics, never a search mid-call). The planner's machines warm the compiled shapes; an
  uncompiled machine warms only the native size at batch 1, so its tasks keep the heuristics,
  as the benchmark's eager figure was measured.
  automatic1111 turns it on only for GTX 16xx cards, so the benchmark's automatic1111-style
  path runs without it.
- **Progress and interrupt** as automatic1111 reports them (``/sdapi/v1/progress``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    UniPCMultistepScheduler,
)

Pixels = npt.NDArray[np.uint8]  # (batch, height, width, 3)
# Called after each batch of a job with (batch index, its pixels, its seeds).
OnBatch = Callable[[int, Pixels, list[int]], None]

# automatic1111 sampler names -> the diffusers scheduler that implements the same method. LMS
# and the DPM++ SDE family need scipy / torchsde, which the worker does not ship.
SAMPLERS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "Euler": (EulerDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "DPM2": (KDPM2DiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {}),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
}
DEFAULT_SAMPLER = "Euler a"  # automatic1111's default


class SamplerNotFound(LookupError):
    """The request names a sampler this worker does not implement."""


class WorkerOutOfMemory(RuntimeError):
    """The card ran out of memory; the cache has been emptied and the engine is usable."""


@dataclass(frozen=True)
class Job:
    """One txt2img request as the engine sees it: ``n_iter`` batches of ``batch_size``."""

    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    negative_prompt: str = ""
    batch_size: int = 1
    n_iter: int = 1
    cfg_scale: float = 7.0
    sampler: str = DEFAULT_SAMPLER

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.batch_size * self.n_iter)]

    def shape_key(self) -> tuple[int, int, int]:
        """What the UNet's compiled graph depends on: its batch and the latent size (classifier-
        free guidance doubles the batch)."""
        guided = 2 if self.cfg_scale > 1 else 1
        return (self.batch_size * guided, self.height // 8, self.width // 8)


@dataclass
class Stats:
    generations: int = 0
    images: int = 0
    out_of_memory: int = 0
    busy: int = 0
    max_busy: int = 0
    # (start, end) of the latest generations, time.monotonic(): lets a test see the lock work.
    spans: list[tuple[float, float]] = field(default_factory=list)


def _idle_job() -> dict[str, Any]:
    return {
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
        "time_start": 0.0,
    }


class Engine:
    def __init__(
        self,
        pipe: DiffusionPipeline,
        *,
        compile_unet: bool = False,
        compile_mode: str | None = None,
        channels_last: bool = False,
        cudnn_benchmark: bool = False,
        oom_above_batch: int | None = None,
    ) -> None:
        self.pipe = pipe
        self.cudnn_benchmark = cudnn_benchmark
        self.device = torch.device(pipe.device)
        pipe.set_progress_bar_config(disable=True)
        if channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        self._eager_unet = pipe.unet
        self._eager_decoder = pipe.vae.decoder
        self._compiled_unet: Any = None
        self._compiled_decoder: Any = None
        if compile_unet:
            # dynamic=False: a second warmed shape gets its own static graph, not a dynamic one
            self._compiled_unet = torch.compile(pipe.unet, mode=compile_mode, dynamic=False)
            self._compiled_decoder = torch.compile(
                pipe.vae.decoder, mode=compile_mode, dynamic=False
            )
        self._compiled_shapes: set[tuple[int, int, int]] = set()
        self._compiled_decodes: set[tuple[int, int, int]] = set()
        # (batch, guided, latent h, latent w): the UNet's and the decoder's shapes together
        self._warmed: set[tuple[int, bool, int, int]] = set()
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._schedulers: dict[str, Any] = {}
        self._queue_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._interrupted = threading.Event()
        self._job: dict[str, Any] = _idle_job()
        self._current_batch = 0
        self.stats = Stats()
        if oom_above_batch is not None:
            self._inject_oom_above(oom_above_batch)

    # ---- fault injection (tests and the local stack)

    def _inject_oom_above(self, limit: int) -> None:
        """Raise CUDA's out-of-memory error from inside the UNet when a batch is larger than
        ``limit``, so the real recovery path runs without a GPU."""

        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if self._current_batch > limit:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total "
                    "capacity; 20.12 GiB already allocated; 1.20 GiB free; 21.00 GiB reserved "
                    f"in total by PyTorch) [injected: batches above {limit}]"
                )

        self._eager_unet.register_forward_pre_hook(hook)

    # ---- compile

    @property
    def compiled(self) -> bool:
        return self._compiled_unet is not None

    @property
    def compiled_shapes(self) -> list[tuple[int, int, int]]:
        return sorted(self._compiled_shapes)

    def warm_up(self, jobs: Iterable[Job]) -> list[float]:
        """Run each job once (untimed work that loads kernels, lets cuDNN's autotuner time that
        shape's convolutions and, with compile on, compiles the models for it); returns the
        seconds each took."""
        took = []
        for job in jobs:
            start = time.perf_counter()
            self.generate(job, lambda _i, _p, _s: None, compile_shape=self.compiled, warm=True)
            took.append(time.perf_counter() - start)
        return took

    def _unet_for(self, job: Job, compile_shape: bool) -> Any:
        if self._compiled_unet is None:
            return self._eager_unet
        key = job.shape_key()
        if compile_shape:
            self._compiled_shapes.add(key)
        return self._compiled_unet if key in self._compiled_shapes else self._eager_unet

    def _decoder_for(self, job: Job, compile_shape: bool) -> Any:
        """The VAE decoder sees the latents once per batch, unguided: its own shape key."""
        if self._compiled_decoder is None:
            return self._eager_decoder
        key = (job.batch_size, job.height // 8, job.width // 8)
        if compile_shape:
            self._compiled_decodes.add(key)
        return self._compiled_decoder if key in self._compiled_decodes else self._eager_decoder

    # ---- progress and interrupt

    def progress(self) -> dict[str, Any]:
        with self._state_lock:
            job = dict(self._job)
        return {"interrupted": self._interrupted.is_set(), **job}

    def interrupt(self) -> None:
        """Stop the running job: its current batch skips its remaining steps and is decoded
        (as automatic1111 does); later batches of the job are not started."""
        self._interrupted.set()

    def _set_job(self, **fields: Any) -> None:
        with self._state_lock:
            self._job.update(fields)

    def _on_step(
        self, pipe: DiffusionPipeline, step: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        self._set_job(sampling_step=step + 1)
        if self._interrupted.is_set():
            pipe._interrupt = True  # the pipeline skips its remaining steps, then decodes
        return {}

    # ---- generation

    def scheduler(self, name: str) -> Any:
        if name not in SAMPLERS:
            raise SamplerNotFound(name)
        if name not in self._schedulers:
            cls, overrides = SAMPLERS[name]
            self._schedulers[name] = cls.from_config(self._base_scheduler_config, **overrides)
        return self._schedulers[name]

    def generate(
        self, job: Job, on_batch: OnBatch, *, compile_shape: bool = False, warm: bool = False
    ) -> int:
        """Render ``job`` batch by batch, handing each batch's pixels to ``on_batch`` (which
        should not block for long: encoding belongs in a pool). Returns the batches rendered
        (fewer than ``n_iter`` after an interrupt). Waits for any running generation first.
        ``compile_shape`` (compile for this shape) and ``warm`` make it a warm-up: cuDNN may
        search its algorithms, and the shape counts as warmed once it rendered."""
        scheduler = self.scheduler(job.sampler)
        with self._queue_lock:
            self._interrupted.clear()
            failure: str | None = None
            started = time.monotonic()
            with self._state_lock:
                self.stats.busy += 1
                self.stats.max_busy = max(self.stats.max_busy, self.stats.busy)
            try:
                return self._generate_locked(job, on_batch, scheduler, compile_shape, warm)
            except torch.OutOfMemoryError as exc:
                # Leaving this block drops the exception and, with its traceback, the frames
                # that still hold the failed batch's tensors.
                failure = str(exc)
            finally:
                ended = time.monotonic()
                with self._state_lock:
                    self._job = _idle_job()
                    self._current_batch = 0
                    self.stats.busy -= 1
                    self.stats.spans = [*self.stats.spans[-99:], (started, ended)]
            self._free_memory()
            with self._state_lock:
                self.stats.out_of_memory += 1
            raise WorkerOutOfMemory(failure)

    def _free_memory(self) -> None:
        self.pipe.unet = self._eager_unet
        self.pipe.vae.decoder = self._eager_decoder
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def _generate_locked(
        self, job: Job, on_batch: OnBatch, scheduler: Any, compile_shape: bool, warm: bool
    ) -> int:
        self.pipe.scheduler = scheduler
        self.pipe.unet = self._unet_for(job, compile_shape)
        self.pipe.vae.decoder = self._decoder_for(job, compile_shape)
        # A process-wide flag, set under the queue lock: each engine's generations run with its
        # own setting even where two engines share a process (bench.worker).
        tuning = (job.batch_size, job.cfg_scale > 1, job.height // 8, job.width // 8)
        warming = warm or compile_shape
        torch.backends.cudnn.benchmark = self.cudnn_benchmark and (
            warming or tuning in self._warmed
        )
        self._set_job(
            job="scripts_txt2img",
            job_count=job.n_iter,
            job_no=0,
            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
            sampling_step=0,
            sampling_steps=job.steps,
            time_start=time.monotonic(),
        )
        seeds = job.seeds
        done = 0
        for batch in range(job.n_iter):
            if self._interrupted.is_set():
                break
            self._set_job(job_no=batch, sampling_step=0)
            batch_seeds = seeds[batch * job.batch_size : (batch + 1) * job.batch_size]
            pixels = self._render(job, batch_seeds)
            with self._state_lock:
                self.stats.generations += 1
                self.stats.images += len(batch_seeds)
            done += 1
            on_batch(batch, pixels, batch_seeds)
        if warming:
            self._warmed.add(tuning)
        return done

    def _render(self, job: Job, seeds: Sequence[int]) -> Pixels:
        count = len(seeds)
        self._current_batch = count
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        guided = job.cfg_scale > 1
        with torch.inference_mode():
            output = self.pipe(
                prompt=[job.prompt] * count,
                negative_prompt=[job.negative_prompt] * count if guided else None,
                width=job.width,
                height=job.height,
                num_inference_steps=job.steps,
                guidance_scale=job.cfg_scale,
                generator=generators,
                output_type="pt",
                callback_on_step_end=self._on_step,
            )
            images = output.images  # (batch, 3, h, w) in [0, 1], on the device
            # To bytes on the device: a quarter of the transfer of floats.
            pixels = (images * 255).round_().clamp_(0, 255).to(torch.uint8)
            result: Pixels = pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return result
