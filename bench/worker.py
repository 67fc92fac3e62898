"""Images/s of the lean worker against an automatic1111-style path, in the same run.

    python -m bench.worker --device cuda --out worker.json     # on a GPU (see worker_gpu.sh)
    python -m bench.worker --tiny --device cpu --steps 2       # anywhere: tiny model, no claims

Three paths, each end to end (UNet + VAE decode + PNG encoding + base64), through the worker's
own engine and encoder:

- ``a1111``: automatic1111's shape of work: eager PyTorch (fp16, SDPA attention, cuDNN's
  heuristic convolution algorithms), and each batch's PNGs encoded one after another in the
  request thread before the next batch starts.
- ``lean``: the worker, eager, as it serves by default: cuDNN's autotuner on
  (``--no-cudnn-benchmark`` turns it off), PNGs encoded in a thread pool while the GPU renders
  the next batch.
- ``compiled``: ``lean`` with the UNet and the VAE decoder compiled by ``torch.compile``
  (inductor's default mode unless ``--compile-mode``; ``--inductor`` sets inductor options)
  for that one shape; the compile time is reported apart and left out of images/s.

The pipelines are the real SD 1.5 and SDXL architectures (``worker.configs.FULL``) with random
weights: no weights can be downloaded on the benchmark machine, and the arithmetic per image
is the same. Text encoding is included. Set-up matches ``h100-sd-throughput.jsonl``: fp16,
Euler, classifier-free guidance, 20 steps, SD 1.5 at 512² and SDXL at 1024².

Each (model, batch, path) runs one untimed warm-up generation (2 steps; for ``compiled`` it is
the compile), then ``--iters`` timed ones. ``encode_wait_ms_per_image`` is the time the path
waited on encoding: all of it for ``a1111``, only the tail the GPU did not hide for the others.
``decode_s_per_batch`` times the path's VAE decoder alone on one batch of latents, to show
where a batch's GPU time goes.
The JSON file is rewritten after each, so a run cut short keeps what it measured; ``--budget-s``
skips what would not finish in time (compiles first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PATHS = ("a1111", "lean", "compiled")
# Rough seconds to compile the UNet and VAE decoder once (H100: 76 s SD 1.5; SDXL's UNet alone
# 197 s), padded: what --budget-s reserves before starting a compile.
COMPILE_ESTIMATE_S = {"sd15": 100.0, "sdxl": 300.0}
DEFAULT_ITERS = {"sd15": 3, "sdxl": 2}


@dataclass
class Result:
    model: str
    batch: int
    path: str
    side: int
    steps: int
    iters: int
    images: int
    wall_s: float
    images_per_s: float
    generate_s_per_batch: float
    encode_wait_ms_per_image: float
    png_kb_per_image: float
    warmup_s: float
    all_black_batch: bool
    peak_mem_gib: float | None
    compile_s: float | None = None
    decode_s_per_batch: float | None = None


def _log(message: str) -> None:
    print(f"[bench.worker {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _parse_compile(text: str) -> set[tuple[str, int]]:
    if text.strip().lower() in ("", "none"):
        return set()
    pairs = set()
    for part in text.split(","):
        model, _, batch = part.strip().partition(":")
        if model not in ("sd15", "sdxl") or not batch.isdigit():
            raise argparse.ArgumentTypeError(f"{part!r} is not MODEL:BATCH (sd15:16)")
        pairs.add((model, int(batch)))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (CPU smoke run)")
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--batches", default="16,8,1", help="in the order they run")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--iters", type=int, default=None, help="timed batches (sd15 3, sdxl 2)")
    parser.add_argument("--side", type=int, default=None, help="default 512 / 1024 (tiny: 64)")
    parser.add_argument(
        "--compile",
        type=_parse_compile,
        default=None,
        help="MODEL:BATCH,... to compile (default sd15:16,sdxl:8 on CUDA; none on the CPU)",
    )
    parser.add_argument(
        "--compile-mode", default=None, help="torch.compile mode (default inductor)"
    )
    parser.add_argument(
        "--inductor",
        default="",
        help="inductor options to turn on before compiling, e.g. "
        "conv_1x1_as_mm,coordinate_descent_tuning",
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cuDNN's autotuner for the lean paths (the a1111 path never has it)",
    )
    parser.add_argument("--encode-threads", type=int, default=8)
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="lean paths in channels_last memory format (measured slower on an H100: off)",
    )
    parser.add_argument("--budget-s", type=float, default=360.0)
    parser.add_argument("--out", type=Path, default=Path("worker-bench.json"))
    parser.add_argument(
        "--append",
        action="store_true",
        help="add to --out's results (one process per path: cuDNN's algorithm cache is "
        "process-wide, so a path run after another reuses its choices)",
    )
    return parser


class Bench:
    def __init__(self, args: argparse.Namespace, argv: list[str] | None = None) -> None:
        import torch

        self.args = args
        self.torch = torch
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.float16 if self.cuda else torch.float32
        self.started = time.monotonic()
        self.results: list[Result] = []
        self.skipped: list[str] = []
        earlier: list[list[str]] = []
        if args.append and args.out.exists():
            body = json.loads(args.out.read_text(encoding="utf-8"))
            self.results = [Result(**row) for row in body["results"]]
            self.skipped = list(body["skipped"])
            earlier = [*body["meta"].get("earlier_processes", []), body["meta"]["argv"]]
        self.meta: dict[str, Any] = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(self.device) if self.cuda else platform.machine(),
            "dtype": str(self.dtype),
            "weights": "random, tiny architectures"
            if args.tiny
            else "random, real SD 1.5 / SDXL architectures (same arithmetic as the real models)",
            "steps": args.steps,
            "sampler": "Euler",
            "cfg_scale": 7.0,
            "encode_threads": args.encode_threads,
            "compile_mode": args.compile_mode or "default",
            "compiled": "UNet and VAE decoder",
            "inductor": [o for o in args.inductor.split(",") if o],
            "lean_cudnn_benchmark": self.cuda and args.cudnn_benchmark,
            "png_compress_level": 6,
            "argv": sys.argv[1:] if argv is None else list(argv),
            "earlier_processes": earlier,
        }
        try:
            import diffusers

            self.meta["diffusers"] = diffusers.__version__
        except ImportError:  # pragma: no cover - the engine import below would fail first
            pass

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def save(self) -> None:
        body = {
            "meta": {**self.meta, "elapsed_s": round(self.elapsed(), 1)},
            "results": [asdict(r) for r in self.results],
            "ratios": self.ratios(),
            "skipped": self.skipped,
        }
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
        tmp.replace(self.args.out)

    def ratios(self) -> list[dict[str, Any]]:
        rows = []
        by_key = {(r.model, r.batch, r.path): r for r in self.results}
        for (model, batch, path), result in by_key.items():
            base = by_key.get((model, batch, "a1111"))
            if path == "a1111" or base is None:
                continue
            rows.append(
                {
                    "model": model,
                    "batch": batch,
                    "path": path,
                    "vs_a1111": round(result.images_per_s / base.images_per_s, 3),
                }
            )
        return rows

    # ---- one model

    def run_model(self, model: str) -> None:
        from worker.engine import Engine
        from worker.pipelines import build_random

        args = self.args
        side = args.side or (64 if args.tiny else (1024 if model == "sdxl" else 512))
        iters = args.iters or DEFAULT_ITERS[model]
        compile_set = args.compile
        if compile_set is None:
            compile_set = {("sd15", 16), ("sdxl", 8)} if self.cuda else set()
        paths = [p for p in args.paths.split(",") if p]
        batches = [int(b) for b in args.batches.split(",") if b]
        start = time.monotonic()
        pipe = build_random(
            model,  # type: ignore[arg-type]
            "tiny" if args.tiny else "full",
            device=self.device,
            dtype=self.dtype,
        )
        params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
        _log(f"{model}: built in {time.monotonic() - start:.1f}s (UNet {params:,.1f} M params)")
        engines: dict[str, Any] = {
            "a1111": Engine(pipe),
            "lean": Engine(pipe, cudnn_benchmark=self.cuda and args.cudnn_benchmark),
        }
        for batch in batches:
            for path in paths:
                if path == "compiled" and (model, batch) not in compile_set:
                    continue
                if self.elapsed() > args.budget_s:
                    self.skip(f"{model} b{batch} {path}: over --budget-s")
                    continue
                if path == "compiled":
                    if self.elapsed() + COMPILE_ESTIMATE_S[model] > args.budget_s:
                        self.skip(f"{model} b{batch} compiled: a compile would pass --budget-s")
                        continue
                    self._channels_last(pipe, self.cuda and args.channels_last)
                    if "compiled" not in engines:
                        self._inductor_options()
                        engines["compiled"] = Engine(
                            pipe,
                            compile_unet=True,
                            compile_mode=args.compile_mode,
                            cudnn_benchmark=self.cuda and args.cudnn_benchmark,
                        )
                else:
                    self._channels_last(pipe, self.cuda and args.channels_last and path == "lean")
                engine = engines[path]
                result = self.measure(engine, model, batch, path, side, iters)
                self.results.append(result)
                self.save()
                _log(
                    f"{model} {side}² b{batch:<2} {path:<8} {result.images_per_s:7.3f} images/s "
                    f"(gen {result.generate_s_per_batch:.3f}s/batch, encode wait "
                    f"{result.encode_wait_ms_per_image:.1f} ms/image, "
                    f"decode {result.decode_s_per_batch:.3f}s, "
                    f"{result.png_kb_per_image:.0f} KB/PNG"
                    + (f", compile {result.compile_s:.0f}s" if result.compile_s else "")
                    + ")"
                )
        del pipe, engines
        if self.cuda:
            self.torch.cuda.empty_cache()

    def skip(self, what: str) -> None:
        self.skipped.append(what)
        _log(f"skipped {what}")
        self.save()

    def _inductor_options(self) -> None:
        import torch._inductor.config as inductor

        for name in [o for o in self.args.inductor.split(",") if o]:
            if not hasattr(inductor, name):
                raise SystemExit(f"--inductor: torch {self.torch.__version__} has no {name!r}")
            setattr(inductor, name, True)

    def _time_decode(self, engine: Any, job: Any) -> float:
        """Seconds the engine's VAE decoder takes for one batch of ``job``'s latents."""
        torch = self.torch
        pipe = engine.pipe
        pipe.vae.decoder = engine._decoder_for(job, compile_shape=False)
        latents = torch.randn(
            job.batch_size, 4, job.height // 8, job.width // 8, device=self.device, dtype=self.dtype
        )
        took = []
        with torch.inference_mode():
            for _ in range(3):
                self._sync()
                t0 = time.perf_counter()
                pipe.vae.decode(latents, return_dict=False)
                self._sync()
                took.append(time.perf_counter() - t0)
        return min(took)

    def _channels_last(self, pipe: Any, on: bool) -> None:
        fmt = self.torch.channels_last if on else self.torch.contiguous_format
        pipe.unet.to(memory_format=fmt)
        pipe.vae.to(memory_format=fmt)

    # ---- one measurement

    def measure(
        self, engine: Any, model: str, batch: int, path: str, side: int, iters: int
    ) -> Result:
        from worker.encode import EncoderPool, encode_b64
        from worker.engine import Job, Pixels

        torch = self.torch
        steps = self.args.steps

        def job(seed: int, job_steps: int) -> Job:
            return Job(
                prompt="a lighthouse on a cliff at dawn, oil painting",
                negative_prompt="blurry",
                seed=seed,
                width=side,
                height=side,
                steps=job_steps,
                batch_size=batch,
                cfg_scale=7.0,
                sampler="Euler",
            )

        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        engine.generate(job(1, 2), _discard, compile_shape=True)
        self._sync()
        warmup_s = time.perf_counter() - start

        generate_s = 0.0
        encode_s = 0.0
        sizes: list[int] = []
        nonfinite = False
        infotext = (
            f"a lighthouse\nSteps: {steps}, Sampler: Euler, CFG scale: 7, Size: {side}x{side}"
        )
        pool = EncoderPool(self.args.encode_threads) if path != "a1111" else None
        futures: list[Future[str]] = []

        def encode_now(_index: int, pixels: Pixels, seeds: list[int]) -> None:
            nonlocal encode_s, nonfinite
            nonfinite = nonfinite or not pixels.any()
            t0 = time.perf_counter()
            for k in range(len(seeds)):
                sizes.append(len(encode_b64(pixels[k], "png", infotext=infotext)))
            encode_s += time.perf_counter() - t0

        def encode_later(_index: int, pixels: Pixels, seeds: list[int]) -> None:
            nonlocal nonfinite
            nonfinite = nonfinite or not pixels.any()
            assert pool is not None
            futures.extend(
                pool.submit(pixels[k], "png", infotext=infotext) for k in range(len(seeds))
            )

        on_batch: Callable[[int, Pixels, list[int]], None] = (
            encode_now if path == "a1111" else encode_later
        )
        wall_start = time.perf_counter()
        for i in range(iters):
            t0 = time.perf_counter()
            engine.generate(job(1000 * (i + 1), steps), on_batch)
            generate_s += time.perf_counter() - t0
        if futures:
            t0 = time.perf_counter()
            sizes.extend(len(f.result()) for f in futures)
            encode_s = time.perf_counter() - t0  # only the tail the GPU did not hide
        wall = time.perf_counter() - wall_start
        if pool is not None:
            pool.shutdown()
        decode_s = self._time_decode(engine, job(1, steps))
        images = iters * batch
        gen_only = generate_s - (encode_s if path == "a1111" else 0.0)
        return Result(
            model=model,
            batch=batch,
            path=path,
            side=side,
            steps=steps,
            iters=iters,
            images=images,
            wall_s=round(wall, 4),
            images_per_s=round(images / wall, 4),
            generate_s_per_batch=round(gen_only / iters, 4),
            encode_wait_ms_per_image=round(1000 * encode_s / images, 2),
            png_kb_per_image=round(sum(sizes) * 3 / 4 / len(sizes) / 1024, 1) if sizes else 0.0,
            warmup_s=round(warmup_s, 2),
            all_black_batch=nonfinite,
            peak_mem_gib=round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
            if self.cuda
            else None,
            compile_s=round(warmup_s, 1) if path == "compiled" else None,
            decode_s_per_batch=round(decode_s, 4),
        )

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)


def _discard(_index: int, _pixels: Any, _seeds: list[int]) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bench = Bench(args, argv)
    if not bench.cuda:
        bench.torch.set_num_threads(1)
    _log(f"{bench.meta['device']}, torch {bench.meta['torch']}, out {args.out}")
    bench.save()
    for model in [m for m in args.models.split(",") if m]:
        if bench.elapsed() > args.budget_s:
            bench.skip(f"{model}: over --budget-s")
            continue
        bench.run_model(model)
    for row in bench.ratios():
        _log(f"{row['model']} b{row['batch']} {row['path']} / a1111 = {row['vs_a1111']:.2f}")
    _log(f"done in {bench.elapsed():.0f}s")
    bench.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
