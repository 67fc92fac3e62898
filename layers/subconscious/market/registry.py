"""Which providers are enabled, built on first use (each adapter imports its own client)."""

from __future__ import annotations

from functools import cache

from subconscious.errors import ProviderError
from subconscious.market.base import Provider
from subconscious.settings import get_settings


@cache
def provider(name: str) -> Provider:
    settings = get_settings()
    if name == "emulated":
        from subconscious.market.emulated import EmulatedProvider

        return EmulatedProvider(settings.emulated_market_url)
    raise ProviderError(f"unknown provider {name!r}")


def enabled() -> list[Provider]:
    return [provider(name) for name in get_settings().providers]
