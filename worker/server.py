"""The worker's HTTP server: automatic1111's API routes on FastAPI + uvicorn (as automatic1111
itself), in front of one :class:`worker.engine.Engine`.

It listens at once and loads in the background: ``/sdapi/v1/sd-models`` and txt2img answer 503
until the model is loaded *and* one warm-up generation has run (with ``--compile``: one per
compiled shape), then 200. ``GET /health`` says the same without a credential, for a container
health check.

    python -m worker --tiny --port 7860                       # CPU, random tiny weights
    python -m worker --checkpoint /models/sd15.safetensors --listen --port 7860
    python -m worker --api --nowebui --listen --port 7860     # automatic1111's flags work too

Also read like automatic1111 does: ``COMMANDLINE_ARGS`` (appended to the arguments) and the
credential (``--api-auth user:pass``, else ``$WORKER_API_AUTH``, else ``$RENDERER_API_AUTH``,
the local stack's name for it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.exceptions import HTTPException

from worker.protocol import (
    JsonDict,
    ModelInfo,
    Txt2ImgRequest,
    error_body,
    make_info,
    make_infotext,
    pick_seed,
    progress_body,
)

if TYPE_CHECKING:  # torch and diffusers load in the background, after the port is open
    from worker.encode import EncoderPool, ImageFormat
    from worker.engine import Engine, Pixels

VERSION = "subconscious-worker 0.1"
AUTH_ENVS = ("WORKER_API_AUTH", "RENDERER_API_AUTH")
LOAD_FAILED_EXIT_CODE = 3
# automatic1111 flags that mean nothing here but may be on a provider's command line.
_A1111_NO_OP_FLAGS = (
    "--api",
    "--nowebui",
    "--skip-install",
    "--skip-torch-cuda-test",
    "--no-hashing",
    "--no-download-sd-model",
    "--xformers",
    "--opt-sdp-attention",
    "--no-half-vae",
    "--disable-safe-unpickle",
    "--skip-version-check",
)
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
        self.model = ModelInfo.from_checkpoint("loading", "0000000000")
        self.timings = Timings()
        self._rng = random.Random()
        self._options_lock = threading.Lock()
        self._options: JsonDict = {
            "sd_model_checkpoint": None,
            "sd_checkpoint_hash": None,
            "samples_format": "png",
            "jpeg_quality": 80,
            "enable_pnginfo": True,
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
        }

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
        _log(f"loading on {device} ({dtype}), torch {torch.__version__}")
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
        _log(
            f"loaded {checkpoint} ({kind}) in {self.timings.load_s:.1f}s; warming up "
            f"{', '.join(f'{s.width}x{s.height}x{s.batch}' for s in shapes)}"
            f"{' with torch.compile' if config.compile else ''}"
        )
        self.timings.warmup_s = engine.warm_up(warmups)
        self.engine = engine
        self.timings.ready_s = time.monotonic() - self.timings.started
        self.status = "ready"
        _log(
            f"ready in {self.timings.ready_s:.1f}s (warm-up "
            f"{', '.join(f'{s:.1f}s' for s in self.timings.warmup_s)}); "
            f"encoding on {self.encoder.threads} threads"
        )

    def load_or_exit(self) -> None:
        try:
            self.load()
        except Exception as exc:  # a worker without a model is of no use: let it be replaced
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
            _log(f"model load failed: {self.error}")
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
        checked = self._checked_settings(body)
        with self._options_lock:
            self._options.update(body)
            self._options.update(checked)

    def _checked_settings(self, settings: JsonDict) -> JsonDict:
        """The settings we act on, validated (automatic1111 raises on an unknown checkpoint);
        other keys are kept and ignored, as automatic1111 ignores unknown ones."""
        from worker.encode import FORMATS

        checked: JsonDict = {}
        if "sd_model_checkpoint" in settings:
            name = settings["sd_model_checkpoint"]
            if name not in self.model.aliases:
                raise RuntimeError(f"model {name!r} not found")
            checked["sd_model_checkpoint"] = self.model.title
        if "samples_format" in settings:
            fmt = str(settings["samples_format"]).lower()
            if fmt not in FORMATS:
                raise ValueError(f"samples_format must be one of {sorted(FORMATS)}")
            checked["samples_format"] = FORMATS[fmt]
        if "jpeg_quality" in settings:
            quality = settings["jpeg_quality"]
            if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
                raise ValueError("jpeg_quality must be an integer from 1 to 100")
            checked["jpeg_quality"] = quality
        return checked

    # ---- progress and interrupt

    def progress(self) -> JsonDict:
        if self.engine is None:
            return progress_body(
                {"job": "", "job_count": 0, "job_no": 0, "job_timestamp": "0",
                 "sampling_step": 0, "sampling_steps": 0, "time_start": 0.0, "interrupted": False},
                time.monotonic(),
            )  # fmt: skip
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
        settings = {**self.options(), **self._checked_settings(req.override_settings or {})}
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
        return {"images": images, "parameters": req.model_dump(), "info": json.dumps(info)}


# --------------------------------------------------------------------------- HTTP


def _a1111_error(exc: BaseException, status: int = 500) -> JSONResponse:
    detail = getattr(exc, "detail", "")
    headers = getattr(exc, "headers", None)
    return JSONResponse(
        error_body(type(exc).__name__, str(exc), detail if isinstance(detail, str) else ""),
        status_code=status,
        headers=headers,
    )


# Module-level: FastAPI resolves the (postponed) annotations of routes in the module's globals.
BasicCredentials = Annotated[HTTPBasicCredentials | None, Depends(HTTPBasic(auto_error=False))]


def create_app(worker: Worker, credentials: tuple[str, str] | None) -> FastAPI:
    app = FastAPI(title="subconscious worker (automatic1111 API)", docs_url=None, redoc_url=None)

    def authenticated(given: BasicCredentials) -> None:
        if credentials is None:
            return
        if given is None:
            raise HTTPException(401, "Not authenticated", {"WWW-Authenticate": "Basic"})
        # Both halves compared in constant time so neither leaks through timing.
        user_ok = secrets.compare_digest(given.username.encode(), credentials[0].encode())
        password_ok = secrets.compare_digest(given.password.encode(), credentials[1].encode())
        if not (user_ok and password_ok):
            raise HTTPException(
                401, "Incorrect username or password", {"WWW-Authenticate": "Basic"}
            )

    @app.middleware("http")
    async def errors_like_a1111(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # api_middleware: every exception becomes {"error", "detail", "body", "errors"}.
        started = time.monotonic()
        try:
            response = await call_next(request)
        except NotReady:
            response = JSONResponse({"detail": "model loading"}, status_code=503)
        except Exception as exc:
            from worker.engine import SamplerNotFound, WorkerOutOfMemory

            if isinstance(exc, WorkerOutOfMemory):
                response = JSONResponse(error_body("OutOfMemoryError", str(exc)), status_code=500)
            elif isinstance(exc, SamplerNotFound):
                not_found = HTTPException(404, "Sampler not found")
                response = _a1111_error(not_found, 404)
            else:
                response = _a1111_error(exc)
            _log(f"API error: {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        took_ms = (time.monotonic() - started) * 1000
        _log(f"{request.method} {request.url.path} {response.status_code} {took_ms:.1f}ms")
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _a1111_error(exc, exc.status_code)

    auth = [Depends(authenticated)]

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

    return app


def _log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} worker[{os.getpid()}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- entry point


def parse_credentials(value: str | None) -> tuple[str, str] | None:
    """``user:pass`` as automatic1111's --api-auth takes it; empty or unset means no auth."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep:
        raise ValueError("the API credential must look like user:password")
    return user, password


