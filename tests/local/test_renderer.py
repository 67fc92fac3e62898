"""The placeholder automatic1111 server, driven over HTTP as the backend drives a real one."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from infra.local.renderer import DEFAULT_MODEL_TITLE, build_png

REPO_ROOT = Path(__file__).resolve().parents[2]
TXT2IMG = "/sdapi/v1/txt2img"
SD_MODELS = "/sdapi/v1/sd-models"


@dataclass
class Renderer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def client(self, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


StartRenderer = Callable[..., Renderer]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"renderer exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("renderer never started listening")


@pytest.fixture
def start_renderer(tmp_path: Path) -> Iterator[StartRenderer]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*flags: str, auth: str | None = None) -> Renderer:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "RENDERER_API_AUTH"}
        if auth is not None:
            env["RENDERER_API_AUTH"] = auth
        log_path = tmp_path / f"renderer-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "infra.local.renderer",
                    "--port",
                    str(port),
                    "--exit-with-parent",
                    *flags,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        _wait_listening(port, process)
        return Renderer(process, f"http://127.0.0.1:{port}", log_path)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def _txt2img(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"prompt": "a red fox in snow", "steps": 4, "width": 64, "height": 64, **fields}
    return client.post(TXT2IMG, json=body)


def _info(response: httpx.Response) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(response.json()["info"])
    return info


def _decode(image_b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(image_b64)))
    image.load()
    return image


def test_sd_models_answers_503_while_the_model_loads_then_200(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer("--startup-delay-s", "1.0")
    with renderer.client() as client:
        loading = client.get(SD_MODELS)
        assert loading.status_code == 503
        assert loading.json() == {"detail": "model loading"}
        assert _txt2img(client).status_code == 503

        deadline = time.monotonic() + 5
        while (response := client.get(SD_MODELS)).status_code == 503:
            assert time.monotonic() < deadline, "model never finished loading"
            time.sleep(0.05)
    assert response.status_code == 200
    assert response.json() == [
        {
            "title": DEFAULT_MODEL_TITLE,
            "model_name": "sd15-placeholder",
            "hash": "0000000000",
            "sha256": "0" * 64,
            "filename": "/models/sd15-placeholder.safetensors",
            "config": None,
        }
    ]


# Sizes, seeds, infotexts, 422s, 401s, options and models: tests/contract runs those against
# this server and the worker's alike.


def test_txt2img_images_are_build_pngs_drawing_and_the_same_seed_draws_the_same_bytes(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer()
    with renderer.client() as client:
        response = _txt2img(client, seed=1234, batch_size=2, n_iter=2, width=320, height=192)
        again = _txt2img(client, seed=1234, batch_size=2, n_iter=2, width=320, height=192)

    assert response.status_code == 200
    body = response.json()
    info = _info(response)
    for image_b64, infotext, seed in zip(
        body["images"], info["infotexts"], info["all_seeds"], strict=True
    ):
        # The server's bytes are exactly what the helper draws for the same inputs.
        assert base64.b64decode(image_b64) == build_png(
            "a red fox in snow", seed, 320, 192, infotext
        )
    assert len(set(body["images"])) == 4
    assert again.json()["images"] == body["images"]


def test_basic_auth_is_required_when_configured_and_never_logged(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer(auth="alice:s3cret-pass")
    with renderer.client() as anonymous:
        missing = anonymous.get(SD_MODELS)
    with renderer.client(auth=("alice", "wrong")) as wrong_client:
        wrong = wrong_client.get(SD_MODELS)
        wrong_txt2img = _txt2img(wrong_client)
    with renderer.client(auth=("alice", "s3cret-pass")) as client:
        ok = client.get(SD_MODELS)

    for refused in (missing, wrong, wrong_txt2img):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Basic"
    assert wrong.json()["detail"] == "Incorrect username or password"
    assert ok.status_code == 200

    renderer.process.send_signal(signal.SIGTERM)
    renderer.process.wait(timeout=5)
    log = renderer.log_text()
    assert f"GET {SD_MODELS} 401" in log
    assert f"GET {SD_MODELS} 200" in log
    assert "s3cret" not in log


def test_batches_above_the_oom_limit_fail_and_smaller_ones_still_work(
    start_renderer: StartRenderer,
) -> None:
    with start_renderer("--oom-above-batch", "2").client() as client:
        too_big = _txt2img(client, batch_size=3)
        fits = _txt2img(client, batch_size=2)
        healthy = client.get(SD_MODELS)
    assert too_big.status_code == 500
    error = too_big.json()
    assert set(error) == {"error", "detail", "body", "errors"}
    assert error["error"] == "OutOfMemoryError"
    assert error["errors"].startswith("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert fits.status_code == 200
    assert len(fits.json()["images"]) == 2
    assert healthy.status_code == 200


def test_error_rate_one_fails_every_generation_with_the_a1111_error_shape(
    start_renderer: StartRenderer,
) -> None:
    with start_renderer("--error-rate", "1").client() as client:
        responses = [_txt2img(client) for _ in range(3)]
    for response in responses:
        assert response.status_code == 500
        assert response.json()["error"] == "RuntimeError"
        assert response.json()["detail"] == ""


def test_crash_after_images_drops_the_connection_and_exits_17(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer("--crash-after-images", "3")
    with renderer.client() as client:
        assert _txt2img(client, batch_size=2).status_code == 200
        with pytest.raises(httpx.TransportError):
            _txt2img(client, batch_size=2)
    assert renderer.process.wait(timeout=5) == 17


def test_crash_on_call_exits_before_answering_the_first_generation(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer("--crash-on-call")
    with renderer.client() as client:
        assert client.get(SD_MODELS).status_code == 200  # it serves until a generation comes
        with pytest.raises(httpx.TransportError):
            _txt2img(client, batch_size=1)
    assert renderer.process.wait(timeout=5) == 17
    assert "crash-on-call" in renderer.log_text()


def test_a_fail_prompt_always_answers_500_and_other_prompts_render(
    start_renderer: StartRenderer,
) -> None:
    with start_renderer("--fail-prompt", "POISON").client() as client:
        poisoned = [_txt2img(client, prompt=f"a POISON apple {i}") for i in range(3)]
        healthy = _txt2img(client, prompt="a healthy apple", batch_size=2)
    for response in poisoned:
        assert response.status_code == 500
        error = response.json()
        assert set(error) == {"error", "detail", "body", "errors"}  # the error-rate shape
        assert (error["error"], error["detail"]) == ("RuntimeError", "")
        assert "--fail-prompt" in error["errors"]
    assert healthy.status_code == 200
    assert len(healthy.json()["images"]) == 2


def test_a_crash_prompt_kills_the_process_and_other_prompts_do_not(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer("--crash-prompt", "KILLER")
    with renderer.client() as client:
        assert _txt2img(client, prompt="a gentle prompt").status_code == 200
        with pytest.raises(httpx.TransportError):
            _txt2img(client, prompt="the KILLER prompt")
    assert renderer.process.wait(timeout=5) == 17
    assert "crash-prompt" in renderer.log_text()


def test_an_empty_poison_prompt_is_refused() -> None:
    from infra.local.renderer import build_arg_parser

    for flag in ("--fail-prompt", "--crash-prompt"):
        with pytest.raises(SystemExit):
            build_arg_parser().parse_args(["--port", "1", f"{flag}="])
    args = build_arg_parser().parse_args(["--port", "1", "--fail-prompt=-x", "--crash-on-call"])
    assert (args.fail_prompt, args.crash_on_call, args.crash_prompt) == ("-x", True, None)


def test_concurrent_generations_are_serialised(start_renderer: StartRenderer) -> None:
    # 3 images at 10 images/s: each generation takes 0.3 s.
    renderer = start_renderer("--images-per-s", "10")
    finished: list[float] = []
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def generate() -> None:
        with renderer.client() as client:
            barrier.wait()
            statuses.append(_txt2img(client, batch_size=3).status_code)
            finished.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=generate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert statuses == [200, 200]
    first, second = sorted(finished)
    # Run in parallel they would finish together; the slack covers response transfer only.
    assert second - first >= 0.25
    assert second - started >= 0.6


def test_interrupt_ends_the_generation_early_and_progress_tracks_it(
    start_renderer: StartRenderer,
) -> None:
    # 20 batches of one image at 10 images/s: two seconds if nobody interrupts.
    renderer = start_renderer("--images-per-s", "10")
    result: dict[str, httpx.Response] = {}

    def generate() -> None:
        with renderer.client() as client:
            result["response"] = _txt2img(client, n_iter=20, steps=20)

    started = time.monotonic()
    worker = threading.Thread(target=generate)
    worker.start()
    with renderer.client() as client:
        deadline = time.monotonic() + 3
        while True:
            progress = client.get("/sdapi/v1/progress", params={"skip_current_image": "true"})
            state = progress.json()["state"]
            if state["job_count"] == 20 and progress.json()["progress"] > 0:
                break
            assert time.monotonic() < deadline, "generation never showed up in progress"
            time.sleep(0.01)
        assert state["sampling_steps"] == 20
        assert state["job_timestamp"] != "0"
        interrupt = client.post("/sdapi/v1/interrupt")
        worker.join(timeout=5)
        idle = client.get("/sdapi/v1/progress").json()

    assert interrupt.status_code == 200
    assert interrupt.json() is None
    response = result["response"]
    assert response.status_code == 200
    assert 1 <= len(response.json()["images"]) < 20
    assert time.monotonic() - started < 1.5
    assert idle["progress"] == 0
    assert idle["state"]["job_count"] == 0


def test_sigterm_stops_the_server_promptly_even_mid_generation(
    start_renderer: StartRenderer,
) -> None:
    renderer = start_renderer("--images-per-s", "1")
    errors: list[BaseException] = []

    def generate() -> None:
        try:
            with renderer.client() as client:
                _txt2img(client, batch_size=5)
        except httpx.TransportError as exc:
            errors.append(exc)

    worker = threading.Thread(target=generate)
    worker.start()
    time.sleep(0.3)
    stopped_at = time.monotonic()
    renderer.process.send_signal(signal.SIGTERM)
    assert renderer.process.wait(timeout=3) == 0
    assert time.monotonic() - stopped_at < 1.5
    worker.join(timeout=5)
    assert len(errors) == 1


def test_build_png_is_deterministic_labelled_and_fast() -> None:
    infotext = "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 512x512"
    first = build_png("a lighthouse at dusk " * 20, 7, 512, 512, infotext)
    assert first == build_png("a lighthouse at dusk " * 20, 7, 512, 512, infotext)
    assert first != build_png("a lighthouse at dusk " * 20, 8, 512, 512, infotext)
    image = _decode(base64.b64encode(first).decode())
    assert (image.size, image.mode) == ((512, 512), "RGB")
    assert image.info["parameters"] == infotext
    # Non-latin text must neither crash the label nor be lost from the metadata.
    unicode_png = build_png("東京の夜景", 1, 64, 64, "東京の夜景\nSeed: 1")
    assert (
        _decode(base64.b64encode(unicode_png).decode()).info["parameters"] == "東京の夜景\nSeed: 1"
    )

    timings = []
    for seed in range(20):
        started = time.perf_counter()
        build_png("a lighthouse at dusk", seed, 512, 512, infotext)
        timings.append(time.perf_counter() - started)
    # Typically ~5 ms; the bound only catches drawing pixel by pixel in Python (~1 s).
    assert sorted(timings)[len(timings) // 2] < 0.05
