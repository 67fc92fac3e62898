"""Each marketplace is built from the settings, and refuses to start without its credentials."""

from __future__ import annotations

import pytest

from subconscious import services as services_module
from subconscious.errors import ConfigurationError


@pytest.mark.parametrize(
    ("name", "env", "cls"),
    [
        (
            "vast",
            {"SUBC_VAST_API_KEY": "k" * 20, "SUBC_VAST_IMAGE": "repo/a1111:1"},
            "VastProvider",
        ),
        (
            "runpod",
            {"SUBC_RUNPOD_API_KEY": "k" * 20, "SUBC_RUNPOD_IMAGE": "repo/a1111:1"},
            "RunPodProvider",
        ),
        (
            "tensordock",
            {
                "SUBC_TENSORDOCK_API_TOKEN": "k" * 20,
                "SUBC_TENSORDOCK_SSH_PUBLIC_KEY": "ssh-ed25519 AAAA",
            },
            "TensorDockProvider",
        ),
        (
            "ec2",
            {"SUBC_EC2_SECURITY_GROUP_ID": "sg-0123", "SUBC_EC2_WORKER_IMAGE": "repo/a1111:1"},
            "EC2Provider",
        ),
    ],
)
def test_a_configured_provider_is_built_once(
    name: str, env: dict[str, str], cls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    services_module.reset()
    svc = services_module.services()
    built = svc.provider(name)
    assert type(built).__name__ == cls
    assert built.name == name
    assert svc.provider(name) is built


@pytest.mark.parametrize("name", ["vast", "runpod", "tensordock", "ec2"])
def test_a_provider_without_credentials_fails_loudly(name: str) -> None:
    services_module.reset()
    with pytest.raises(ConfigurationError):
        services_module.services().provider(name)


def test_an_image_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBC_VAST_API_KEY", "k" * 20)
    services_module.reset()
    with pytest.raises(ConfigurationError, match="image"):
        services_module.services().provider("vast")


def test_runpod_takes_its_endpoint_cloud_and_proxy_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # How the local stack points the real adapter at its emulator and the emulated pods.
    for key, value in {
        "SUBC_RUNPOD_API_KEY": "k" * 20,
        "SUBC_RUNPOD_IMAGE": "repo/a1111:1",
        "SUBC_RUNPOD_URL": "http://127.0.0.1:9/graphql",
        "SUBC_RUNPOD_CLOUD_TYPE": "ALL",
        "SUBC_RUNPOD_PROXY_URL": "http://{ip}:{public_port}",
    }.items():
        monkeypatch.setenv(key, value)
    services_module.reset()
    built = services_module.services().provider("runpod")
    assert (built._url, built._cloud_type, built._proxy_url) == (  # type: ignore[attr-defined]
        "http://127.0.0.1:9/graphql",
        "ALL",
        "http://{ip}:{public_port}",
    )


def test_ec2_reads_the_shipped_prices_where_the_price_list_is_not_to_be_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The local stack's moto has no Price List API: no call is made, the table is used."""
    monkeypatch.setenv("SUBC_EC2_SECURITY_GROUP_ID", "sg-0123")
    monkeypatch.setenv("SUBC_EC2_WORKER_IMAGE", "repo/a1111:1")
    monkeypatch.setenv("SUBC_EC2_PRICE_LIST", "false")
    services_module.reset()
    built = services_module.services().provider("ec2")
    from subconscious.market.ec2 import shipped_on_demand_prices

    assert built._price_override == shipped_on_demand_prices("us-east-1")  # type: ignore[attr-defined]
    assert built._price_override  # type: ignore[attr-defined]
