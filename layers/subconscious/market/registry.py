"""Which providers are enabled, built on first use (each adapter imports its own client)."""

from __future__ import annotations

from functools import cache

from subconscious.errors import ProviderError
from subconscious.market.base import Provider
from subconscious.settings import get_settings

_installed: dict[str, Provider] = {}


def install(provider: Provider) -> None:
    """Use this provider object under its name (tests and tools inject fakes this way)."""
    _installed[provider.name] = provider
    _build.cache_clear()


def uninstall_all() -> None:
    _installed.clear()
    _build.cache_clear()


def provider(name: str) -> Provider:
    return _installed.get(name) or _build(name)


@cache
def _build(name: str) -> Provider:
    settings = get_settings()
    if name == "emulated":
        from subconscious.market.emulated import EmulatedProvider

        return EmulatedProvider(settings.emulated_market_url)
    raise ProviderError(f"unknown provider {name!r}")
