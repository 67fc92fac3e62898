"""Build the diffusers pipeline the worker serves: from a checkpoint, or with random weights.

Random weights come in two sizes (see :mod:`worker.configs`): ``tiny`` for the CPU tests and the
local stack, ``full`` (the real architectures) for benchmarks on a GPU with no weights to
download. Nothing here reaches a network unless a hub id is given as the checkpoint.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    AutoPipelineForText2Image,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from worker.configs import FULL, TINY, ModelKind

Size = Literal["tiny", "full"]

# SD's scheduler settings (scheduler/scheduler_config.json of both SD 1.5 and SDXL base).
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte-level alphabet: one printable character for each of the 256 bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@functools.cache
def tokenizer_dir() -> Path:
    """A CLIP tokenizer with no merges: every byte is a token (514 in all, end-of-text last, as
    in CLIP's vocabulary). Prompts tokenise to more tokens than with CLIP's 49,408, but every
    prompt is padded to 77, so the text encoder does the same work. Written once per process."""
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    path = Path(tempfile.mkdtemp(prefix="worker-tokenizer-"))
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return path


def _tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(tokenizer_dir()), model_max_length=77)


def build_random(
    kind: ModelKind, size: Size, *, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> DiffusionPipeline:
    """A pipeline of the given architecture with random weights, created on ``device``."""
    configs = (TINY if size == "tiny" else FULL)[kind]
    torch.manual_seed(seed)
    # Created on the device directly: initialising SDXL's 2.6 B parameters on a CPU is slow.
    with device:
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        text_encoder_2 = (
            CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
            if kind == "sdxl"
            else None
        )
    scheduler = EulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipe: DiffusionPipeline
    if kind == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=_tokenizer(),
            tokenizer_2=_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return pipe.to(device=device, dtype=dtype)


def load_checkpoint(
    checkpoint: str, kind: ModelKind | None, *, device: torch.device, dtype: torch.dtype
) -> DiffusionPipeline:
    """A pipeline from a diffusers folder or hub id (its ``model_index.json`` names the kind),
    or from one ``.safetensors``/``.ckpt`` file as automatic1111 loads them (``kind`` says
    which architecture; SD 1.5 when not given). No safety checker: automatic1111 has none."""
    pipe: DiffusionPipeline
    if checkpoint.endswith((".safetensors", ".ckpt")):
        cls = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
        extra: dict[str, Any] = {} if kind == "sdxl" else {"safety_checker": None}
        pipe = cls.from_single_file(checkpoint, torch_dtype=dtype, **extra)
    else:
        extra = {"safety_checker": None, "requires_safety_checker": False}
        if Path(checkpoint, "model_index.json").is_file():
            index = json.loads(Path(checkpoint, "model_index.json").read_text(encoding="utf-8"))
            if "safety_checker" not in index:
                extra = {}
        pipe = AutoPipelineForText2Image.from_pretrained(checkpoint, torch_dtype=dtype, **extra)
    return pipe.to(device=device)


def model_kind(pipe: DiffusionPipeline) -> ModelKind:
    return "sdxl" if isinstance(pipe, StableDiffusionXLPipeline) else "sd15"
