"""A placeholder automatic1111 server: the API subset our backend calls, drawing stand-in PNGs.

It follows AUTOMATIC1111/stable-diffusion-webui (modules/api/api.py) closely enough for the
backend's client to run unchanged against it: Basic auth like ``--api-auth``, one generation at a
time behind a queue lock, the ``api_middleware`` error shape, FastAPI-style 422 validation, and
PNGs that carry their infotext in a ``parameters`` tEXt chunk. Fault knobs on the command line
let the local stack rehearse the failures a rented GPU produces: slow model loads, crashes,
random errors, CUDA out-of-memory on big batches, a machine that dies on its first
generation, and prompts that always fail (an HTTP 500) or always kill the process.

What it says is :mod:`worker.protocol`, the module the GPU worker's server speaks too (request
model and validation, ``info`` and infotext, model listing, options, progress, error bodies,
Basic auth); this module only draws the images, keeps the time and injects the faults.

    python -m infra.local.renderer --port 7860 [--startup-delay-s 2] [--crash-after-images 10]
        [--crash-on-call] [--fail-prompt TEXT] [--crash-prompt TEXT]
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import math
import os
import random
import signal
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from infra.local.http_base import MethodHandler
from worker.protocol import (
    BASIC_CHALLENGE,
    LOADING_BODY,
    JsonDict,
    ModelInfo,
    RequestInvalid,
    Txt2ImgRequest,
    basic_auth_failure,
    check_settings,
    default_options,
    exception_body,
    idle_job,
    make_info,
    make_infotext,
    parse_credentials,
    parse_json_body,
    parse_options_body,
    parse_txt2img,
    pick_seed,
    progress_body,
    txt2img_body,
)

DEFAULT_MODEL_TITLE = "sd15-placeholder.safetensors [0000000000]"
PLACEHOLDER_SHA256 = "0" * 64
VERSION = "placeholder"
AUTH_ENV = "RENDERER_API_AUTH"
CRASH_EXIT_CODE = 17
MAX_BODY_BYTES = 8 * 1024 * 1024
# Short slices let an interrupt cut a batch short and keep progress's sampling_step moving.
SLEEP_SLICE_S = 0.01


# --------------------------------------------------------------------------- errors


CUDA_OUT_OF_MEMORY = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity; 20.12 GiB "
    "already allocated; 1.20 GiB free; 21.00 GiB reserved in total by PyTorch) If reserved "
    "memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.  See "
    "documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF"
)


class ApiError(Exception):
    """An answer other than 200 that the handler sends as-is."""

    def __init__(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = headers or {}


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError so the error shape says "OutOfMemoryError"."""


