"""The provider interface every marketplace adapter implements.

Machines we rent carry a label ``subc-<run id>`` (``models/labels.py``): Teardown terminates
every machine with its run's label, and the reaper terminates labelled machines no live run
owns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
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


class Capability(StrEnum):
    """What a provider may do beyond the interface, declared by the adapter
    (:meth:`Provider.supports`) rather than discovered from its class, so the render steps
    ask the provider and a new adapter (or a test's fake) opts in by saying so. Like SkyPilot's
    provisioners' ``supports()``."""

    # Its machines' addresses come from the operator, not from a marketplace: they may be
    # private or loopback (never link-local: render/address.py still refuses those).
    OPERATOR_ADDRESSES = "operator_addresses"
    # Its machines carry their own ``user:password`` (:meth:`Provider.credential`) instead of
    # the per-run credential we derive and launch them with.
    OWN_CREDENTIALS = "own_credentials"
    # Its machines outlive runs and keep their ids from run to run, and there is no other to
    # go to: a failed task's retries cannot avoid one.
    LASTING_MACHINES = "lasting_machines"


class Provider(Protocol):
    """Adapters subclass it explicitly, so they inherit the defaults of the optional parts
    (``supports``, ``credential``)."""

    name: str

    def supports(self, capability: Capability) -> bool:
        """Whether this provider declares ``capability``. A marketplace declares none."""
        del capability
        return False

    def credential(self, machine_id: str) -> tuple[str, str] | None:
        """The machine's own ``(user, password)`` (None: it has none). Only for a provider
        that declares ``Capability.OWN_CREDENTIALS``; the others' machines use the run's."""
        # (more than a bare raise, so mypy does not take the default for an abstract method)
        declared = "declares" if self.supports(Capability.OWN_CREDENTIALS) else "does not declare"
        raise NotImplementedError(f"{self.name} {declared} own credentials but gives none")

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
