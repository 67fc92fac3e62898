"""The local stack's emulated market (``infra/local/emulated_market.py``), over its HTTP API."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from subconscious.errors import MachineGone, OfferGone, ProviderError
from subconscious.market.base import Provider
from subconscious.models import Machine, MachineStatus, Offer


class EmulatedProvider(Provider):
    name = "emulated"

    def __init__(self, base_url: str, http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(10.0, connect=3.0),
            transport=httpx.HTTPTransport(retries=2),  # connection errors only
        )

    def list_offers(self) -> list[Offer]:
        body = self._call("GET", "/offers")
        return [
            Offer(
                provider=self.name,
                offer_id=o["offer_id"],
                gpu=o["gpu"],
                gpu_count=o["gpu_count"],
                gpu_memory_gb=o["gpu_memory_gb"],
                usd_per_hour=Decimal(str(o["usd_per_hour"])),  # str(): a float must not leak
                interruptible=o.get("interruptible", False),
                reliability=Decimal(str(o.get("reliability", "0.99"))),
                location=o.get("location", ""),
                startup_s=math.ceil(Decimal(str(o.get("startup_s", 1)))),
            )
            for o in body["offers"]
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
        del worker_env  # the emulated market's renderers take no settings
        payload = {"offer_id": offer.offer_id, "label": label, "api_auth": api_auth}
        return self._machine(self._call("POST", "/machines", json=payload))

    def status(self, machine_id: str) -> Machine:
        return self._machine(self._call("GET", f"/machines/{machine_id}"))

    def terminate(self, machine_id: str) -> None:
        try:
            self._call("DELETE", f"/machines/{machine_id}")
        except MachineGone:
            return

    def machines(self, label: str | None = None) -> list[Machine]:
        params = {"label": label} if label else None
        body = self._call("GET", "/machines", params=params)
        return [self._machine(m) for m in body["machines"]]

    def _machine(self, m: dict[str, Any]) -> Machine:
        return Machine(
            provider=self.name,
            machine_id=m["machine_id"],
            offer_id=m["offer_id"],
            label=m["label"],
            status=MachineStatus(m["status"]),
            url=m.get("url"),
            usd_per_hour=Decimal(str(m["usd_per_hour"])),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ProviderError(f"emulated market unreachable: {type(error).__name__}") from error
        if response.status_code == 404:
            code = _error_code(response)
            if code == "offer_not_found":
                raise OfferGone(f"offer gone ({method} {path})")
            raise MachineGone(f"machine gone ({method} {path})")
        if response.is_error:
            raise ProviderError(f"emulated market answered {response.status_code} to {method}")
        try:
            return response.json()
        except ValueError as error:
            raise ProviderError(f"emulated market answered {method} {path} without JSON") from error


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""
