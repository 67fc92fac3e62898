"""Shared fixtures. Tiers: ``unit`` (pure logic), ``integration`` (handlers and stores against
in-process moto), ``local`` (emulated market and renderer processes), ``e2e`` (the local stack)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_dynamodb
from infra.local.resources import Created, create_resources
from subconscious import aws as aws_module
from subconscious import services as services_module
from subconscious.market.base import Provider
from subconscious.market.fake import FakeProvider
from subconscious.models import Offer
from subconscious.services import Services
from subconscious.settings import load_settings
from tests import builders
from tests.twins import install_memory_services

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/`` (the same files serve local invokes)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reaches a real AWS endpoint or inherits another test's cached clients."""
    # (the local stack sets AWS_ENDPOINT_URL and POWERTOOLS_METRICS_DISABLED for its process)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SUBC_MACHINE_AUTH_SECRET", "test-secret-never-logged")
    monkeypatch.setenv("SUBC_PROVIDERS", '["fake"]')
    monkeypatch.setenv("SUBC_SQS_WAIT_S", "0")
    monkeypatch.setenv("SUBC_IDLE_POLLS_BEFORE_TEARDOWN", "1")
    # the renderers of in-process runs are loopback processes (the default refuses them)
    monkeypatch.setenv("SUBC_ALLOW_PRIVATE_MACHINE_ADDRESSES", "true")
    services_module.reset()
    yield
    services_module.reset()


def offer(
    offer_id: str = "o-4090", gpu: str = "RTX 4090", usd_per_hour: str = "0.40", memory: int = 24
) -> Offer:
    return builders.offer(offer_id, gpu, usd_per_hour, provider="fake", startup_s=60, memory=memory)


@pytest.fixture
def market() -> FakeProvider:
    provider = FakeProvider(
        [offer(), offer("o-3090", "RTX 3090", "0.20"), offer("o-h100", "H100 SXM", "2.50", 80)]
    )
    return provider


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Created]:
    """Every resource of the stack, created in in-process moto from infra/definitions.py."""
    # moto serves the threads of a race one DynamoDB request at a time, as DynamoDB does
    with mock_aws(), moto_dynamodb.serialised():
        # boto3.client() below and in tests shares the process's parsed service models too
        boto3.DEFAULT_SESSION = aws_module.session()
        created = create_resources(aws_module.AwsClients().client)
        for name, value in created.settings.items():
            monkeypatch.setenv(name, value)
        services_module.reset()
        yield created


@pytest.fixture
def svc(request: pytest.FixtureRequest, market: FakeProvider) -> Services:
    """The services a test works on. Logic tests get the in-memory twins (``dal/memory.py``,
    held to moto's behaviour by ``tests/contract/stores``); a test that also takes ``aws``
    (it reads or writes AWS itself) or is marked ``moto`` (handler tests) gets moto's."""
    if "aws" in request.fixturenames or request.node.get_closest_marker("moto"):
        request.getfixturevalue("aws")
        return install_services(market)
    return install_memory_services(market)


def install_services(*providers: Provider) -> Services:
    """Services from this test's environment (moto's resources), with ``providers`` given,
    installed as what the handlers get."""
    built = services_module.build(load_settings(), providers={p.name: p for p in providers})
    services_module.use(built)
    return built


def with_settings(svc: Services, **update: object) -> Services:
    """The same adapters with some settings changed (Services is frozen), installed as what
    the handlers get."""
    changed = dataclasses.replace(svc, settings=svc.settings.model_copy(update=update))
    services_module.use(changed)
    return changed


@pytest.fixture
def api_key(svc: Services) -> str:
    key = "sk_test_tenant_a_0123456789"
    svc.tenants.add_key("tenant-a", key)
    return key


@pytest.fixture
def other_api_key(svc: Services) -> str:
    key = "sk_test_tenant_b_0123456789"
    svc.tenants.add_key("tenant-b", key)
    return key
