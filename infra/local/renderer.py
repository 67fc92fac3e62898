"""A placeholder automatic1111 server: the API subset our backend calls, drawing stand-in PNGs.

It follows AUTOMATIC1111/stable-diffusion-webui (modules/api/api.py) closely enough for the
backend's client to run unchanged against it: Basic auth like ``--api-auth``, one generation at a
time behind a queue lock, the ``api_middleware`` error shape, FastAPI-style 422 validation, and
PNGs that carry their infotext in a ``parameters`` tEXt chunk. Fault knobs on the command line
let the local stack rehearse the failures a rented GPU produces: slow model loads, crashes,
random errors, CUDA out-of-memory on big batches, a machine that dies on its first
generation, and prompts that always fail (an HTTP 500) or always kill the process.

    python -m infra.local.renderer --port 7860 [--startup-delay-s 2] [--crash-after-images 10]
        [--crash-on-call] [--fail-prompt TEXT] [--crash-prompt TEXT]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import hmac
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import Any, NoReturn, TypeGuard
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from infra.local.http_base import MethodHandler

DEFAULT_MODEL_TITLE = "sd15-placeholder.safetensors [0000000000]"
AUTH_ENV = "RENDERER_API_AUTH"
CRASH_EXIT_CODE = 17
SEED_SPACE = 2**32 - 1
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_BODY_BYTES = 8 * 1024 * 1024
# Short slices let an interrupt cut a batch short and keep progress's sampling_step moving.
SLEEP_SLICE_S = 0.01

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------- errors


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
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def a1111_error(exc: BaseException) -> JsonDict:
    """The body api_middleware's handle_exception sends for any exception."""
    return {
        "error": type(exc).__name__,
        "detail": getattr(exc, "detail", ""),
        "body": "",
        "errors": str(exc),
    }


def _field_error(field: str | None, msg: str, kind: str) -> JsonDict:
    loc: list[str] = ["body"] if field is None else ["body", field]
    return {"loc": loc, "msg": msg, "type": kind}


def _unprocessable(errors: list[JsonDict]) -> ApiError:
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": errors})


# --------------------------------------------------------------------------- request parsing


