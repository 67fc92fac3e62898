"""Provider keys from Secrets Manager: read once per cold start, never printed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from subconscious import services as services_module
from subconscious.errors import ConfigurationError
from subconscious.observability import logger
from subconscious.settings import load_settings

VAST_KEY = "vast-key-from-secrets-manager"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="subc/provider-keys",
            SecretString=json.dumps(
                {
                    "vast_api_key": VAST_KEY,
                    "runpod_api_key": "",  # empty: the environment's value stands
                    "machine_auth_secret": "machine-secret-from-secrets-manager",
                    "images_bucket": "not-a-secret-field",  # ignored: only SECRET_FIELDS apply
                    "count": 3,  # not a string: ignored
                }
            ),
        )["ARN"]
        monkeypatch.setenv("SUBC_PROVIDER_SECRETS_ARN", arn)
        monkeypatch.setenv("SUBC_RUNPOD_API_KEY", "runpod-from-env")
        services_module.reset()
        yield arn
        services_module.reset()


def test_secret_values_override_the_environment(secret: str) -> None:
    settings = load_settings()
    assert settings.vast_api_key.get_secret_value() == VAST_KEY
    assert settings.machine_auth_secret.get_secret_value() == "machine-secret-from-secrets-manager"
    assert settings.runpod_api_key.get_secret_value() == "runpod-from-env"
    assert settings.images_bucket == "subc-images"


def test_the_secret_is_read_once_per_cold_start(secret: str) -> None:
    first = services_module.services().settings
    boto3.client("secretsmanager").put_secret_value(
        SecretId=secret, SecretString=json.dumps({"vast_api_key": "rotated"})
    )
    # a warm invocation does not call Secrets Manager
    assert services_module.services().settings is first
    services_module.reset()  # a new cold start sees the new value
    assert services_module.services().settings.vast_api_key.get_secret_value() == "rotated"


def test_secret_values_never_print(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    logger.info("settings", settings=settings.model_dump())
    print(repr(settings), str(settings))
    out = capsys.readouterr()
    assert VAST_KEY not in out.out + out.err
    assert "**********" in out.out


def test_an_empty_secret_changes_nothing(secret: str) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString="{}")
    assert load_settings().vast_api_key.get_secret_value() == ""


@pytest.mark.parametrize("body", ["[1, 2]", "not json", ""])
def test_a_secret_that_is_not_a_json_object_fails_loudly_without_its_value(
    secret: str, body: str
) -> None:
    client = boto3.client("secretsmanager")
    if body:
        client.put_secret_value(SecretId=secret, SecretString=body)
    else:
        client.put_secret_value(SecretId=secret, SecretBinary=b"\x00")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert "subc/provider-keys" in str(excinfo.value)
    assert body not in str(excinfo.value) or not body
