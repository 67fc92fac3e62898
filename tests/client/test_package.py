"""`pip install ./client` into a clean venv, offline, from the lock's wheels: what a customer
does (README), checked on every run. build/wheels is filled by `make .venv/.installed` (the one
step that needs the package index); pip here sees no index and no configuration, only it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "build" / "wheels"
BUDGET_S = 60


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _clean_env(home: Path) -> dict[str, str]:
    """No PIP_* variable, no pip configuration file: nothing but the flags given below."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "HOME": str(home), "PIP_NO_INPUT": "1"}


def test_the_client_installs_offline_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    if not any(WHEELS.glob("httpx-*.whl")):
        pytest.skip(
            f"no wheelhouse in {WHEELS}: `make .venv/.installed` fills it (the step that may "
            "reach the package index)"
        )
    started = time.monotonic()
    # a copy, so that the build leaves nothing in the tree and parallel runs do not meet
    source = tmp_path / "client"
    shutil.copytree(
        ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    venv = tmp_path / "venv"
    env = _clean_env(tmp_path)

    def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(a) for a in argv], env=env, capture_output=True, text=True, timeout=BUDGET_S
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done

    run(sys.executable, "-m", "venv", venv)
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "install", "--quiet", "--no-index", "--find-links", WHEELS, source)

    helped = run(venv / "bin" / "subconscious", "--help").stdout
    for command in ("run", "quote", "order", "status", "list", "download", "market"):
        assert command in helped
    version = run(venv / "bin" / "subconscious", "--version").stdout
    assert version.strip() == "subconscious 0.2.0"
    # the customer's package carries none of the server's
    probe = "import importlib.util as u; print(u.find_spec('subconscious'))"
    assert run(venv / "bin" / "python", "-c", probe).stdout.strip() == "None"
    # what got installed is what the lock pins
    pins = _lock_pins()
    frozen = run(*pip, "freeze").stdout.splitlines()
    for line in frozen:
        if line.startswith("subconscious-client @ "):
            continue
        name, _, version = line.partition("==")
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert pins.get(key) == version, f"{line} is not the lock's {key}=={pins.get(key)}"
    assert {"httpx", "pydantic"} <= {
        re.sub(r"[-_.]+", "-", line.partition("==")[0]).lower() for line in frozen
    }
    elapsed = time.monotonic() - started
    print(f"clean venv + offline install + --help: {elapsed:.1f} s")
    assert elapsed < BUDGET_S
