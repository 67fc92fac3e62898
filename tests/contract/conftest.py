"""Both automatic1111 servers we run, behind one fixture: the local stack's placeholder
(:mod:`infra.local.renderer`) and the GPU worker's server (:mod:`worker.server`), each started
in this process on a free port with a Basic-auth credential.

The worker's diffusers engine is replaced by :class:`StubEngine`, which paints each image one
colour from its seed: the contract is what the HTTP server says (routes, validation, ``info``,
seeds, errors, auth), all of it in :mod:`worker.protocol` and :mod:`worker.server`, none of it
in the pipeline. ``tests/worker`` drives the real engine (tiny random weights on the CPU).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from infra.local.renderer import Renderer, RendererConfig, RendererHTTPServer
from worker.protocol import ModelInfo, idle_job

AUTH = ("subc", "s3cret-pass")


@dataclass(frozen=True)
class Server:
    """One running server: its name (the test id), address, credential and checkpoint."""

    name: str
    url: str
    auth: tuple[str, str]
    model: ModelInfo

    def client(self, auth: tuple[str, str] | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth or self.auth, timeout=timeout)

    def anonymous(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


class StubEngine:
    """:class:`worker.engine.Engine`'s interface without a pipeline: batch after batch under a
    lock, each image filled with a colour from its seed, progress and interrupt kept as the
    engine keeps them."""

    def __init__(self) -> None:
        from worker.engine import Stats

        self.compiled = False
        self.compiled_shapes: list[tuple[int, int, int]] = []
        self.stats = Stats()
        self._lock = threading.Lock()
        self._interrupted = threading.Event()

    def progress(self) -> dict[str, Any]:
        return {**idle_job(), "interrupted": self._interrupted.is_set()}

    def interrupt(self) -> None:
        self._interrupted.set()

    def generate(self, job: Any, on_batch: Any) -> None:
        with self._lock:
            self._interrupted.clear()
            seeds = job.seeds
            for batch in range(job.n_iter):
                mine = seeds[batch * job.batch_size : (batch + 1) * job.batch_size]
                pixels = np.stack(
                    [np.full((job.height, job.width, 3), s % 256, dtype=np.uint8) for s in mine]
                )
                on_batch(batch, pixels, mine)
            self.stats.generations += 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("server never listened")


def _renderer() -> Iterator[Server]:
    renderer = Renderer(RendererConfig())
    http = RendererHTTPServer(("127.0.0.1", 0), renderer, AUTH)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = http.server_address[1]
    try:
        yield Server("renderer", f"http://127.0.0.1:{port}", AUTH, renderer.model)
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)


def _worker() -> Iterator[Server]:
    from worker.encode import EncoderPool
    from worker.server import Worker, WorkerConfig, create_app

    worker = Worker(WorkerConfig(tiny=True))
    # What Worker.load leaves behind, without loading: a model, an encoder, a ready engine.
    worker.model = ModelInfo.from_checkpoint("/models/stub-sd15.safetensors", "abcdef0123")
    worker.set_options({"sd_model_checkpoint": worker.model.title})
    worker.encoder = EncoderPool(threads=1)
    worker.engine = StubEngine()  # type: ignore[assignment]
    worker.status = "ready"
    port = _free_port()
    config = uvicorn.Config(
        create_app(worker, AUTH), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        _wait_listening(port)
        yield Server("worker", f"http://127.0.0.1:{port}", AUTH, worker.model)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        worker.encoder.shutdown()


@pytest.fixture(
    scope="module",
    # The worker's server imports torch (its engine's types): the worker marker selects it.
    params=["renderer", pytest.param("worker", marks=pytest.mark.worker)],
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each protocol case runs once against each server."""
    yield from (_renderer() if request.param == "renderer" else _worker())
