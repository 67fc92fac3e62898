"""`subconscious run` of the founding example (1000 images from 10 prompts by the end of the day,
under 3 cents an image) on the local stack: it ends with the images and the manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from infra.local.stack import LocalStack
from subconscious.render.png import png_size
from subconscious_cli.main import main
from tests.local_stacks import running_stack

pytestmark = pytest.mark.e2e

PROMPTS = [f"founding prompt {i}: a lighthouse at dawn, style {i}" for i in range(10)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(images_per_s=400, machine_logs=tmp_path / "machines") as local:
        yield local


def test_run_of_the_founding_example_ends_with_images_and_manifest(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "by the end of the day"; this late in the evening, by the end of tomorrow
    deadline = "eod" if datetime.now().astimezone().hour < 22 else "tomorrow 23:59"
    out = tmp_path / "images"
    argv = ["--api-url", stack.api_url, "--api-key", stack.api_key, "run"]
    for prompt in PROMPTS:
        argv += ["--prompt", prompt]
    argv += ["--count", "100", "--deadline", deadline, "--max-price", "0.03"]
    argv += ["--out", str(out), "--poll", "0.5", "--timeout", "420"]

    code = main(argv)

    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "state completed" in printed
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 1000
    assert all(png_size(p.read_bytes()) == (512, 512) for p in pngs)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").open()]
    assert sorted(m["file"] for m in manifest) == [p.name for p in pngs]
    assert {m["prompt"] for m in manifest} == set(PROMPTS)
    assert len({m["order_id"] for m in manifest}) == 1
    for entry in manifest:
        assert PROMPTS[entry["prompt_index"]] == entry["prompt"]
        assert entry["file"] == f"{entry['prompt_index']:03d}-{entry['seed']}.png"
