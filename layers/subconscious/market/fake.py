"""An in-memory provider for tests: records every launch and termination.

It lives next to the interface it implements so it cannot drift from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal

from subconscious.errors import MachineGone, OfferGone
from subconscious.market.base import Provider
from subconscious.models import Machine, MachineStatus, Offer


class FakeProvider(Provider):
    def __init__(self, offers: list[Offer], name: str = "fake", url: str | None = None) -> None:
        self.name = name
        self.offers = offers
        self.url = url  # where launched machines "serve" automatic1111
        self.live: dict[str, Machine] = {}
        self.launched: list[Machine] = []
        self.terminated: list[str] = []
        self.worker_envs: list[dict[str, str]] = []  # what each launch passed, in order
        self.fail_offers = False
        self.fail_terminate = False
        self.fail_machines = False
        self._ids = itertools.count(1)

    def list_offers(self) -> list[Offer]:
        if self.fail_offers:
            from subconscious.errors import ProviderError

            raise ProviderError("fake provider down")
        return list(self.offers)

    def launch(
        self,
        offer: Offer,
        *,
        label: str,
        api_auth: str,
        bid_usd_per_hour: Decimal | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> Machine:
        self.worker_envs.append(dict(worker_env or {}))
        if offer.offer_id not in {o.offer_id for o in self.offers}:
            raise OfferGone(offer.offer_id)
        machine = Machine(
            provider=self.name,
            machine_id=f"fm-{next(self._ids)}",
            offer_id=offer.offer_id,
            label=label,
            status=MachineStatus.RUNNING,
            url=self.url,
            usd_per_hour=offer.usd_per_hour,
        )
        self.live[machine.machine_id] = machine
        self.launched.append(machine)
        return machine

    def status(self, machine_id: str) -> Machine:
        if machine_id in self.live:
            return self.live[machine_id]
        if machine_id in self.terminated:
            machine = next(m for m in self.launched if m.machine_id == machine_id)
            return machine.model_copy(update={"status": MachineStatus.TERMINATED})
        raise MachineGone(machine_id)

    def terminate(self, machine_id: str) -> None:
        if self.fail_terminate:
            from subconscious.errors import ProviderError

            raise ProviderError("fake provider cannot terminate right now")
        if self.live.pop(machine_id, None) is not None:
            self.terminated.append(machine_id)

    def machines(self, label: str | None = None) -> list[Machine]:
        if self.fail_machines:
            from subconscious.errors import ProviderDown

            raise ProviderDown("fake provider cannot list machines right now")
        return [m for m in self.live.values() if label is None or m.label == label]
