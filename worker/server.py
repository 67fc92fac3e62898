"""The worker's HTTP server: automatic1111's API routes on FastAPI + uvicorn (as automatic1111
itself), in front of one :class:`worker.engine.Engine`.

It listens at once and loads in the background: ``/sdapi/v1/sd-models`` and txt2img answer 503
until the model is loaded *and* one warm-up generation has run (with ``--compile``: one per
compiled shape), then 200. ``GET /health`` says the same without a credential, for a container
health check.

What the routes say (request model, ``info``, errors, auth) is :mod:`worker.protocol`, shared
with the local stack's placeholder; the command line that starts it is :mod:`worker.cli`.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from worker.protocol import (
    BASIC_CHALLENGE,
    LOADING_BODY,
    NO_HASH,
    JsonDict,
    ModelInfo,
    Txt2ImgRequest,
    basic_auth_failure,
    check_settings,
    default_options,
    error_body,
    exception_body,
    idle_job,
    make_info,
    make_infotext,
    pick_seed,
    progress_body,
    txt2img_body,
)

if TYPE_CHECKING:  # torch and diffusers load in the background, after the port is open
    from worker.encode import EncoderPool, ImageFormat
    from worker.engine import Engine, Pixels

VERSION = "subconscious-worker 0.1"
LOAD_FAILED_EXIT_CODE = 3
CHECKPOINT_FILES = (".safetensors", ".ckpt")
_SHAPE = re.compile(r"^(\d+)x(\d+)(?:x(\d+))?$")

Status = Literal["loading", "ready", "failed"]


class NotReady(Exception):
    """The model is not loaded yet (or failed to load)."""


@dataclass(frozen=True)
class Shape:
    width: int
    height: int
    batch: int = 1

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``WIDTHxHEIGHT`` or ``WIDTHxHEIGHTxBATCH``."""
        match = _SHAPE.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not WIDTHxHEIGHT[xBATCH]")
        width, height, batch = int(match[1]), int(match[2]), int(match[3] or 1)
        if width % 8 or height % 8 or not (64 <= width <= 2048 and 64 <= height <= 2048):
            raise ValueError(f"{text!r}: sides must be multiples of 8 between 64 and 2048")
        if batch < 1:
            raise ValueError(f"{text!r}: batch must be >= 1")
        return cls(width, height, batch)


@dataclass(frozen=True)
class WorkerConfig:
    checkpoint: str | None = None
    tiny: bool = False
    model_kind: Literal["sd15", "sdxl"] | None = None
    device: str = "auto"
    compile: bool = False
    compile_mode: str | None = None
    compile_shapes: tuple[Shape, ...] = ()
    warmup: Shape | None = None
    warmup_steps: int = 2
    # channels-last made the eager UNet 23 % slower on an H100 (docs/benchmarks.md): off
    channels_last: bool = False
    # cuDNN times its convolution algorithms once per shape (the warm-up pays it)
    cudnn_benchmark: bool = True
    encode_threads: int | None = None
    png_compress_level: int = 6
    torch_threads: int | None = None
    oom_above_batch: int | None = None


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    load_s: float | None = None
    warmup_s: list[float] = field(default_factory=list)
    ready_s: float | None = None


