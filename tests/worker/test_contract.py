"""The contract: what the render loop relies on from an automatic1111 server, checked against
the worker with the same client code that talks to the placeholder renderer and to a real one."""

from __future__ import annotations

import base64
import io
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from subconscious.errors import RendererOutOfMemory
from subconscious.logic.render_run import render_task
from subconscious.models import RenderTask, Sampler
from subconscious.render.a1111 import A1111Client
from tests import builders
from tests.worker.conftest import AUTH, OOM_ABOVE, WorkerProcess

pytestmark = pytest.mark.worker

TXT2IMG = "/sdapi/v1/txt2img"


def task(seed: int, batch_size: int, width: int = 64, height: int = 64, **extra: Any) -> RenderTask:
    fields: dict[str, Any] = {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "steps": 3,
        "cfg_scale": Decimal("7.5"),
        "sampler": Sampler.DPM_2M_KARRAS,
        **extra,
    }
    return builders.render_task(seed, batch_size, width=width, height=height, **fields)


def a1111_client(worker: WorkerProcess, auth: tuple[str, str] | None = AUTH) -> A1111Client:
    return A1111Client(worker.url, auth=auth, timeout_s=60.0, allow_private=True)


def txt2img(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64, **fields}
    return client.post(TXT2IMG, json=body)


def decode(image_b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(image_b64)))
    image.load()
    return image


# --------------------------------------------------------------------------- the client's view


def test_the_render_loops_client_finds_it_ready_and_gets_pngs_with_consecutive_seeds(
    worker: WorkerProcess,
) -> None:
    client = a1111_client(worker)
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
    pixels = [np.asarray(Image.open(io.BytesIO(image.png))) for image in images]
    assert not np.array_equal(pixels[0], pixels[1]), "each seed draws its own noise"


def test_an_out_of_memory_batch_is_recognised_and_split_and_the_worker_stays_healthy(
    worker: WorkerProcess,
) -> None:
    client = a1111_client(worker)
    try:
        with pytest.raises(RendererOutOfMemory):
            client.txt2img(task(seed=10, batch_size=OOM_ABOVE + 1))
        # What the render loop does on out-of-memory: the same seeds in two smaller calls.
        images = render_task(client, task(seed=10, batch_size=OOM_ABOVE + 2))
        assert client.is_ready()
    finally:
        client.close()
    assert [image.seed for image in images] == list(range(10, 10 + OOM_ABOVE + 2))
    with worker.client() as http:
        stats = http.get("/worker/v1/stats").json()
    assert stats["out_of_memory"] >= 2
    assert stats["busy"] == 0


def test_out_of_memory_answers_automatic1111s_error_shape(worker: WorkerProcess) -> None:
    with worker.client() as client:
        too_big = txt2img(client, batch_size=OOM_ABOVE + 1)
        fits = txt2img(client, batch_size=OOM_ABOVE)
    assert too_big.status_code == 500
    error = too_big.json()
    assert set(error) == {"error", "detail", "body", "errors"}
    assert error["error"] == "OutOfMemoryError"
    assert error["errors"].startswith("CUDA out of memory.")
    assert fits.status_code == 200 and len(fits.json()["images"]) == OOM_ABOVE


def test_health_needs_no_credential_and_a_refused_one_is_never_logged(
    worker: WorkerProcess,
) -> None:
    # 401s and the client's verdict on them: tests/contract (both servers).
    client = a1111_client(worker, auth=("subc", "wrong"))
    try:
        assert not client.is_ready()
    finally:
        client.close()
    with httpx.Client(base_url=worker.url, timeout=10) as anonymous:
        health = anonymous.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ready"}
    assert AUTH[1] not in worker.log_text()


# --------------------------------------------------------------------------- the wire format


def test_an_image_depends_on_its_seed_not_on_its_batch(worker: WorkerProcess) -> None:
    with worker.client() as client:
        pair = txt2img(client, seed=50, batch_size=2).json()["images"]
        alone = txt2img(client, seed=51, batch_size=1).json()["images"]
    batched = np.asarray(decode(pair[1]), dtype=np.int16)
    single = np.asarray(decode(alone[0]), dtype=np.int16)
    assert np.abs(batched - single).max() <= 2  # batched arithmetic may round differently


# Seeds, infotexts, 422s, a body that is not JSON, unknown checkpoints, options: tests/contract
# runs those against this server and the placeholder alike.


def test_unknown_samplers_are_refused(worker: WorkerProcess) -> None:
    with worker.client() as client:
        sampler = txt2img(client, sampler_name="LMS")
    assert sampler.status_code == 404
    assert sampler.json()["error"] == "HTTPException"
    assert sampler.json()["detail"] == "Sampler not found"


def test_the_tiny_checkpoint_is_listed_and_samples_format_picks_the_image_format(
    worker: WorkerProcess,
) -> None:
    with worker.client() as client:
        models = client.get("/sdapi/v1/sd-models").json()
        jpeg = txt2img(client, override_settings={"samples_format": "jpg", "jpeg_quality": 90})
        webp = txt2img(client, override_settings={"samples_format": "webp"})
        png = txt2img(client)
    assert [m["model_name"] for m in models] == ["tiny-random-sd15"]
    assert decode(jpeg.json()["images"][0]).format == "JPEG"
    assert decode(webp.json()["images"][0]).format == "WEBP"
    assert decode(png.json()["images"][0]).format == "PNG"


# --------------------------------------------------------------------------- one at a time


def test_two_concurrent_requests_are_served_one_after_the_other(worker: WorkerProcess) -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def generate() -> None:
        with worker.client() as client:
            barrier.wait()
            statuses.append(txt2img(client, batch_size=2, steps=12).status_code)

    with worker.client() as client:
        before = client.get("/worker/v1/stats").json()
    threads = [threading.Thread(target=generate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with worker.client() as client:
        after = client.get("/worker/v1/stats").json()
    assert statuses == [200, 200]
    assert after["generations"] - before["generations"] == 2
    assert after["max_busy"] == 1
    first, second = sorted(after["spans"][-2:])
    assert first[1] <= second[0], "the second generation started before the first ended"


def test_interrupt_cuts_a_generation_short_and_it_still_answers(worker: WorkerProcess) -> None:
    result: dict[str, httpx.Response] = {}

    def generate() -> None:
        with worker.client() as client:
            result["response"] = txt2img(client, steps=1000, n_iter=3)

    thread = threading.Thread(target=generate)
    thread.start()
    with worker.client() as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = client.get("/sdapi/v1/progress").json()["state"]
            if state["sampling_step"] > 2:
                break
            time.sleep(0.02)
        assert state["sampling_steps"] == 1000 and state["job_count"] == 3
        assert client.post("/sdapi/v1/interrupt").status_code == 200
        thread.join(timeout=60)
        idle = client.get("/sdapi/v1/progress").json()
    response = result["response"]
    assert response.status_code == 200
    # The interrupted batch is decoded and returned; the job's later batches never start.
    assert len(response.json()["images"]) == 1
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
