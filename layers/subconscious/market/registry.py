"""How each provider adapter is built from the settings (each adapter imports its own client).

A provider is enabled by naming it in ``SUBC_PROVIDERS``; its credentials come from the
settings (Secrets Manager in AWS). A missing credential fails loudly when the provider is built.
The composition root (``subconscious.services``) builds each enabled one on first use.
"""

from __future__ import annotations

from subconscious.errors import ConfigurationError, ProviderError
from subconscious.market.base import Provider
from subconscious.settings import Settings


def build_provider(name: str, settings: Settings) -> Provider:
    """The adapter ``name`` configured from ``settings`` (a new object on every call: the
    composition root keeps the one it uses)."""
    if name == "emulated":
        from subconscious.market.emulated import EmulatedProvider

        return EmulatedProvider(settings.emulated_market_url)
    if name == "static":
        from subconscious.market.static import StaticProvider

        return StaticProvider(list(settings.static_servers))
    if name == "vast":
        from subconscious.market.vast import VastProvider

        return VastProvider(
            settings.vast_api_key.get_secret_value(),
            base_url=settings.vast_base_url,
            image=_image("vast", settings.vast_image),
        )
    if name == "runpod":
        from subconscious.market.runpod import RunPodProvider

        return RunPodProvider(
            settings.runpod_api_key.get_secret_value(),
            url=settings.runpod_url,
            rest_url=settings.runpod_rest_url,
            image=_image("runpod", settings.runpod_image),
            cloud_type=settings.runpod_cloud_type,
            proxy_url=settings.runpod_proxy_url,
        )
    if name == "tensordock":
        from subconscious.market.tensordock import A1111_IMAGE as TENSORDOCK_IMAGE
        from subconscious.market.tensordock import TensorDockProvider

        if not settings.tensordock_ssh_public_key:
            raise ConfigurationError("tensordock: SUBC_TENSORDOCK_SSH_PUBLIC_KEY is not set")
        return TensorDockProvider(
            settings.tensordock_api_token.get_secret_value(),
            ssh_public_key=settings.tensordock_ssh_public_key,
            base_url=settings.tensordock_base_url,
            a1111_image=settings.tensordock_image or TENSORDOCK_IMAGE,
        )
    if name == "ec2":
        from subconscious.market.ec2 import (
            DEFAULT_INSTANCE_TYPES,
            EC2Provider,
            shipped_on_demand_prices,
        )

        if not settings.ec2_security_group_id:
            raise ConfigurationError("ec2: SUBC_EC2_SECURITY_GROUP_ID is not set")
        return EC2Provider(
            region=settings.ec2_region,
            image_id=settings.ec2_image_id,
            worker_image=_image("ec2", settings.ec2_worker_image),
            security_group_id=settings.ec2_security_group_id,
            subnets=settings.ec2_subnets,
            instance_types=settings.ec2_instance_types or DEFAULT_INSTANCE_TYPES,
            url_template=settings.ec2_machine_url,
            on_demand_prices=(
                None if settings.ec2_price_list else shipped_on_demand_prices(settings.ec2_region)
            ),
        )
    raise ProviderError(f"unknown provider {name!r}")


def _image(provider: str, image: str) -> str:
    if not image:
        raise ConfigurationError(f"{provider}: no worker image configured")
    return image
