"""The local stack's setting that rents the worker instead of the placeholder renderer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.local.emulated_market import EmulatedMarket, MachineFaults
from subconscious.models import Sampler
from subconscious.render.a1111 import A1111Client
from tests.worker.conftest import READY_TIMEOUT_S
from tests.worker.test_contract import task

pytestmark = pytest.mark.worker


def test_the_renderer_setting_defaults_to_the_placeholder_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SUBC_LOCAL_RENDERER", raising=False)
    assert MachineFaults().renderer == "placeholder"
    monkeypatch.setenv("SUBC_LOCAL_RENDERER", "worker")
    faults = MachineFaults(oom_above_batch=3)
    assert faults.renderer == "worker"
    assert faults.renderer_args() == ["--tiny", "--oom-above-batch", "3"]
    with pytest.raises(ValueError, match="renderer must be one of"):
        MachineFaults(renderer="comfyui")


def test_the_emulated_market_rents_a_worker_the_render_loops_client_can_use(
    tmp_path: Path,
) -> None:
    offer: dict[str, object] = {
        "offer_id": "o-1",
        "gpu": "RTX 4090",
        "usd_per_hour": "0.40",
        "provider": "Vast.ai",
    }
    with EmulatedMarket(
        offers=[offer], default_faults=MachineFaults(renderer="worker"), log_dir=tmp_path
    ) as market:
        machine = market.launch("o-1", label="subc-test", api_auth="subc:machine-secret")
        client = A1111Client(
            str(machine["url"]), auth=("subc", "machine-secret"), timeout_s=60, allow_private=True
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not client.is_ready():
                assert time.monotonic() < deadline, market.log_path(str(machine["machine_id"]))
                time.sleep(0.2)
            images = client.txt2img(task(seed=5, batch_size=2, sampler=Sampler.EULER_A))
        finally:
            client.close()
        log = market.log_path(str(machine["machine_id"])).read_text()
    assert [image.seed for image in images] == [5, 6]
    assert "worker[" in log and "machine-secret" not in log