def _shapes(text: str) -> tuple[Shape, ...]:
    try:
        return tuple(Shape.parse(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _shape(text: str) -> Shape:
    try:
        return Shape.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="automatic1111's txt2img API on diffusers. Also reads COMMANDLINE_ARGS and "
        f"the credential from --api-auth or ${AUTH_ENVS[0]}.",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--checkpoint",
        "--ckpt",
        default=os.environ.get("WORKER_CHECKPOINT"),
        help="a .safetensors/.ckpt file, a diffusers folder or a hub id ($WORKER_CHECKPOINT)",
    )
    model.add_argument(
        "--tiny", action="store_true", help="tiny random weights on the CPU (tests, local stack)"
    )
    model.add_argument(
        "--model-kind",
        choices=("sd15", "sdxl"),
        default=None,
        help="architecture of a single-file checkpoint or of --tiny (default sd15)",
    )
    model.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet and VAE decoder for --compile-shapes at start (76 s per "
        "SD 1.5 shape on an H100, minutes for SDXL)",
    )
    speed.add_argument("--compile-mode", default=None, help="torch.compile mode (default inductor)")
    speed.add_argument(
        "--compile-shapes",
        type=_shapes,
        default=_shapes(os.environ.get("WORKER_COMPILE_SHAPES", "")),
        help="WxHxB,... the compiled models serve, other shapes run eager; implies --compile "
        "($WORKER_COMPILE_SHAPES; default: the --warmup shape)",
    )
    speed.add_argument(
        "--warmup", type=_shape, default=None, help="WxH[xB] of the warm-up (native size)"
    )
    speed.add_argument("--warmup-steps", type=_positive_int, default=2)
    speed.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="channels-last memory format for UNet and VAE (default off: slower on an H100)",
    )
    speed.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let cuDNN time its convolution algorithms per shape (CUDA only; default on)",
    )
    speed.add_argument("--encode-threads", type=_positive_int, default=None)
    speed.add_argument("--png-compress-level", type=int, choices=range(10), default=6)
    speed.add_argument("--torch-threads", type=_positive_int, default=None)
    server = parser.add_argument_group("server")
    server.add_argument("--port", type=int, default=7860)
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--listen", action="store_true", help="bind 0.0.0.0 (automatic1111's)")
    server.add_argument("--api-auth", default=None, help="user:password for HTTP Basic auth")
    server.add_argument(
        "--exit-with-parent", action="store_true", help="exit when the launching process dies"
    )
    faults = parser.add_argument_group("fault injection (tests)")
    faults.add_argument(
        "--oom-above-batch",
        type=int,
        default=None,
        help="raise CUDA's out-of-memory error inside the UNet for larger batches",
    )
    for flag in _A1111_NO_OP_FLAGS:
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = list(sys.argv[1:] if argv is None else argv)
    args += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    namespace = build_arg_parser().parse_args(args)
    if not namespace.tiny and not namespace.checkpoint:
        build_arg_parser().error("give --checkpoint (or $WORKER_CHECKPOINT), or --tiny")
    return namespace


def config_from(args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        checkpoint=args.checkpoint,
        tiny=args.tiny,
        model_kind=args.model_kind,
        device="cpu" if args.tiny and args.device == "auto" else args.device,
        compile=args.compile or bool(args.compile_shapes),
        compile_mode=args.compile_mode,
        compile_shapes=args.compile_shapes,
        warmup=args.warmup,
        warmup_steps=args.warmup_steps,
        channels_last=args.channels_last,
        cudnn_benchmark=args.cudnn_benchmark,
        encode_threads=args.encode_threads,
        png_compress_level=args.png_compress_level,
        # Tiny models are all overhead: one thread each beats threads fighting over 2 cores.
        torch_threads=args.torch_threads or (1 if args.tiny else None),
        oom_above_batch=args.oom_above_batch,
    )


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    _log("parent process gone: exiting")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        credentials = parse_credentials(
            args.api_auth or next((os.environ[e] for e in AUTH_ENVS if os.environ.get(e)), None)
        )
    except ValueError as exc:
        _log(str(exc))
        return 2
    worker = Worker(config_from(args))
    host = "0.0.0.0" if args.listen else args.host  # noqa: S104 (a rented machine's API)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(worker, credentials),
            host=host,
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    threading.Thread(target=worker.load_or_exit, name="load", daemon=True).start()
    _log(f"listening on http://{host}:{args.port} auth={'on' if credentials else 'off'}")
    server.run()
    worker.interrupt()
    _log("stopped")
    sys.stderr.flush()
    # Generations and loads run in threads that would hold the interpreter open.
    os._exit(0)
