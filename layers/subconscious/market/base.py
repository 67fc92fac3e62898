"""The provider interface every marketplace adapter implements.

Machines we rent carry a label ``subc-<run id>`` (``models/labels.py``): Teardown terminates
every machine with its run's label, and the reaper terminates labelled machines no live run
owns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from subconscious.models import Machine, Offer

_WORKER_KEY = re.compile(r"WORKER_[A-Z0-9_]+")
_WORKER_VALUE = re.compile(r"[A-Za-z0-9._/:,-]*")


def worker_environment(worker_env: Mapping[str, str] | None) -> dict[str, str]:
    """The lean worker's settings as an adapter may pass them on: ``WORKER_*`` names and plain
    values only, so none can replace the credential's variable or break an env file."""
    env = dict(worker_env or {})
    for key, value in env.items():
        if not _WORKER_KEY.fullmatch(key) or not _WORKER_VALUE.fullmatch(value):
            raise ValueError(f"not a worker setting an adapter passes on: {key!r}")
    return env


class Provider(Protocol):
    name: str

    def list_offers(self) -> list[Offer]: ...

    def launch(
        self,
        offer: Offer,
        *,
        label: str,
        api_auth: str,
        bid_usd_per_hour: Decimal | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> Machine:
        """Rent the offer's machine running an automatic1111 server locked by ``api_auth``
        (``user:password``). With a bid the machine is interruptible. ``worker_env``: more
        variables for the server's environment (the lean worker's ``WORKER_*`` settings;
        automatic1111 ignores them)."""
        ...

    def status(self, machine_id: str) -> Machine:
        """Raises MachineGone if the provider no longer knows the machine."""
        ...

    def terminate(self, machine_id: str) -> None:
        """Give the machine back. Idempotent: a machine already gone is not an error."""
        ...

    def machines(self, label: str | None = None) -> list[Machine]:
        """Our machines that still exist (optionally only those with ``label``)."""
        ...
