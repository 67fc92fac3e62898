"""One local stack for a test, started and stopped the same way everywhere: the environment
and the composition root the stack changed are put back afterwards, so the next test in the
same process starts clean."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.local.emulated_market import MachineFaults
from infra.local.stack import LocalStack
from subconscious import services as services_module


@contextmanager
def running_stack(*, images_per_s: float = 200, **options: Any) -> Iterator[LocalStack]:
    """A started local stack whose dispatch ticks twice a second on a healthy market (machines
    up in 0.3 s rendering ``images_per_s``); ``options`` go to ``LocalStack``."""
    saved = dict(os.environ)
    options.setdefault("dispatch_every_s", 0.5)
    options.setdefault(
        "default_faults", MachineFaults(startup_delay_s=0.3, images_per_s=images_per_s)
    )
    local = LocalStack(**options).start()
    try:
        yield local
    finally:
        local.stop(drain_s=30)
        os.environ.clear()
        os.environ.update(saved)
        services_module.reset()
