"""The worker tier: ``python -m worker --tiny`` processes (real diffusers pipelines with tiny
random weights, on the CPU), driven over HTTP by the same client the render loop uses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = ("subc", "s3cret-pass")
# Importing torch and diffusers dominates start-up: seconds here, more on a loaded CI machine.
READY_TIMEOUT_S = 120.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    auth: tuple[str, str] | None
    statuses_until_ready: list[int] = field(default_factory=list)

    def client(self, timeout: float = 60.0, auth: tuple[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth or self.auth, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


StartWorker = Callable[..., WorkerProcess]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(
    log_dir: Path,
    *flags: str,
    auth: tuple[str, str] | None = AUTH,
    env: dict[str, str] | None = None,
    may_exit: bool = False,
) -> WorkerProcess:
    """Start a worker and return once it listens (not once it is ready), or has exited if
    ``may_exit``."""
    port = free_port()
    environment = {
        k: v for k, v in os.environ.items() if k not in ("WORKER_API_AUTH", "RENDERER_API_AUTH")
    }
    if auth is not None:
        environment["WORKER_API_AUTH"] = ":".join(auth)
    environment.update(env or {})
    log_path = log_dir / f"worker-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "--port", str(port), "--exit-with-parent", *flags],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, f"http://127.0.0.1:{port}", log_path, auth)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if may_exit:
                return worker
            raise AssertionError(f"worker exited with {process.returncode}: {worker.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return worker
        except OSError:
            time.sleep(0.05)
    worker.stop()
    raise AssertionError("worker never listened")


def wait_ready(worker: WorkerProcess, path: str = "/health") -> list[int]:
    """Poll ``path`` until it answers 200; returns the statuses seen, each change once."""
    seen: list[int] = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    with worker.client(timeout=5) as client:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited: {worker.log_text()}")
            status = client.get(path).status_code
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                worker.statuses_until_ready = seen
                return seen
            time.sleep(0.05)
    raise AssertionError(f"worker never became ready: {worker.log_text()}")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(
        *flags: str,
        auth: tuple[str, str] | None = AUTH,
        env: dict[str, str] | None = None,
        may_exit: bool = False,
    ) -> WorkerProcess:
        worker = launch(tmp_path, *flags, auth=auth, env=env, may_exit=may_exit)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


OOM_ABOVE = 4


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One tiny SD 1.5 worker shared by a module's tests: credential on, and CUDA's out-of-memory
    error injected for batches above 4."""
    process = launch(
        tmp_path_factory.mktemp("worker"), "--tiny", "--oom-above-batch", str(OOM_ABOVE)
    )
    try:
        wait_ready(process, "/sdapi/v1/sd-models")
        yield process
    finally:
        process.stop()
