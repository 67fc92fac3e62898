"""The checked-in OpenAPI document matches the routes; handlers do no AWS work at import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from functions.api.openapi import document
from infra import definitions as d

ROOT = Path(__file__).resolve().parents[2]


def test_docs_openapi_json_is_in_sync_with_the_routes() -> None:
    checked_in = (ROOT / "docs" / "openapi.json").read_text()
    assert checked_in == document(), "docs/openapi.json is stale: run `make openapi`"


def test_openapi_names_every_route_and_the_api_key() -> None:
    spec = json.loads(document())
    assert set(spec["paths"]) == {
        "/v1/market",
        "/v1/quotes",
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/images",
        "/v1/webhooks/secret",
    }
    assert set(spec["paths"]["/v1/orders/{order_id}"]) == {"get", "delete"}
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"


@pytest.mark.parametrize("function", d.FUNCTIONS, ids=lambda f: f.name)
def test_importing_a_handler_builds_no_client(function: d.Function) -> None:
    """Cold start: boto3 (~160 ms) and every client are left for the first invocation."""
    module = function.handler.rsplit(".", 1)[0]
    probe = (
        f"import sys; import {module}; "
        "print(','.join(m for m in ('boto3', 'botocore.client') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
