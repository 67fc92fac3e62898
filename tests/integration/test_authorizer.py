"""API Gateway's request authorizer against the tenants table (moto)."""

from __future__ import annotations

import boto3
import pytest

from functions.authorizer.handler import lambda_handler
from infra import definitions as d
from infra.local.stack import context_for
from subconscious.dal.tenants import hash_key
from subconscious.errors import Unauthorized
from subconscious.logic.auth import allow_policy
from subconscious.services import Services

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/POST/v1/quotes"
FUNCTION = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-authorizer")


def _event(headers: dict[str, str] | None) -> dict[str, object]:
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers}


def test_a_known_key_is_allowed_on_every_route_of_the_stage(svc: Services, api_key: str) -> None:
    answer = lambda_handler(_event({"X-Api-Key": api_key}), context_for(FUNCTION))
    assert answer["principalId"] == "tenant-a"
    assert answer["context"] == {"tenant_id": "tenant-a"}
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/*",
    }


@pytest.mark.parametrize("headers", [None, {}, {"x-api-key": "sk_unknown_0123456789"}])
def test_no_or_unknown_key_is_exactly_unauthorized(
    svc: Services, api_key: str, headers: dict[str, str] | None
) -> None:
    with pytest.raises(Unauthorized) as excinfo:
        lambda_handler(_event(headers), context_for(FUNCTION))
    assert str(excinfo.value) == "Unauthorized"  # API Gateway's contract for a 401


def test_a_disabled_key_is_refused(svc: Services, api_key: str) -> None:
    boto3.resource("dynamodb").Table(f"{d.PREFIX}-tenants").update_item(
        Key={"key_hash": hash_key(api_key)},
        UpdateExpression="SET disabled = :t",
        ExpressionAttributeValues={":t": True},
    )
    with pytest.raises(Unauthorized):
        lambda_handler(_event({"x-api-key": api_key}), context_for(FUNCTION))


@pytest.mark.parametrize("arn", ["", "not-an-arn/prod/GET", "arn:aws:execute-api:r:1:api"])
def test_a_malformed_method_arn_is_refused(arn: str) -> None:
    with pytest.raises(ValueError, match="method ARN"):
        allow_policy("tenant-a", arn)
