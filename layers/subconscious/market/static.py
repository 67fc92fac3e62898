"""Servers that already run automatic1111 (a customer's, or one set up by hand): the
founding document's "set up a server by hand" case.

We never launch or terminate them: ``launch`` hands out the server as it is, ``terminate`` does
nothing, and ``machines`` lists none, so neither Teardown nor the reaper can ever stop one.
Configured in ``SUBC_STATIC_SERVERS`` (JSON list of {url, gpu, gpu_memory_gb, usd_per_hour,
api_auth}); their credential is their own, not a per-run one. Their URLs come from the
operator, not from a marketplace, so they may be private (a server in the same network): the
render step allows private and loopback addresses for them alone (``render_run._client``),
still never link-local ones such as the metadata service.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from subconscious.errors import MachineGone, OfferGone
from subconscious.market.base import Capability, Provider
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.models.servers import StaticServer


class StaticProvider(Provider):
    name = "static"
    # An operator's server: its address, its credential and its id are the operator's.
    CAPABILITIES = frozenset(
        {Capability.OPERATOR_ADDRESSES, Capability.OWN_CREDENTIALS, Capability.LASTING_MACHINES}
    )

    def __init__(self, servers: list[StaticServer]) -> None:
        self._servers = {f"static-{i}": s for i, s in enumerate(servers)}

    def list_offers(self) -> list[Offer]:
        return [
            Offer(
                provider=self.name,
                offer_id=offer_id,
                gpu=server.gpu,
                gpu_memory_gb=server.gpu_memory_gb,
                usd_per_hour=server.usd_per_hour,
                location="static",
                startup_s=0,
            )
            for offer_id, server in self._servers.items()
        ]

    def launch(
        self,
        offer: Offer,
        *,
        label: str,
        api_auth: str,
        bid_usd_per_hour: Decimal | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> Machine:
        del worker_env  # a static server is already running: nothing is launched
        if offer.offer_id not in self._servers:
            raise OfferGone(f"static: no server {offer.offer_id}")
        return self.status(offer.offer_id)

    def status(self, machine_id: str) -> Machine:
        server = self._servers.get(machine_id)
        if server is None:
            raise MachineGone(f"static: no server {machine_id}")
        return Machine(
            provider=self.name,
            machine_id=machine_id,
            offer_id=machine_id,
            label="",  # not ours: no label, so the reaper never counts it
            status=MachineStatus.RUNNING,
            url=server.url,
            usd_per_hour=server.usd_per_hour,
        )

    def terminate(self, machine_id: str) -> None:
        """Never stops a server we did not start."""

    def machines(self, label: str | None = None) -> list[Machine]:
        return []

    def supports(self, capability: Capability) -> bool:
        return capability in self.CAPABILITIES

    def credential(self, machine_id: str) -> tuple[str, str] | None:
        server = self._servers.get(machine_id)
        if server is None or server.api_auth is None:
            return None
        user, _, password = server.api_auth.get_secret_value().partition(":")
        return user, password
