"""``make demo`` end to end: three customers, at least three markets through their real
adapters, EC2 (on moto) among them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.local import demo
from subconscious import services as services_module

pytestmark = pytest.mark.e2e


def test_demo_rents_through_three_real_adapters_including_ec2_and_keeps_its_quotes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = dict(os.environ)
    try:
        code = demo.main(["--per-prompt", "6", "--out", str(tmp_path), "--images-per-s", "200"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        services_module.reset()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert result["images"] == 10 * 6 + 400 + 80 and result["orders"] == 3
    assert result["state"] == "completed" and result["over_quote"] == 0
    assert result["market_providers"] == ["vast", "runpod", "tensordock", "ec2"]
    # the founding order on Vast.ai (the cheapest); once Vast ran dry, the rush elsewhere:
    # RunPod first (TensorDock's emulated hosts are RunPod's rows marked up), TensorDock too
    # when the dispatch wants more machines than RunPod's cheaper offers (a loaded host)
    # and once every marketplace is sold out, the third customer's order on EC2
    rented = set(result["machines_by_provider"])
    assert {"vast", "runpod", "ec2"} <= rented <= {"vast", "runpod", "tensordock", "ec2"}
    assert len(list(tmp_path.rglob("*.png"))) == 540