@dataclass(frozen=True)
class Txt2ImgRequest:
    """The fields of StableDiffusionTxt2ImgProcessingAPI we honour, with its defaults."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    enable_hr: bool = False
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    script_name: str | None = None
    script_args: list[Any] | None = None
    alwayson_scripts: dict[str, Any] | None = None
    save_images: bool = False
    send_images: bool = True

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def sampler(self) -> str:
        return self.sampler_name or "Euler a"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# (check, message, pydantic v1 error type) per kind of field, as FastAPI reports them.
_CHECKS: dict[str, tuple[Callable[[object], bool], str, str]] = {
    "int": (_is_int, "value is not a valid integer", "type_error.integer"),
    "float": (_is_number, "value is not a valid float", "type_error.float"),
    "str": (lambda v: isinstance(v, str), "str type expected", "type_error.str"),
    "bool": (
        lambda v: isinstance(v, bool),
        "value could not be parsed to a boolean",
        "type_error.bool",
    ),
    "dict": (lambda v: isinstance(v, dict), "value is not a valid dict", "type_error.dict"),
    "list": (lambda v: isinstance(v, list), "value is not a valid list", "type_error.list"),
}

# name -> (kind, nullable)
_FIELDS: dict[str, tuple[str, bool]] = {
    "prompt": ("str", False),
    "negative_prompt": ("str", False),
    "styles": ("list", True),
    "seed": ("int", False),
    "subseed": ("int", False),
    "subseed_strength": ("float", False),
    "sampler_name": ("str", True),
    "scheduler": ("str", True),
    "batch_size": ("int", False),
    "n_iter": ("int", False),
    "steps": ("int", False),
    "cfg_scale": ("float", False),
    "width": ("int", False),
    "height": ("int", False),
    "restore_faces": ("bool", True),
    "tiling": ("bool", True),
    "enable_hr": ("bool", False),
    "denoising_strength": ("float", True),
    "override_settings": ("dict", True),
    "override_settings_restore_afterwards": ("bool", False),
    "script_name": ("str", True),
    "script_args": ("list", True),
    "alwayson_scripts": ("dict", True),
    "save_images": ("bool", False),
    "send_images": ("bool", False),
}


def parse_json_body(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unprocessable(
            [_field_error(None, f"JSON decode error: {exc}", "value_error.jsondecode")]
        ) from exc


def parse_txt2img(body: object) -> Txt2ImgRequest:
    """Validate like pydantic would, reporting every bad field at once; extra keys are ignored."""
    if not isinstance(body, dict):
        raise _unprocessable([_field_error(None, "value is not a valid dict", "type_error.dict")])
    errors: list[JsonDict] = []
    values: JsonDict = {}
    for name, (kind, nullable) in _FIELDS.items():
        if name not in body:
            continue
        value = body[name]
        if value is None:
            if nullable:
                values[name] = None
            else:
                errors.append(
                    _field_error(
                        name, "none is not an allowed value", "type_error.none.not_allowed"
                    )
                )
            continue
        check, msg, err_type = _CHECKS[kind]
        if not check(value):
            errors.append(_field_error(name, msg, err_type))
            continue
        values[name] = float(value) if kind == "float" else value
    for side in ("width", "height"):
        value = values.get(side)
        if _is_int(value) and not (MIN_SIDE <= value <= MAX_SIDE and value % 8 == 0):
            errors.append(
                _field_error(
                    side,
                    f"ensure this value is a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}",
                    "value_error.number.not_multiple",
                )
            )
    for positive in ("batch_size", "n_iter", "steps"):
        value = values.get(positive)
        if _is_int(value) and value < 1:
            errors.append(
                _field_error(
                    positive,
                    "ensure this value is greater than or equal to 1",
                    "value_error.number.not_ge",
                )
            )
    if _is_int(values.get("seed")) and values["seed"] < -1:
        errors.append(
            _field_error("seed", "ensure this value is greater than or equal to -1", "value_error")
        )
    if errors:
        raise _unprocessable(errors)
    return Txt2ImgRequest(**values)


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


@dataclass(frozen=True)
class ModelInfo:
    title: str
    model_name: str
    hash: str
    filename: str

    @classmethod
    def from_title(cls, title: str) -> ModelInfo:
        # automatic1111 titles read "<file name> [<short hash>]".
        name, short_hash = title, "0000000000"
        if title.endswith("]") and " [" in title:
            name, _, bracket = title.rpartition(" [")
            short_hash = bracket[:-1] or short_hash
        stem = name.rsplit("/", 1)[-1]
        for suffix in (".safetensors", ".ckpt"):
            stem = stem.removesuffix(suffix)
        filename = name if name.startswith("/") else f"/models/{name}"
        return cls(title=title, model_name=stem, hash=short_hash, filename=filename)

    @property
    def aliases(self) -> set[str]:
        """Names set_config accepts for this checkpoint (sd_models.checkpoint_aliases)."""
        return {self.title, self.model_name, self.filename.rsplit("/", 1)[-1], self.hash}


def _quote(value: str) -> str:
    # generation_parameters_copypaste.quote: JSON-quote values that would break the k: v list.
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",\n:") else value


def make_infotext(
    req: Txt2ImgRequest, seed: int, model: ModelInfo, prompt: str, negative_prompt: str
) -> str:
    """The text automatic1111 writes under each image (create_infotext)."""
    params = {
        "Steps": str(req.steps),
        "Sampler": _quote(req.sampler),
        "CFG scale": f"{req.cfg_scale:g}",
        "Seed": str(seed),
        "Size": f"{req.width}x{req.height}",
        "Model hash": model.hash,
        "Model": _quote(model.model_name),
    }
    if req.scheduler:
        params["Schedule type"] = _quote(req.scheduler)
    tail = ", ".join(f"{k}: {v}" for k, v in params.items())
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{tail}"


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
        self.model = ModelInfo.from_title(config.model_title)
        self._clock = clock
        self._crash = crash or _crash_process
        self._ready_at = clock() + config.startup_delay_s
        self._rng = random.Random()
        # automatic1111's queue_lock: one generation at a time, later requests wait their turn.
        self._queue_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._interrupted = threading.Event()
        self._produced = 0
        self._job: JsonDict = _idle_job()
        self._options: JsonDict = {
            "sd_model_checkpoint": self.model.title,
            "sd_checkpoint_hash": "0" * 64,
            "samples_format": "png",
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "jpeg_quality": 80,
        }

    # ---- readiness and metadata

    @property
    def ready(self) -> bool:
        return self._clock() >= self._ready_at

    def _require_ready(self) -> None:
        if not self.ready:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "model loading"})

    def sd_models(self) -> list[JsonDict]:
        self._require_ready()
        return [
            {
                "title": self.model.title,
                "model_name": self.model.model_name,
                "hash": self.model.hash,
                "sha256": "0" * 64,
                "filename": self.model.filename,
                "config": None,
            }
        ]

    def options(self) -> JsonDict:
        with self._state_lock:
            return dict(self._options)

    def set_options(self, body: object) -> None:
        if not isinstance(body, dict):
            raise _unprocessable(
                [_field_error(None, "value is not a valid dict", "type_error.dict")]
            )
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None and checkpoint not in self.model.aliases:
            raise RuntimeError(f"model {checkpoint!r} not found")
        with self._state_lock:
            self._options.update(body)
            if checkpoint is not None:
                # load_model stores the canonical title whichever alias was asked for.
                self._options["sd_model_checkpoint"] = self.model.title

    # ---- progress and interrupt

    def progress(self) -> JsonDict:
        with self._state_lock:
            job = dict(self._job)
        time_start = job.pop("time_start")
        state = {"skipped": False, "interrupted": self._interrupted.is_set(), **job}
        if state["job_count"] == 0:
            progress, eta_relative = 0.0, 0.0
        else:
            # Same arithmetic as progressapi, so ETAs look like the real thing.
            progress = 0.01 + state["job_no"] / state["job_count"]
            if state["sampling_steps"] > 0:
                progress += state["sampling_step"] / state["sampling_steps"] / state["job_count"]
            elapsed = self._clock() - time_start
            eta_relative = elapsed / progress - elapsed
            progress = min(progress, 1.0)
        return {
            "progress": progress,
            "eta_relative": eta_relative,
            "state": state,
            "current_image": None,
            "textinfo": None,
        }

    def interrupt(self) -> None:
        self._interrupted.set()

    # ---- generation

    def txt2img(self, body: object) -> JsonDict:
        req = parse_txt2img(body)
        self._require_ready()
        with self._queue_lock:
            if self.config.crash_on_call:
                _log("crash-on-call: a txt2img arrived, exiting abruptly")
                self._crash()
            if self.config.crash_prompt and self.config.crash_prompt in req.prompt:
                _log("crash-prompt matched: exiting abruptly")
                self._crash()
            if self.config.fail_prompt and self.config.fail_prompt in req.prompt:
                raise RuntimeError(
                    "injected failure (--fail-prompt): "
                    "Expected all tensors to be on the same device"
                )
            if self.config.oom_above_batch is not None and req.batch_size > (
                self.config.oom_above_batch
            ):
                raise OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total "
                    "capacity; 20.12 GiB already allocated; 1.20 GiB free; 21.00 GiB reserved in "
                    "total by PyTorch) If reserved memory is >> allocated memory try setting "
                    "max_split_size_mb to avoid fragmentation.  See documentation for Memory "
                    "Management and PYTORCH_CUDA_ALLOC_CONF"
                )
            if self.config.error_rate > 0 and self._rng.random() < self.config.error_rate:
                raise RuntimeError(
                    f"injected failure (--error-rate {self.config.error_rate:g}): "
                    "Expected all tensors to be on the same device"
                )
            return self._generate(req)

    def _generate(self, req: Txt2ImgRequest) -> JsonDict:
        seed = self._rng.randrange(SEED_SPACE) if req.seed == -1 else req.seed
        subseed = seed if req.subseed == -1 else req.subseed
        count = req.image_count
        all_seeds = [seed + i for i in range(count)]
        all_subseeds = [subseed + i for i in range(count)]
        all_prompts = [req.prompt] * count
        all_negative = [req.negative_prompt] * count
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        images: list[str] = []
        infotexts: list[str] = []
        start = self._clock()
        per_image_s = 1.0 / self.config.images_per_s
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
                self._set_job(job_no=batch, sampling_step=0)
                # Deadlines are absolute so drawing time is absorbed, not added, per batch.
                batch_start = start + batch * req.batch_size * per_image_s
                batch_end = batch_start + req.batch_size * per_image_s
                self._sample(batch_start, batch_end, req.steps)
                # As in automatic1111, an interrupted batch is still decoded and returned.
                for index in range(batch * req.batch_size, (batch + 1) * req.batch_size):
                    infotext = make_infotext(
                        req, all_seeds[index], self.model, all_prompts[index], all_negative[index]
                    )
                    png = build_png(req.prompt, all_seeds[index], req.width, req.height, infotext)
                    infotexts.append(infotext)
                    if req.send_images:
                        images.append(base64.b64encode(png).decode("ascii"))
                    self._count_produced()
        finally:
            with self._state_lock:
                self._job = _idle_job()
        info = {
            "prompt": req.prompt,
            "all_prompts": all_prompts,
            "negative_prompt": req.negative_prompt,
            "all_negative_prompts": all_negative,
            "seed": seed,
            "all_seeds": all_seeds,
            "subseed": subseed,
            "all_subseeds": all_subseeds,
            "subseed_strength": req.subseed_strength,
            "width": req.width,
            "height": req.height,
            "sampler_name": req.sampler,
            "cfg_scale": req.cfg_scale,
            "steps": req.steps,
            "batch_size": req.batch_size,
            "n_iter": req.n_iter,
            "restore_faces": bool(req.restore_faces),
            "face_restoration_model": None,
            "sd_model_name": self.model.model_name,
            "sd_model_hash": self.model.hash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": req.denoising_strength,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": req.styles or [],
            "job_timestamp": stamp,
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": "placeholder",
        }
        return {"images": images, "parameters": asdict(req), "info": json.dumps(info)}

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


def _idle_job() -> JsonDict:
    return {
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
        "time_start": 0.0,
    }


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


def parse_credentials(value: str | None) -> tuple[str, str] | None:
    """``user:pass`` as automatic1111's --api-auth takes it; empty or unset means no auth."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep:
        raise ValueError(f"{AUTH_ENV} must look like user:password")
    return user, password