class Worker:
    """Everything the routes call; one per process."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.status: Status = "loading"
        self.error = ""
        self.engine: Engine | None = None
        self.encoder: EncoderPool | None = None
        self.model = ModelInfo.from_checkpoint("loading", NO_HASH)
        self.timings = Timings()
        self._rng = random.Random()
        self._options_lock = threading.Lock()
        self._options: JsonDict = default_options(None)

    # ---- loading

    def load(self) -> None:
        """Build the pipeline, then warm up; ``status`` turns "ready" only after both."""
        # Their import-time chatter (optional torchvision, dtype notes) is not ours to act on.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        checkpoint = self.config.checkpoint
        if checkpoint and checkpoint.endswith(CHECKPOINT_FILES) and not Path(checkpoint).is_file():
            raise FileNotFoundError(checkpoint)  # before seconds of imports
        import torch

        from worker.encode import EncoderPool
        from worker.engine import Engine, Job
        from worker.pipelines import build_random, load_checkpoint, model_kind

        config = self.config
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        if config.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(config.device)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        log(f"loading on {device} ({dtype}), torch {torch.__version__}")
        if config.tiny:
            kind = config.model_kind or "sd15"
            pipe = build_random(kind, "tiny", device=device, dtype=dtype)
            checkpoint = f"tiny-random-{kind}"
        else:
            assert checkpoint is not None
            pipe = load_checkpoint(checkpoint, config.model_kind, device=device, dtype=dtype)
            kind = model_kind(pipe)
        self.timings.load_s = time.monotonic() - self.timings.started
        channels_last = config.channels_last
        engine = Engine(
            pipe,
            compile_unet=config.compile,
            compile_mode=config.compile_mode,
            channels_last=channels_last,
            cudnn_benchmark=config.cudnn_benchmark and device.type == "cuda",
            oom_above_batch=config.oom_above_batch,
        )
        short_hash = hashlib.sha256(checkpoint.encode()).hexdigest()[:10]
        self.model = ModelInfo.from_checkpoint(checkpoint, short_hash)
        with self._options_lock:
            self._options["sd_model_checkpoint"] = self.model.title
        self.encoder = EncoderPool(config.encode_threads)
        native = 64 if config.tiny else (1024 if kind == "sdxl" else 512)
        shapes = list(config.compile_shapes) or [config.warmup or Shape(native, native)]
        warmups = [
            Job(
                prompt="warm-up",
                seed=1,
                width=s.width,
                height=s.height,
                steps=config.warmup_steps,
                batch_size=s.batch,
            )
            for s in shapes
        ]
        log(
            f"loaded {checkpoint} ({kind}) in {self.timings.load_s:.1f}s; warming up "
            f"{', '.join(f'{s.width}x{s.height}x{s.batch}' for s in shapes)}"
            f"{' with torch.compile' if config.compile else ''}"
        )
        self.timings.warmup_s = engine.warm_up(warmups)
        self.engine = engine
        self.timings.ready_s = time.monotonic() - self.timings.started
        self.status = "ready"
        log(
            f"ready in {self.timings.ready_s:.1f}s (warm-up "
            f"{', '.join(f'{s:.1f}s' for s in self.timings.warmup_s)}); "
            f"encoding on {self.encoder.threads} threads"
        )

    def load_or_exit(self) -> None:
        try:
            self.load()
        except Exception as exc:  # a worker without a model is of no use: let it be replaced
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log(f"model load failed: {self.error}")
            sys.stderr.flush()
            os._exit(LOAD_FAILED_EXIT_CODE)

    def _ready_engine(self) -> tuple[Engine, EncoderPool]:
        if self.status != "ready" or self.engine is None or self.encoder is None:
            raise NotReady(self.status)
        return self.engine, self.encoder

    # ---- metadata

    def sd_models(self) -> list[JsonDict]:
        self._ready_engine()
        return [self.model.listing()]

    def options(self) -> JsonDict:
        with self._options_lock:
            return dict(self._options)

    def set_options(self, body: JsonDict) -> None:
        checked = check_settings(body, self.model)
        with self._options_lock:
            self._options.update(body)
            self._options.update(checked)

    # ---- progress and interrupt

    def progress(self) -> JsonDict:
        if self.engine is None:
            return progress_body(idle_job(), time.monotonic())
        return progress_body(self.engine.progress(), time.monotonic())

    def interrupt(self) -> None:
        if self.engine is not None:
            self.engine.interrupt()

    def stats(self) -> JsonDict:
        engine = self.engine
        return {
            "status": self.status,
            "version": VERSION,
            "model": self.model.title,
            "compiled": bool(engine and engine.compiled),
            "compiled_shapes": [list(s) for s in engine.compiled_shapes] if engine else [],
            "load_s": self.timings.load_s,
            "warmup_s": self.timings.warmup_s,
            "ready_s": self.timings.ready_s,
            "encode_threads": self.encoder.threads if self.encoder else None,
            **(vars(engine.stats) if engine else {}),
        }

    # ---- txt2img

    def txt2img(self, req: Txt2ImgRequest) -> JsonDict:
        from worker.engine import Job

        engine, encoder = self._ready_engine()
        settings = {**self.options(), **check_settings(req.override_settings or {}, self.model)}
        fmt: ImageFormat = settings["samples_format"]
        quality = int(settings["jpeg_quality"])
        with_info = bool(settings.get("enable_pnginfo", True))
        seed = pick_seed(req.seed, self._rng)
        subseed = pick_seed(req.subseed, self._rng)
        job = Job(
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            seed=seed,
            width=req.width,
            height=req.height,
            steps=req.steps,
            batch_size=req.batch_size,
            n_iter=req.n_iter,
            cfg_scale=req.cfg_scale,
            sampler=req.sampler,
        )
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        infotexts: list[str] = []
        futures: list[Future[str]] = []

        def on_batch(_index: int, pixels: Pixels, seeds: list[int]) -> None:
            # Encoding goes to the pool: the engine moves on to the next batch (or, once this
            # request's last batch is out, to the next request) while it runs.
            for k, image_seed in enumerate(seeds):
                infotext = make_infotext(req, image_seed, self.model)
                infotexts.append(infotext)
                if req.send_images:
                    futures.append(
                        encoder.submit(
                            pixels[k],
                            fmt,
                            infotext=infotext if with_info else "",
                            quality=quality,
                            png_compress_level=self.config.png_compress_level,
                        )
                    )

        engine.generate(job, on_batch)
        images = [f.result() for f in futures]
        info = make_info(
            req,
            seed=seed,
            subseed=subseed,
            model=self.model,
            infotexts=infotexts,
            job_timestamp=stamp,
            version=VERSION,
        )
        return txt2img_body(req, images, info)


# --------------------------------------------------------------------------- HTTP


def _a1111_error(exc: BaseException, status: int = 500) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse(exception_body(exc), status_code=status, headers=headers)


def _authenticator(credentials: tuple[str, str] | None) -> Callable[[Request], None]:
    """The dependency every automatic1111 route has: ``--api-auth``'s HTTP Basic check."""

    def authenticated(request: Request) -> None:
        if credentials is None:
            return
        failure = basic_auth_failure(request.headers.get("Authorization"), credentials)
        if failure is not None:
            raise HTTPException(401, failure, BASIC_CHALLENGE)

    return authenticated


