"""Clients share botocore's parsed service models, never credentials or settings."""

from __future__ import annotations

import pytest

from subconscious import aws


def test_sessions_share_the_data_loader_but_read_credentials_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = aws.session()
    assert first.get_credentials().access_key == "testing"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    second = aws.session()

    assert first is not second
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    assert second.get_credentials().access_key == "second-key"


def test_lazy_clients_are_built_once_on_first_use() -> None:
    clients = aws.AwsClients()
    sqs = clients.client("sqs")
    assert clients.client("sqs") is sqs
    assert sqs._target is None  # nothing built yet
    assert sqs.meta.service_model.service_name == "sqs"
    assert sqs._target is not None