def check_basic_auth(header: str | None, credentials: tuple[str, str]) -> None:
    if not header or not header.lower().startswith("basic "):
        raise HTTPException(401, "Not authenticated", {"WWW-Authenticate": "Basic"})
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(
            401, "Invalid authentication credentials", {"WWW-Authenticate": "Basic"}
        ) from exc
    user, _, password = decoded.partition(":")
    # Both compared in constant time so neither half leaks through timing.
    user_ok = hmac.compare_digest(user.encode(), credentials[0].encode())
    password_ok = hmac.compare_digest(password.encode(), credentials[1].encode())
    if not (user_ok and password_ok):
        raise HTTPException(401, "Incorrect username or password", {"WWW-Authenticate": "Basic"})


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
            if server.credentials is not None:
                check_basic_auth(self.headers.get("Authorization"), server.credentials)
            status, payload = HTTPStatus.OK, self._route(server.renderer, method, path, raw)
        except ApiError as exc:
            status, payload, headers = HTTPStatus(exc.status), exc.payload, exc.headers
        except HTTPException as exc:
            status, payload, headers = HTTPStatus(exc.status), a1111_error(exc), exc.headers
        except Exception as exc:
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, a1111_error(exc)
            _log(f"API error: {method} {path}: {type(exc).__name__}: {exc}")
        self._send_json(status, payload, headers)
        _log(f"{method} {path} {status.value} {(time.monotonic() - started) * 1000:.1f}ms")

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
            raise ApiError(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        route = handlers.get(method)
        if route is None:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"})
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
        _log(str(exc))
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
