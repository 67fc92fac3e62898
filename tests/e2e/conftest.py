"""Shared by the end-to-end tests: local stacks started per test, and the fault suite's table."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.emulated_market import MachineFaults
from infra.local.stack import LocalStack
from subconscious import services as services_module
from tests.e2e.fault_report import RESULTS_ENV, load, table

# Small values so that a failure is handled in seconds, not minutes (see docs/reliability.md).
FAULT_SETTINGS = {
    "SUBC_TASK_MAX_ATTEMPTS": "2",
    "SUBC_MACHINE_SERVE_DEADLINE_S": "4",
}
HEALTHY = MachineFaults(startup_delay_s=0.3, images_per_s=40)

StartStack = Callable[..., LocalStack]


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StartStack]:
    """Start a local stack with the fault suite's settings (``settings`` are added to them);
    every stack started is stopped, and the environment restored, after the test. Machine
    logs go to the test's own folder (pytest keeps the last runs' and prunes older ones)."""
    saved = dict(os.environ)
    started: list[LocalStack] = []

    def start(
        *,
        default_faults: MachineFaults = HEALTHY,
        settings: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> LocalStack:
        kwargs.setdefault("machine_logs", tmp_path / f"machines-{len(started)}")
        stack = LocalStack(
            dispatch_every_s=0.5,
            default_faults=default_faults,
            settings={**FAULT_SETTINGS, **(settings or {})},
            **kwargs,
        )
        started.append(stack)
        return stack.start()

    try:
        yield start
    finally:
        for stack in started:
            stack.stop(drain_s=15)
        os.environ.clear()
        os.environ.update(saved)
        services_module.reset()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """After a run with $SUBC_FAULT_RESULTS set (``make faults``), the table of figures."""
    path = os.environ.get(RESULTS_ENV)
    if not path or not Path(path).exists() or hasattr(config, "workerinput"):
        return
    terminalreporter.section("fault suite: scenarios → figures")
    terminalreporter.write(table(load(Path(path))))