class HTTPException(Exception):
    """Named like FastAPI's: api_middleware reports the class name, so it must match."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{int(status)}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers or {}


# --------------------------------------------------------------------------- drawing


@functools.cache
def _font() -> ImageFont.ImageFont:
    # Pillow's classic bitmap default: about twenty times faster to draw than the FreeType
    # default, which matters at one label per image.
    return ImageFont.load_default_imagefont()


@functools.cache
def _font_metrics() -> tuple[int, int]:
    """Glyph width and line height, measured once so wrapping never measures per call."""
    font = _font()
    sample = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    width = max(1, math.ceil(font.getlength(sample) / len(sample)))
    _, top, _, bottom = font.getbbox("Hgjy|")
    return width, max(1, math.ceil(bottom - top) + 2)


def _drawable(text: str) -> str:
    # The bitmap font can only encode latin-1; anything else would raise mid-draw.
    return text.encode("latin-1", "replace").decode("latin-1")


def build_png(prompt: str, seed: int, width: int, height: int, infotext: str) -> bytes:
    """A width x height RGB PNG whose colours and pattern follow the seed, labelled with the
    prompt and seed, carrying ``infotext`` in a "parameters" text chunk as automatic1111 does.

    Pure function of its arguments: the same inputs give the same bytes.
    """
    rng = random.Random(seed)
    background = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    _draw_pattern(draw, rng, width, height, background)
    _draw_label(draw, prompt, seed, width, height, background)

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    out = io.BytesIO()
    # Flat colour compresses almost as well with run-length matching, at a fraction of the time.
    image.save(out, format="PNG", pnginfo=info, compress_level=1, compress_type=zlib.Z_RLE)
    return out.getvalue()


def _shade(colour: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    r, g, b = colour
    shift = rng.choice((-1, 1)) * rng.randrange(40, 110)
    return (
        max(0, min(255, r + shift)),
        max(0, min(255, g - shift // 2)),
        max(0, min(255, b + shift // 3)),
    )


def _draw_pattern(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    width: int,
    height: int,
    background: tuple[int, int, int],
) -> None:
    # Only axis-aligned shapes: PNG filters turn them into long zero runs, which keeps
    # encoding near 3 ms at 512x512 where diagonals or curves cost twice that.
    style = rng.randrange(3)
    if style == 0:  # bands, horizontal or vertical
        count = rng.randrange(3, 9)
        vertical = rng.random() < 0.5
        extent = width if vertical else height
        step = max(2, extent // count)
        thickness = max(1, step // rng.randrange(2, 4))
        for start in range(rng.randrange(step), extent, step):
            box = (
                (start, 0, start + thickness - 1, height)
                if vertical
                else (0, start, width, start + thickness - 1)
            )
            draw.rectangle(box, fill=_shade(background, rng))
    elif style == 1:  # checkerboard
        cell = max(max(width, height) // 16, min(width, height) // rng.randrange(3, 9))
        fill = _shade(background, rng)
        for row, y in enumerate(range(0, height, cell)):
            for col, x in enumerate(range(0, width, cell)):
                if (row + col) % 2:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=fill)
    else:  # overlapping rectangles
        for _ in range(rng.randrange(4, 10)):
            x0, y0 = rng.randrange(width), rng.randrange(height)
            x1 = x0 + rng.randrange(width // 8, width // 2 + 1)
            y1 = y0 + rng.randrange(height // 8, height // 2 + 1)
            draw.rectangle((x0, y0, x1, y1), fill=_shade(background, rng))


def _draw_label(
    draw: ImageDraw.ImageDraw,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    background: tuple[int, int, int],
) -> None:
    char_w, line_h = _font_metrics()
    margin = 6
    columns = max(4, (width - 4 * margin) // char_w)
    max_lines = max(1, min(12, (height - 4 * margin) // line_h - 1))
    lines = textwrap.wrap(prompt, width=columns, max_lines=max_lines, placeholder="...")
    lines = lines or ["(empty prompt)"]
    lines.append(f"seed {seed}")
    panel_h = 2 * margin + line_h * len(lines)
    panel_w = min(width - 2 * margin, 2 * margin + char_w * max(len(line) for line in lines))
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    ink, paper = ((0, 0, 0), (255, 255, 255)) if luminance < 128 else ((255, 255, 255), (0, 0, 0))
    draw.rectangle([margin, margin, margin + panel_w, margin + panel_h], fill=paper)
    for i, line in enumerate(lines):
        draw.text((2 * margin, 2 * margin + i * line_h), _drawable(line), fill=ink, font=_font())


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class RendererConfig:
    startup_delay_s: float = 0.0
    images_per_s: float = 50.0
    crash_after_images: int | None = None
    error_rate: float = 0.0
    oom_above_batch: int | None = None
    # The process exits when a txt2img arrives, before answering (its first one: it is gone).
    crash_on_call: bool = False
    # Every txt2img whose prompt contains this text fails (HTTP 500, automatic1111's shape).
    fail_prompt: str | None = None
    # The process exits when a txt2img's prompt contains this text (a task that kills hosts).
    crash_prompt: str | None = None
    model_title: str = DEFAULT_MODEL_TITLE


class Renderer:
    """Everything the HTTP handler calls; one instance per process."""

    def __init__(
        self,
        config: RendererConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        crash: Callable[[], NoReturn] | None = None,
    ) -> None:
        self.config = config
        self.model = ModelInfo.from_title(config.model_title, sha256=PLACEHOLDER_SHA256)
        self._clock = clock
        self._crash = crash or _crash_process
        self._ready_at = clock() + config.startup_delay_s
        self._rng = random.Random()
        # automatic1111's queue_lock: one generation at a time, later requests wait their turn.
        self._queue_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._interrupted = threading.Event()
        self._produced = 0
        self._job: JsonDict = idle_job()
        self._options: JsonDict = default_options(self.model)

    # ---- readiness and metadata

    @property
    def ready(self) -> bool:
        return self._clock() >= self._ready_at

    def _require_ready(self) -> None:
        if not self.ready:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, LOADING_BODY)

    def sd_models(self) -> list[JsonDict]:
        self._require_ready()
        return [self.model.listing()]

    def options(self) -> JsonDict:
        with self._state_lock:
            return dict(self._options)

    def set_options(self, body: object) -> None:
        settings = parse_options_body(body)
        checked = check_settings(settings, self.model)
        with self._state_lock:
            self._options.update(settings)
            self._options.update(checked)

    # ---- progress and interrupt

    def progress(self) -> JsonDict:
        with self._state_lock:
            job = dict(self._job)
        job["interrupted"] = self._interrupted.is_set()
        return progress_body(job, self._clock())

    def interrupt(self) -> None:
        self._interrupted.set()

    # ---- generation

    def txt2img(self, body: object) -> JsonDict:
        req = parse_txt2img(body)
        self._require_ready()
        with self._queue_lock:
            # As automatic1111 does, settings are checked (an unknown checkpoint refused) before
            # generating; the placeholder draws PNGs whatever samples_format says.
            check_settings(req.override_settings or {}, self.model)
            self._inject_faults(req)
            return self._generate(req)

    def _inject_faults(self, req: Txt2ImgRequest) -> None:
        config = self.config
        if config.crash_on_call:
            _log("crash-on-call: a txt2img arrived, exiting abruptly")
            self._crash()
        if config.crash_prompt and config.crash_prompt in req.prompt:
            _log("crash-prompt matched: exiting abruptly")
            self._crash()
        if config.fail_prompt and config.fail_prompt in req.prompt:
            raise RuntimeError(
                "injected failure (--fail-prompt): Expected all tensors to be on the same device"
            )
        if config.oom_above_batch is not None and req.batch_size > config.oom_above_batch:
            raise OutOfMemoryError(CUDA_OUT_OF_MEMORY)
        if config.error_rate > 0 and self._rng.random() < config.error_rate:
            raise RuntimeError(
                f"injected failure (--error-rate {config.error_rate:g}): "
                "Expected all tensors to be on the same device"
            )

    def _generate(self, req: Txt2ImgRequest) -> JsonDict:
        seed = pick_seed(req.seed, self._rng)
        subseed = pick_seed(req.subseed, self._rng)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        images: list[str] = []
        infotexts: list[str] = []
        start = self._clock()
        self._interrupted.clear()
        self._set_job(
            job="scripts_txt2img",
            job_count=req.n_iter,
            job_no=0,
            job_timestamp=stamp,
            sampling_step=0,
            sampling_steps=req.steps,
            time_start=start,
        )
        try:
            for batch in range(req.n_iter):
                if self._interrupted.is_set():
                    break
                self._run_batch(req, batch, seed, start, images, infotexts)
        finally:
            with self._state_lock:
                self._job = idle_job()
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

    def _run_batch(
        self,
        req: Txt2ImgRequest,
        batch: int,
        seed: int,
        start: float,
        images: list[str],
        infotexts: list[str],
    ) -> None:
        per_image_s = 1.0 / self.config.images_per_s
        self._set_job(job_no=batch, sampling_step=0)
        # Deadlines are absolute so drawing time is absorbed, not added, per batch.
        batch_start = start + batch * req.batch_size * per_image_s
        batch_end = batch_start + req.batch_size * per_image_s
        self._sample(batch_start, batch_end, req.steps)
        # As in automatic1111, an interrupted batch is still decoded and returned.
        for index in range(batch * req.batch_size, (batch + 1) * req.batch_size):
            image_seed = seed + index
            infotext = make_infotext(req, image_seed, self.model)
            png = build_png(req.prompt, image_seed, req.width, req.height, infotext)
            infotexts.append(infotext)
            if req.send_images:
                images.append(base64.b64encode(png).decode("ascii"))
            self._count_produced()

    def _sample(self, batch_start: float, batch_end: float, steps: int) -> None:
        span = max(batch_end - batch_start, 1e-9)
        while not self._interrupted.is_set():
            now = self._clock()
            if now >= batch_end:
                break
            step = min(steps, max(0, int((now - batch_start) / span * steps)))
            self._set_job(sampling_step=step)
            time.sleep(min(SLEEP_SLICE_S, batch_end - now))
        self._set_job(sampling_step=steps)

    def _set_job(self, **fields: Any) -> None:
        with self._state_lock:
            self._job.update(fields)

    def _count_produced(self) -> None:
        with self._state_lock:
            self._produced += 1
            produced = self._produced
        limit = self.config.crash_after_images
        if limit is not None and produced >= limit:
            _log("crash-after-images reached: exiting abruptly")
            self._crash()


def _crash_process() -> NoReturn:
    # A dying GPU box does not say goodbye: no response, no cleanup, a non-zero status.
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


# --------------------------------------------------------------------------- HTTP


Route = Callable[[Renderer, object], object]

_ROUTES: dict[str, dict[str, Route]] = {
    "/sdapi/v1/sd-models": {"GET": lambda r, _b: r.sd_models()},
    "/sdapi/v1/options": {"GET": lambda r, _b: r.options(), "POST": Renderer.set_options},
    "/sdapi/v1/progress": {"GET": lambda r, _b: r.progress()},
    "/sdapi/v1/interrupt": {"POST": lambda r, _b: r.interrupt()},
    "/sdapi/v1/txt2img": {"POST": Renderer.txt2img},
}
_JSON_BODY_ROUTES = {("POST", "/sdapi/v1/options"), ("POST", "/sdapi/v1/txt2img")}


class RendererHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        renderer: Renderer,
        credentials: tuple[str, str] | None,
    ) -> None:
        self.renderer = renderer
        self.credentials = credentials
        super().__init__(address, _Handler)


class _Handler(MethodHandler):
    server_version = "placeholder-a1111"

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        server = self.server
        assert isinstance(server, RendererHTTPServer)
        headers: dict[str, str] = {}
        try:
            raw = self._read_body()
            self._authenticate(server.credentials)
            status, payload = HTTPStatus.OK, self._route(server.renderer, method, path, raw)
        except ApiError as exc:
            status, payload, headers = HTTPStatus(exc.status), exc.payload, exc.headers
        except RequestInvalid as exc:
            status, payload = HTTPStatus.UNPROCESSABLE_ENTITY, exc.body
        except HTTPException as exc:
            status, payload, headers = HTTPStatus(exc.status), exception_body(exc), exc.headers
        except Exception as exc:
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, exception_body(exc)
            _log(f"API error: {method} {path}: {type(exc).__name__}: {exc}")
        self._send_json(status, payload, headers)
        _log(f"{method} {path} {status.value} {(time.monotonic() - started) * 1000:.1f}ms")

    def _authenticate(self, credentials: tuple[str, str] | None) -> None:
        if credentials is None:
            return
        failure = basic_auth_failure(self.headers.get("Authorization"), credentials)
        if failure is not None:
            raise HTTPException(HTTPStatus.UNAUTHORIZED, failure, BASIC_CHALLENGE)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, {"detail": "Length Required"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # The unread body would poison the next request on this connection.
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"detail": "Bad body length"})
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _route(renderer: Renderer, method: str, path: str, raw: bytes) -> object:
        handlers = _ROUTES.get(path.rstrip("/") or "/")
        if handlers is None:
            # automatic1111's handler turns routing's HTTPException into its error shape too.
            raise HTTPException(HTTPStatus.NOT_FOUND, "Not Found")
        route = handlers.get(method)
        if route is None:
            raise HTTPException(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed")
        body = parse_json_body(raw) if (method, path.rstrip("/")) in _JSON_BODY_ROUTES else None
        return route(renderer, body)

    def _send_json(self, status: HTTPStatus, payload: object, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status.value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The one-line-per-request log is written by _handle; the default would repeat it.
        return


def _log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} renderer[{os.getpid()}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- entry point


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _probability(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.renderer",
        description="Placeholder automatic1111 API server drawing stand-in PNGs. "
        f"Set {AUTH_ENV}=user:pass to require HTTP Basic auth.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--startup-delay-s", type=_non_negative_float, default=0.0)
    parser.add_argument("--images-per-s", type=_positive_float, default=50.0)
    parser.add_argument("--crash-after-images", type=_positive_int, default=None)
    parser.add_argument("--error-rate", type=_probability, default=0.0)
    parser.add_argument("--oom-above-batch", type=_non_negative_int, default=None)
    parser.add_argument(
        "--crash-on-call",
        action="store_true",
        help="exit (status 17) when a txt2img arrives, before answering",
    )
    parser.add_argument(
        "--fail-prompt",
        type=_non_empty,
        default=None,
        help="answer HTTP 500 to every txt2img whose prompt contains this text",
    )
    parser.add_argument(
        "--crash-prompt",
        type=_non_empty,
        default=None,
        help="exit (status 17) when a txt2img's prompt contains this text",
    )
    parser.add_argument("--model-title", default=DEFAULT_MODEL_TITLE)
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit when the launching process dies, so a killed test run leaves no orphans",
    )
    return parser


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _watch_parent(parent: int) -> None:
    # Once reparented (the launcher died), ask the main thread to stop via the SIGTERM path.
    while os.getppid() == parent:
        time.sleep(0.5)
    _log("parent process gone: exiting")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    config = RendererConfig(
        startup_delay_s=args.startup_delay_s,
        images_per_s=args.images_per_s,
        crash_after_images=args.crash_after_images,
        error_rate=args.error_rate,
        oom_above_batch=args.oom_above_batch,
        crash_on_call=args.crash_on_call,
        fail_prompt=args.fail_prompt,
        crash_prompt=args.crash_prompt,
        model_title=args.model_title,
    )
    try:
        credentials = parse_credentials(os.environ.get(AUTH_ENV))
    except ValueError as exc:
        _log(f"{AUTH_ENV}: {exc}")
        return 2
    signal.signal(signal.SIGTERM, _raise_exit)
    server = RendererHTTPServer((args.host, args.port), Renderer(config), credentials)
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    host, port = server.server_address[:2]
    _log(
        f"listening on http://{host!s}:{port} auth={'on' if credentials else 'off'} "
        f"startup_delay_s={config.startup_delay_s:g} images_per_s={config.images_per_s:g} "
        f"crash_after_images={config.crash_after_images} error_rate={config.error_rate:g} "
        f"oom_above_batch={config.oom_above_batch} crash_on_call={config.crash_on_call} "
        f"fail_prompt={config.fail_prompt!r} crash_prompt={config.crash_prompt!r}"
    )
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
