"""The automatic1111 protocol, the same cases against both of our servers (the local stack's
placeholder and the GPU worker's; see conftest): what the backend's client relies on, so that a
test passing against the placeholder says something about the worker and the other way round."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image

from subconscious.models import RenderTask, Sampler
from subconscious.render.a1111 import A1111Client
from tests import builders
from tests.contract.conftest import AUTH, Server
from worker.protocol import SEED_SPACE

TXT2IMG = "/sdapi/v1/txt2img"
SD_MODELS = "/sdapi/v1/sd-models"
OPTIONS = "/sdapi/v1/options"


def txt2img(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"prompt": "a red fox in snow", "steps": 4, "width": 64, "height": 64, **fields}
    return client.post(TXT2IMG, json=body)


def info_of(response: httpx.Response) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(response.json()["info"])
    return info


def decode(image_b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(image_b64)))
    image.load()
    return image


def a1111_client(server: Server, auth: tuple[str, str] | None = AUTH) -> A1111Client:
    return A1111Client(server.url, auth=auth, timeout_s=30.0, allow_private=True)


def task(seed: int, batch_size: int, width: int = 64, height: int = 64) -> RenderTask:
    return builders.render_task(
        seed,
        batch_size,
        width=width,
        height=height,
        prompt="a red fox in snow",
        negative_prompt="blurry",
        steps=3,
        cfg_scale=Decimal("7.5"),
        sampler=Sampler.DPM_2M_KARRAS,
    )


# --------------------------------------------------------------------------- txt2img


def test_the_render_loops_client_finds_it_ready_and_gets_pngs_with_consecutive_seeds(
    server: Server,
) -> None:
    client = a1111_client(server)
    try:
        assert client.is_ready()
        images = client.txt2img(task(seed=1000, batch_size=3, width=64, height=96))
    finally:
        client.close()
    # The client has checked each PNG's header against the size and the seeds against the task.
    assert [image.seed for image in images] == [1000, 1001, 1002]
    for image in images:
        png = Image.open(io.BytesIO(image.png))
        png.load()
        assert png.format == "PNG" and png.size == (64, 96) and png.mode == "RGB"
        assert f"Seed: {image.seed}" in png.info["parameters"]
        assert "Sampler: DPM++ 2M Karras" in png.info["parameters"]


@pytest.mark.parametrize(("width", "height"), [(320, 192), (72, 64)])
def test_n_iter_batches_carry_seeds_s_to_s_plus_n_minus_1_and_infotexts(
    server: Server, width: int, height: int
) -> None:
    with server.client() as client:
        response = txt2img(client, seed=1234, batch_size=2, n_iter=2, width=width, height=height)
    assert response.status_code == 200
    body = response.json()
    info = info_of(response)
    assert len(body["images"]) == 4 and len(info["infotexts"]) == 4
    assert info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert info["seed"] == 1234 and info["index_of_first_image"] == 0
    # automatic1111's get_fixed_seed: subseed -1 is a random one, counted up like the seeds.
    assert info["all_subseeds"] == [info["subseed"] + i for i in range(4)]
    assert info["all_prompts"] == ["a red fox in snow"] * 4
    assert (info["width"], info["height"], info["batch_size"], info["n_iter"]) == (
        width,
        height,
        2,
        2,
    )
    assert info["sd_model_hash"] == server.model.hash
    assert body["parameters"]["seed"] == 1234
    assert body["parameters"]["batch_size"] == 2
    assert body["parameters"]["send_images"] is True
    for image_b64, infotext, seed in zip(
        body["images"], info["infotexts"], info["all_seeds"], strict=True
    ):
        image = decode(image_b64)
        assert image.format == "PNG"
        assert image.size == (width, height)
        assert image.mode == "RGB"
        assert image.info["parameters"] == infotext
        assert f"Seed: {seed}, Size: {width}x{height}" in infotext


def test_seed_minus_one_picks_a_random_seed_and_counts_up_from_it(server: Server) -> None:
    with server.client() as client:
        response = txt2img(client, seed=-1, batch_size=3)
    info = info_of(response)
    seed = info["seed"]
    assert 0 <= seed < SEED_SPACE
    assert info["all_seeds"] == [seed, seed + 1, seed + 2]
    assert response.json()["parameters"]["seed"] == -1


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"prompt": "x", "width": "abc"}, ["body", "width"]),
        ({"prompt": "x", "width": 100}, ["body", "width"]),
        ({"width": 65}, ["body", "width"]),
        ({"prompt": "x", "height": 4096}, ["body", "height"]),
        ({"prompt": "x", "batch_size": 0}, ["body", "batch_size"]),
        ({"steps": "many"}, ["body", "steps"]),
        ({"prompt": 5}, ["body", "prompt"]),
        ({"seed": -2}, ["body", "seed"]),
        ({"enable_hr": True}, ["body", "enable_hr"]),
        (["not", "an", "object"], ["body"]),
    ],
)
def test_bad_requests_get_fastapis_422(server: Server, body: object, loc: list[str]) -> None:
    with server.client() as client:
        response = client.post(TXT2IMG, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_a_body_that_is_not_json_gets_422(server: Server) -> None:
    with server.client() as client:
        not_json = client.post(TXT2IMG, content=b"{nope", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["loc"] == ["body"]


# --------------------------------------------------------------------------- auth


def test_basic_auth_is_required_and_refusals_take_automatic1111s_shape(server: Server) -> None:
    with server.anonymous() as anonymous:
        missing = anonymous.get(SD_MODELS)
    with server.client(auth=("subc", "wrong")) as wrong_client:
        wrong = wrong_client.get(SD_MODELS)
        wrong_txt2img = txt2img(wrong_client)
    with server.client() as client:
        ok = client.get(SD_MODELS)
    for refused in (missing, wrong, wrong_txt2img):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Basic"
    assert missing.json() == {
        "error": "HTTPException",
        "detail": "Not authenticated",
        "body": "",
        "errors": "401: Not authenticated",
    }
    assert wrong.json()["detail"] == "Incorrect username or password"
    assert ok.status_code == 200


def test_a_wrong_credential_makes_the_client_say_not_ready(server: Server) -> None:
    client = a1111_client(server, auth=("subc", "wrong"))
    try:
        assert not client.is_ready()
    finally:
        client.close()


# --------------------------------------------------------------------------- models and options


def test_sd_models_lists_the_checkpoint(server: Server) -> None:
    with server.client() as client:
        models = client.get(SD_MODELS)
    assert models.status_code == 200
    assert models.json() == [server.model.listing()]
    (model,) = models.json()
    assert set(model) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert model["title"] == f"{model['model_name']}.safetensors [{model['hash']}]"


def test_options_report_the_checkpoint_and_reject_unknown_ones(server: Server) -> None:
    title = server.model.title
    with server.client() as client:
        options = client.get(OPTIONS).json()
        unknown = client.post(OPTIONS, json={"sd_model_checkpoint": "sdxl.safetensors"})
        override = txt2img(client, override_settings={"sd_model_checkpoint": "nope"})
        known = client.post(
            OPTIONS,
            json={"sd_model_checkpoint": server.model.model_name, "CLIP_stop_at_last_layers": 2},
        )
        by_title = client.post(OPTIONS, json={"sd_model_checkpoint": title})
        after = client.get(OPTIONS).json()
        missing = client.get("/sdapi/v2/nothing")
    assert options["sd_model_checkpoint"] == title
    assert options["samples_format"] == "png"
    assert unknown.status_code == 500
    assert unknown.json() == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": "model 'sdxl.safetensors' not found",
    }
    assert override.status_code == 500
    assert override.json()["error"] == "RuntimeError"
    assert "not found" in override.json()["errors"]
    assert known.status_code == 200 and known.json() is None
    assert by_title.is_success
    assert after["sd_model_checkpoint"] == title
    assert after["CLIP_stop_at_last_layers"] == 2
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "HTTPException",
        "detail": "Not Found",
        "body": "",
        "errors": "404: Not Found",
    }


# --------------------------------------------------------------------------- progress


def test_progress_between_jobs_and_interrupt_answer_automatic1111s_shapes(server: Server) -> None:
    with server.client() as client:
        idle = client.get("/sdapi/v1/progress", params={"skip_current_image": "true"})
        interrupt = client.post("/sdapi/v1/interrupt")
    assert idle.status_code == 200
    body = idle.json()
    assert set(body) == {"progress", "eta_relative", "state", "current_image", "textinfo"}
    assert body["progress"] == 0 and body["eta_relative"] == 0
    assert body["state"]["job_count"] == 0 and body["state"]["job_timestamp"] == "0"
    assert body["state"]["skipped"] is False
    assert set(body["state"]) == {
        "job",
        "job_count",
        "job_no",
        "job_timestamp",
        "sampling_step",
        "sampling_steps",
        "skipped",
        "interrupted",
    }
    assert interrupt.status_code == 200 and interrupt.json() is None
