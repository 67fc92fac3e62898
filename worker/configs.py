"""Architectures of the pipelines the worker serves, as plain config dicts (no torch here).

``FULL`` holds the real SD 1.5 and SDXL architectures (the ``config.json`` of
stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0: UNet, VAE, CLIP text encoders), so a
pipeline built from them with random weights does exactly the arithmetic of the real model: the
benchmark uses them where no weights can be downloaded. ``TINY`` holds a few-thousand-parameter
version of each with the same wiring (VAE scale factor 8, CFG, SDXL's pooled text and time
embeddings), for the CPU tests and the local stack.
"""

from __future__ import annotations

from typing import Any, Literal

ModelKind = Literal["sd15", "sdxl"]
MODEL_KINDS: tuple[ModelKind, ...] = ("sd15", "sdxl")
# The size each architecture was trained at: the warm-up and the benchmark default.
NATIVE_SIDE: dict[ModelKind, int] = {"sd15": 512, "sdxl": 1024}

Config = dict[str, Any]

_SD_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

# CLIP ViT-L/14's text tower (SD 1.5's only encoder, SDXL's first).
_CLIP_L: Config = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

FULL: dict[ModelKind, dict[str, Config]] = {
    "sd15": {
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ],
            "up_block_types": [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ],
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "attention_head_dim": 8,
            "cross_attention_dim": 768,
            "norm_num_groups": 32,
        },
        "vae": _SD_VAE,
        "text_encoder": _CLIP_L,
    },
    "sdxl": {
        "unet": {
            "sample_size": 128,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [320, 640, 1280],
            "layers_per_block": 2,
            "attention_head_dim": [5, 10, 20],
            "transformer_layers_per_block": [1, 2, 10],
            "cross_attention_dim": 2048,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64,
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
            "norm_num_groups": 32,
        },
        # SDXL's VAE: SD's architecture, another scaling factor; decoded in fp16 (as with the
        # widely used fp16-fixed weights) instead of upcasting to fp32.
        "vae": {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": False},
        "text_encoder": _CLIP_L,
        # OpenCLIP ViT-bigG/14's text tower, with its projection (the pooled embedding).
        "text_encoder_2": {
            **_CLIP_L,
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_attention_heads": 20,
            "hidden_act": "gelu",
            "projection_dim": 1280,
        },
    },
}

_TINY_VAE: Config = {
    **_SD_VAE,
    "block_out_channels": [8, 8, 8, 8],  # four levels: the real scale factor of 8
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}
_TINY_CLIP: Config = {
    **_CLIP_L,
    "vocab_size": 1000,  # more than the tiny tokenizer's 514 tokens
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}

TINY: dict[ModelKind, dict[str, Config]] = {
    "sd15": {
        "unet": {
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [8, 16],
            "layers_per_block": 1,
            "attention_head_dim": 4,
            "cross_attention_dim": 32,
            "norm_num_groups": 4,
        },
        "vae": _TINY_VAE,
        "text_encoder": _TINY_CLIP,
    },
    "sdxl": {
        "unet": {
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [8, 16],
            "layers_per_block": 1,
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 1],
            "cross_attention_dim": 64,  # both encoders' hidden states side by side
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 80,  # 6 time ids x 8 + pooled 32
            "norm_num_groups": 4,
        },
        "vae": {**_TINY_VAE, "scaling_factor": 0.13025, "force_upcast": False},
        "text_encoder": _TINY_CLIP,
        "text_encoder_2": {**_TINY_CLIP, "hidden_act": "gelu"},
    },
}
