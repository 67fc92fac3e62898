"""The worker's pure parts, in process: parsing, infotext, encoding, engine bookkeeping."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker.cli import config_from, parse_args
from worker.encode import EncoderPool, encode
from worker.protocol import (
    ModelInfo,
    Txt2ImgRequest,
    make_infotext,
    parse_credentials,
    progress_body,
)
from worker.server import Shape

pytestmark = pytest.mark.worker


def test_shapes_parse_and_refuse_what_the_api_would() -> None:
    assert Shape.parse("512x768x16") == Shape(512, 768, 16)
    assert Shape.parse(" 64x64 ") == Shape(64, 64, 1)
    for bad in ("512", "513x512", "512x512x0", "32x32", "axb"):
        with pytest.raises(ValueError, match=r"WIDTHxHEIGHT|sides|batch"):
            Shape.parse(bad)


def test_credentials_and_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_credentials("") is None
    assert parse_credentials("u:p:q") == ("u", "p:q")
    with pytest.raises(ValueError, match="user:password"):
        parse_credentials("nocolon")
    monkeypatch.setenv("COMMANDLINE_ARGS", "--api-auth a:b --compile --compile-shapes 512x512x8")
    args = parse_args(["--api", "--listen", "--ckpt", "/m.safetensors"])
    assert args.api_auth == "a:b" and args.listen and args.checkpoint == "/m.safetensors"
    assert args.compile and args.compile_shapes == (Shape(512, 512, 8),)
    assert config_from(args).compile
    monkeypatch.setenv("COMMANDLINE_ARGS", "--tiny")
    tiny = config_from(parse_args([]))
    assert tiny.device == "cpu" and tiny.torch_threads == 1 and not tiny.compile
    assert tiny.cudnn_benchmark  # on by default; the server applies it on CUDA only
    assert not config_from(parse_args(["--no-cudnn-benchmark"])).cudnn_benchmark
    monkeypatch.delenv("COMMANDLINE_ARGS")
    monkeypatch.delenv("WORKER_CHECKPOINT", raising=False)
    with pytest.raises(SystemExit):
        parse_args(["--port", "7860"])  # neither a checkpoint nor --tiny


def test_infotext_and_model_listing_follow_automatic1111() -> None:
    model = ModelInfo.from_checkpoint("/models/dream, v2.safetensors", "abcdef0123")
    req = Txt2ImgRequest(prompt="a fox", negative_prompt="blurry", steps=20, cfg_scale=7.5)
    text = make_infotext(req, 42, model)
    assert text == (
        "a fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, "
        'Seed: 42, Size: 512x512, Model hash: abcdef0123, Model: "dream, v2"'
    )
    assert model.title == "dream, v2.safetensors [abcdef0123]"
    assert {"dream, v2", model.title, "/models/dream, v2.safetensors"} <= model.aliases


def test_progress_uses_progressapis_arithmetic() -> None:
    job = {
        "job": "scripts_txt2img",
        "job_count": 2,
        "job_no": 1,
        "job_timestamp": "x",
        "sampling_step": 5,
        "sampling_steps": 10,
        "time_start": 100.0,
        "interrupted": False,
    }
    body = progress_body(job, now=110.0)
    assert body["progress"] == pytest.approx(0.01 + 0.5 + 0.25)
    assert body["eta_relative"] == pytest.approx(10 / 0.76 - 10)
    assert body["state"]["skipped"] is False and "time_start" not in body["state"]


def test_encoding_formats_and_the_pool() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    png = Image.open(io.BytesIO(encode(pixels, "png", infotext="hello")))
    assert png.format == "PNG" and png.size == (48, 40) and png.info["parameters"] == "hello"
    assert np.array_equal(np.asarray(png), pixels)  # lossless
    assert Image.open(io.BytesIO(encode(pixels, "jpg", quality=50))).format == "JPEG"
    assert Image.open(io.BytesIO(encode(pixels, "webp"))).format == "WEBP"
    pool = EncoderPool(threads=2)
    try:
        futures = [pool.submit(pixels, "png") for _ in range(4)]
        assert len({f.result() for f in futures}) == 1
    finally:
        pool.shutdown()


def test_the_compiled_models_serve_only_the_shapes_they_were_warmed_for() -> None:
    import torch

    from worker.engine import Engine, Job
    from worker.pipelines import build_random

    pipe = build_random("sd15", "tiny", device=torch.device("cpu"), dtype=torch.float32)
    engine = Engine(pipe, compile_unet=True)  # torch.compile is lazy: nothing compiles here
    warmed = Job(prompt="", seed=0, width=512, height=512, steps=1, batch_size=16)
    other = Job(prompt="", seed=0, width=512, height=512, steps=1, batch_size=15)
    unguided = Job(prompt="", seed=0, width=512, height=512, steps=1, batch_size=16, cfg_scale=1)
    assert engine._unet_for(warmed, compile_shape=True) is engine._compiled_unet
    assert engine.compiled_shapes == [(32, 64, 64)]
    assert engine._unet_for(warmed, compile_shape=False) is engine._compiled_unet
    assert engine._unet_for(other, compile_shape=False) is engine._eager_unet
    assert engine._unet_for(unguided, compile_shape=False) is engine._eager_unet
    assert Engine(pipe)._unet_for(warmed, compile_shape=True) is pipe.unet
    assert engine._decoder_for(warmed, compile_shape=True) is engine._compiled_decoder
    # the decoder sees latents once per image, guided or not
    assert engine._decoder_for(unguided, compile_shape=False) is engine._compiled_decoder
    assert engine._decoder_for(other, compile_shape=False) is engine._eager_decoder
    assert Engine(pipe)._decoder_for(warmed, compile_shape=True) is pipe.vae.decoder


def test_cudnns_autotuner_runs_only_on_warmed_shapes_and_only_in_its_engine() -> None:
    import torch

    from worker.engine import Engine, Job
    from worker.pipelines import build_random

    pipe = build_random("sd15", "tiny", device=torch.device("cpu"), dtype=torch.float32)
    seen: list[bool] = []
    pipe.unet.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.benchmark))
    tuned = Engine(pipe, cudnn_benchmark=True)
    plain = Engine(pipe)
    warmed = Job(prompt="", seed=0, width=64, height=64, steps=1, batch_size=1)
    other = Job(prompt="", seed=0, width=64, height=64, steps=1, batch_size=2)
    unguided = Job(prompt="", seed=0, width=64, height=64, steps=1, batch_size=2, cfg_scale=1)
    before = torch.backends.cudnn.benchmark
    try:
        tuned.warm_up([warmed])
        tuned.generate(warmed, lambda *_: None)
        tuned.generate(other, lambda *_: None)  # a new shape: no search in the middle of a call
        tuned.generate(unguided, lambda *_: None)  # the UNet's batch of `other`, not its decoder's
        plain.generate(warmed, lambda *_: None)
        assert seen == [True, True, False, False, False]
    finally:
        torch.backends.cudnn.benchmark = before


def test_freeing_memory_after_a_failure_puts_both_eager_models_back() -> None:
    import torch

    from worker.engine import Engine
    from worker.pipelines import build_random

    pipe = build_random("sd15", "tiny", device=torch.device("cpu"), dtype=torch.float32)
    engine = Engine(pipe, compile_unet=True)  # lazy: nothing compiles
    pipe.unet, pipe.vae.decoder = engine._compiled_unet, engine._compiled_decoder
    engine._free_memory()
    assert pipe.unet is engine._eager_unet and pipe.vae.decoder is engine._eager_decoder
