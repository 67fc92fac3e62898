"""Starting a worker: readiness, the model sources, and automatic1111's command line."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.worker.conftest import READY_TIMEOUT_S, StartWorker, WorkerProcess, wait_ready

pytestmark = pytest.mark.worker


def test_it_answers_503_until_loaded_and_warmed_up_then_200(worker: WorkerProcess) -> None:
    # Importing torch takes seconds after the port opens: "loading" is always seen first.
    assert worker.statuses_until_ready == [503, 200]
    log = worker.log_text()
    assert log.index("listening on") < log.index("warming up") < log.index("ready in")
    with worker.client() as client:
        stats = client.get("/worker/v1/stats").json()
    assert stats["status"] == "ready" and len(stats["warmup_s"]) == 1


def test_sdxl_with_automatic1111s_flags_and_commandline_args(start_worker: StartWorker) -> None:
    # Vast.ai passes the flags as arguments and the credential in COMMANDLINE_ARGS.
    worker = start_worker(
        "--api",
        "--nowebui",
        "--tiny",
        "--model-kind",
        "sdxl",
        auth=None,
        env={"COMMANDLINE_ARGS": "--api-auth vast:pass-word"},
    )
    wait_ready(worker)
    with worker.client(auth=("vast", "pass-word")) as client:
        response = client.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": "a fox",
                "seed": 3,
                "batch_size": 2,
                "steps": 2,
                "width": 64,
                "height": 80,
            },
        )
        refused = httpx.get(f"{worker.url}/sdapi/v1/options", timeout=10)
    assert response.status_code == 200
    assert len(response.json()["images"]) == 2
    assert refused.status_code == 401


def test_it_loads_a_diffusers_folder(start_worker: StartWorker, tmp_path: Path) -> None:
    import torch

    from worker.pipelines import build_random

    folder = tmp_path / "tiny-sd15"
    build_random("sd15", "tiny", device=torch.device("cpu"), dtype=torch.float32).save_pretrained(
        folder
    )
    worker = start_worker("--checkpoint", str(folder), "--device", "cpu", "--warmup", "64x64")
    wait_ready(worker)
    with worker.client() as client:
        models = client.get("/sdapi/v1/sd-models").json()
        response = client.post(
            "/sdapi/v1/txt2img", json={"steps": 2, "width": 64, "height": 64, "seed": 1}
        )
    assert models[0]["model_name"] == "tiny-sd15"
    assert models[0]["filename"] == str(folder)
    assert response.status_code == 200


def test_a_checkpoint_that_cannot_load_ends_the_process(start_worker: StartWorker) -> None:
    worker = start_worker(
        "--checkpoint", "/nonexistent/model.safetensors", "--device", "cpu", may_exit=True
    )
    assert worker.process.wait(timeout=READY_TIMEOUT_S) == 3
    assert "model load failed" in worker.log_text()