def _error_response(exc: Exception) -> JSONResponse:
    """api_middleware: every exception becomes {"error", "detail", "body", "errors"}."""
    from worker.engine import SamplerNotFound, WorkerOutOfMemory

    if isinstance(exc, WorkerOutOfMemory):
        return JSONResponse(error_body("OutOfMemoryError", str(exc)), status_code=500)
    if isinstance(exc, SamplerNotFound):
        return _a1111_error(HTTPException(404, "Sampler not found"), 404)
    return _a1111_error(exc)


def create_app(worker: Worker, credentials: tuple[str, str] | None) -> FastAPI:
    app = FastAPI(title="subconscious worker (automatic1111 API)", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def errors_like_a1111(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        try:
            response = await call_next(request)
        except NotReady:
            response = JSONResponse(LOADING_BODY, status_code=503)
        except Exception as exc:
            response = _error_response(exc)
            log(f"API error: {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        took_ms = (time.monotonic() - started) * 1000
        log(f"{request.method} {request.url.path} {response.status_code} {took_ms:.1f}ms")
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _a1111_error(exc, exc.status_code)

    _add_routes(app, worker, [Depends(_authenticator(credentials))])
    return app


def _add_routes(app: FastAPI, worker: Worker, auth: list[Any]) -> None:
    """automatic1111's routes (behind ``auth``), the health check and the worker's stats."""

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": worker.status}, 200 if worker.status == "ready" else 503)

    @app.get("/sdapi/v1/sd-models", dependencies=auth)
    def sd_models() -> list[JsonDict]:
        return worker.sd_models()

    @app.get("/sdapi/v1/options", dependencies=auth)
    def get_options() -> JsonDict:
        return worker.options()

    @app.post("/sdapi/v1/options", dependencies=auth)
    def set_options(body: dict[str, Any]) -> None:
        worker.set_options(body)

    @app.get("/sdapi/v1/progress", dependencies=auth)
    def progress(skip_current_image: bool = False) -> JsonDict:
        return worker.progress()

    @app.post("/sdapi/v1/interrupt", dependencies=auth)
    def interrupt() -> None:
        worker.interrupt()

    @app.post("/sdapi/v1/txt2img", dependencies=auth)
    def txt2img(req: Txt2ImgRequest) -> JsonDict:
        return worker.txt2img(req)

    @app.get("/worker/v1/stats", dependencies=auth)
    def stats() -> JsonDict:
        return worker.stats()


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} worker[{os.getpid()}] {message}", file=sys.stderr, flush=True)
