"""automatic1111's API as both our servers speak it: the request model and its validation, the
``info`` and infotext of an answer, the checkpoint listing and options, the progress body, the
error bodies and the Basic-auth check (``modules/api/api.py``, ``modules/api/models.py`` and
``modules/processing.py`` of AUTOMATIC1111/stable-diffusion-webui; PROVIDERS.md).

Two servers import it: the GPU worker (:mod:`worker.server`, FastAPI) and the local stack's
placeholder (:mod:`infra.local.renderer`, the standard library's HTTP server), so what the
backend's client sees cannot drift between them; ``tests/contract`` runs the same cases against
both. Pure pydantic and stdlib: no torch, so it is cheap to import and to test.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# automatic1111's get_fixed_seed: int(random.randrange(4294967294)) for seed -1, so 0..2**32-3.
SEED_SPACE = 4294967294
MIN_SIDE, MAX_SIDE = 64, 2048
NO_HASH = "0000000000"
LOADING_BODY = {"detail": "model loading"}  # 503 while the checkpoint loads

JsonDict = dict[str, Any]
ImageFormat = Literal["png", "jpg", "webp"]
# automatic1111's samples_format values, normalised.
FORMATS: dict[str, ImageFormat] = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}


class Txt2ImgRequest(BaseModel):
    """The fields of StableDiffusionTxt2ImgProcessingAPI, with its defaults. Unknown fields are
    ignored, as automatic1111 does; features our servers do not implement are refused (422)
    rather than silently dropped."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = Field(default=-1, ge=-1)
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(default=1, ge=1)
    n_iter: int = Field(default=1, ge=1)
    steps: int = Field(default=50, ge=1, le=1000)
    cfg_scale: float = Field(default=7.0, ge=0, le=100)
    width: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)
    height: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)
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

    @field_validator("enable_hr", "restore_faces", "tiling")
    @classmethod
    def _not_implemented_flag(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("not supported by this worker")
        return value

    @field_validator("script_name")
    @classmethod
    def _no_scripts(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("scripts are not supported by this worker")
        return value

    @field_validator("alwayson_scripts")
    @classmethod
    def _no_alwayson_scripts(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError("scripts are not supported by this worker")
        return value

    @field_validator("subseed_strength")
    @classmethod
    def _no_variation_seeds(cls, value: float) -> float:
        if value != 0:
            raise ValueError("variation seeds are not supported by this worker")
        return value

    @property
    def sampler(self) -> str:
        return self.sampler_name or "Euler a"

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter


# --------------------------------------------------------------------------- request validation


class RequestInvalid(Exception):
    """A body FastAPI would answer 422 to; ``detail`` is its list of errors. The worker lets
    FastAPI raise and answer these itself; the placeholder, without FastAPI, raises this."""

    def __init__(self, detail: list[JsonDict]) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def body(self) -> JsonDict:
        return {"detail": self.detail}


def validation_detail(exc: ValidationError) -> list[JsonDict]:
    """pydantic's errors as FastAPI reports a body's: ``loc`` starts with "body", JSON-safe."""
    errors: list[JsonDict] = json.loads(exc.json(include_url=False))
    return [{**error, "loc": ["body", *error["loc"]]} for error in errors]


def parse_json_body(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        error = {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}
        raise RequestInvalid([{**error, "input": {}, "ctx": {"error": str(exc)}}]) from exc


def parse_txt2img(body: object) -> Txt2ImgRequest:
    """Validate a decoded body as FastAPI does before calling the route."""
    try:
        return Txt2ImgRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestInvalid(validation_detail(exc)) from exc


def parse_options_body(body: object) -> JsonDict:
    if not isinstance(body, dict):
        raise RequestInvalid(
            [
                {
                    "type": "dict_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary",
                    "input": body,
                }
            ]
        )
    return body


# --------------------------------------------------------------------------- the checkpoint


@dataclass(frozen=True)
class ModelInfo:
    """A checkpoint as ``/sdapi/v1/sd-models`` lists it. ``sha256`` is None when not hashed
    (automatic1111's --no-hashing): hashing a checkpoint costs seconds."""

    title: str
    model_name: str
    hash: str
    filename: str
    sha256: str | None = None

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str, short_hash: str, sha256: str | None = None
    ) -> ModelInfo:
        name = checkpoint.rstrip("/").rsplit("/", 1)[-1] or checkpoint
        return cls(
            title=f"{name} [{short_hash}]",
            model_name=_stem(name),
            hash=short_hash,
            filename=checkpoint,
            sha256=sha256,
        )

    @classmethod
    def from_title(cls, title: str, sha256: str | None = None) -> ModelInfo:
        """From a title as automatic1111 writes it, "<file name> [<short hash>]"; the file is
        taken to lie in /models unless the name is absolute."""
        name, short_hash = title, NO_HASH
        if title.endswith("]") and " [" in title:
            name, _, bracket = title.rpartition(" [")
            short_hash = bracket[:-1] or short_hash
        filename = name if name.startswith("/") else f"/models/{name}"
        return cls(
            title=title,
            model_name=_stem(name.rsplit("/", 1)[-1]),
            hash=short_hash,
            filename=filename,
            sha256=sha256,
        )

    @property
    def aliases(self) -> set[str]:
        """Names ``sd_model_checkpoint`` accepts for this checkpoint: sd_models' checkpoint
        aliases (title, model name, file name, short hash), and the full path besides."""
        return {
            self.title,
            self.model_name,
            self.filename,
            self.filename.rsplit("/", 1)[-1],
            self.hash,
        }

    def listing(self) -> JsonDict:
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.hash,
            "sha256": self.sha256,
            "filename": self.filename,
            "config": None,
        }


def _stem(name: str) -> str:
    for suffix in (".safetensors", ".ckpt"):
        name = name.removesuffix(suffix)
    return name


# --------------------------------------------------------------------------- options


def default_options(model: ModelInfo | None) -> JsonDict:
    """``/sdapi/v1/options`` before anyone sets one (the subset our servers act on or report);
    ``model`` None while the checkpoint loads."""
    return {
        "sd_model_checkpoint": model.title if model else None,
        "sd_checkpoint_hash": model.sha256 if model else None,
        "samples_format": "png",
        "jpeg_quality": 80,
        "enable_pnginfo": True,
        "CLIP_stop_at_last_layers": 1,
        "sd_vae": "Automatic",
    }


def check_settings(settings: JsonDict, model: ModelInfo) -> JsonDict:
    """The settings we act on, validated and normalised (automatic1111 raises on an unknown
    checkpoint and stores the canonical title whichever alias was asked for); other keys are
    not returned: callers keep and ignore them, as automatic1111 ignores unknown ones."""
    checked: JsonDict = {}
    if "sd_model_checkpoint" in settings:
        checked["sd_model_checkpoint"] = _checked_checkpoint(settings["sd_model_checkpoint"], model)
    if "samples_format" in settings:
        checked["samples_format"] = _checked_format(settings["samples_format"])
    if "jpeg_quality" in settings:
        checked["jpeg_quality"] = _checked_quality(settings["jpeg_quality"])
    return checked


def _checked_checkpoint(name: object, model: ModelInfo) -> str:
    if name not in model.aliases:
        raise RuntimeError(f"model {name!r} not found")
    return model.title


def _checked_format(value: object) -> ImageFormat:
    fmt = str(value).lower()
    if fmt not in FORMATS:
        raise ValueError(f"samples_format must be one of {sorted(FORMATS)}")
    return FORMATS[fmt]


def _checked_quality(quality: object) -> int:
    if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise ValueError("jpeg_quality must be an integer from 1 to 100")
    return quality


# --------------------------------------------------------------------------- the answer


def pick_seed(seed: int, rng: random.Random) -> int:
    """get_fixed_seed: -1 means a random one, for the seed and for the subseed alike."""
    return rng.randrange(SEED_SPACE) if seed == -1 else seed


def _quote(value: str) -> str:
    # generation_parameters_copypaste.quote: JSON-quote values that would break the k: v list.
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",\n:") else value


def make_infotext(req: Txt2ImgRequest, seed: int, model: ModelInfo) -> str:
    """The text automatic1111 writes under each image (processing.create_infotext)."""
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
    negative = f"\nNegative prompt: {req.negative_prompt}" if req.negative_prompt else ""
    return f"{req.prompt}{negative}\n{tail}"


def make_info(
    req: Txt2ImgRequest,
    *,
    seed: int,
    subseed: int,
    model: ModelInfo,
    infotexts: list[str],
    job_timestamp: str,
    version: str,
) -> JsonDict:
    """``info`` of a txt2img answer (Processed.js()): seeds ``seed … seed+n-1`` for n images."""
    count = req.image_count
    return {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * count,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * count,
        "seed": seed,
        "all_seeds": [seed + i for i in range(count)],
        "subseed": subseed,
        "all_subseeds": [subseed + i for i in range(count)],
        "subseed_strength": req.subseed_strength,
        "width": req.width,
        "height": req.height,
        "sampler_name": req.sampler,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "n_iter": req.n_iter,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model.model_name,
        "sd_model_hash": model.hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": req.denoising_strength,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": req.styles or [],
        "job_timestamp": job_timestamp,
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": version,
    }


def txt2img_body(req: Txt2ImgRequest, images: list[str], info: JsonDict) -> JsonDict:
    """TextToImageResponse: the images, the request echoed, and ``info`` as a JSON string."""
    return {"images": images, "parameters": req.model_dump(), "info": json.dumps(info)}


# --------------------------------------------------------------------------- progress


def idle_job() -> JsonDict:
    """shared.state between jobs, as ``progress_body`` takes it."""
    return {
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
        "time_start": 0.0,
        "interrupted": False,
    }


def progress_body(job: JsonDict, now: float) -> JsonDict:
    """``/sdapi/v1/progress`` from a job's state (progressapi's arithmetic)."""
    state = dict(job)
    time_start = float(state.pop("time_start"))
    state["skipped"] = False
    if state["job_count"] == 0:
        progress, eta_relative = 0.0, 0.0
    else:
        progress = 0.01 + state["job_no"] / state["job_count"]
        if state["sampling_steps"] > 0:
            progress += state["sampling_step"] / state["sampling_steps"] / state["job_count"]
        elapsed = now - time_start
        eta_relative = elapsed / progress - elapsed
        progress = min(progress, 1.0)
    return {
        "progress": progress,
        "eta_relative": eta_relative,
        "state": state,
        "current_image": None,
        "textinfo": None,
    }


# --------------------------------------------------------------------------- errors and auth


def error_body(name: str, errors: str, detail: str = "") -> JsonDict:
    """What api_middleware's handle_exception sends for any exception."""
    return {"error": name, "detail": detail, "body": "", "errors": errors}


def exception_body(exc: BaseException) -> JsonDict:
    """``error_body`` of an exception: its class name, its text and its ``detail`` if any."""
    detail = getattr(exc, "detail", "")
    return error_body(type(exc).__name__, str(exc), detail if isinstance(detail, str) else "")


BASIC_CHALLENGE = {"WWW-Authenticate": "Basic"}


def parse_credentials(value: str | None) -> tuple[str, str] | None:
    """``user:pass`` as automatic1111's --api-auth takes it; empty or unset means no auth."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep:
        raise ValueError("the API credential must look like user:password")
    return user, password


def basic_auth_failure(header: str | None, credentials: tuple[str, str]) -> str | None:
    """Why an ``Authorization`` header does not carry ``credentials`` (the ``detail`` of the
    401 FastAPI's HTTPBasic answers), or None when it does."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return "Not authenticated"
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "Invalid authentication credentials"
    user, sep, password = decoded.partition(":")
    if not sep:
        return "Invalid authentication credentials"
    # Both halves compared in constant time so neither leaks through timing.
    user_ok = hmac.compare_digest(user.encode(), credentials[0].encode())
    password_ok = hmac.compare_digest(password.encode(), credentials[1].encode())
    return None if user_ok and password_ok else "Incorrect username or password"
