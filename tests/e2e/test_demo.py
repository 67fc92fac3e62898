"""``make demo`` end to end: two customers, two marketplaces through their real adapters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.local import demo
from subconscious.logic import services as services_module

pytestmark = pytest.mark.e2e


def test_demo_rents_through_two_real_adapters_and_keeps_its_quotes(
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
    assert result["images"] == 10 * 6 + 400 and result["orders"] == 2
    assert result["state"] == "completed" and result["over_quote"] == 0
    assert result["market_providers"] == ["vast", "tensordock"]
    # the founding order on Vast.ai; once Vast ran dry, the rush on TensorDock
    assert set(result["machines_by_provider"]) == {"vast", "tensordock"}
    assert len(list(tmp_path.rglob("*.png"))) == 460
