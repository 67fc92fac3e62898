"""automatic1111's API as the worker speaks it: the request model, the ``info`` it answers with,
the infotext under each image, and the error bodies (``modules/api/api.py`` and
``modules/api/models.py`` of AUTOMATIC1111/stable-diffusion-webui; PROVIDERS.md).

Pure pydantic and stdlib: no torch, so it is cheap to import and to test.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_SPACE = 4294967294  # automatic1111: random.randrange(4294967294) for seed -1
MIN_SIDE, MAX_SIDE = 64, 2048

JsonDict = dict[str, Any]


class Txt2ImgRequest(BaseModel):
    """The fields of StableDiffusionTxt2ImgProcessingAPI, with its defaults. Unknown fields are
    ignored, as automatic1111 does; features this worker does not implement are refused (422)
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


@dataclass(frozen=True)
class ModelInfo:
    """A checkpoint as ``/sdapi/v1/sd-models`` lists it."""

    title: str
    model_name: str
    hash: str
    filename: str

    @classmethod
    def from_checkpoint(cls, checkpoint: str, short_hash: str) -> ModelInfo:
        name = checkpoint.rstrip("/").rsplit("/", 1)[-1] or checkpoint
        stem = name
        for suffix in (".safetensors", ".ckpt"):
            stem = stem.removesuffix(suffix)
        return cls(
            title=f"{name} [{short_hash}]", model_name=stem, hash=short_hash, filename=checkpoint
        )

    @property
    def aliases(self) -> set[str]:
        """Names ``sd_model_checkpoint`` accepts for this checkpoint (a1111's aliases)."""
        return {self.title, self.model_name, self.filename, self.filename.rsplit("/", 1)[-1]}

    def listing(self) -> JsonDict:
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.hash,
            "sha256": None,  # not hashed (automatic1111's --no-hashing): hashing costs seconds
            "filename": self.filename,
            "config": None,
        }


def pick_seed(seed: int, rng: random.Random) -> int:
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


def progress_body(job: JsonDict, now: float) -> JsonDict:
    """``/sdapi/v1/progress`` from the engine's job state (progressapi's arithmetic)."""
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


def error_body(name: str, errors: str, detail: str = "") -> JsonDict:
    """What api_middleware's handle_exception sends for any exception."""
    return {"error": name, "detail": detail, "body": "", "errors": errors}
