"""Each function role grants, on each resource, exactly the actions its code path calls.

Per resource, not per function: a union per function let the record step miss the prices
table (its PutItem on runs hid it) and in AWS every successful run would have failed on
AccessDenied (moto does not enforce IAM). The expectations come from tracing each handler
through logic into the DAL."""

from __future__ import annotations

from typing import Any

import pytest

from infra import definitions as d
from tests.infra.conftest import Synth

P = d.PREFIX
SECRET = {"provider-keys": {"secretsmanager:GetSecretValue"}}


def _ddb(*actions: str) -> set[str]:
    return {f"dynamodb:{a}" for a in actions}


RUNS_STEP = {f"table:{P}-runs": _ddb("GetItem", "PutItem")}
# Whoever ends an order stores its webhook event and queues it.
ANNOUNCE = {f"table:{P}-webhooks": _ddb("PutItem"), "webhook-queue": {"sqs:SendMessage"}}
# What each function's code path calls, on which resource (a union per function would let an
# action granted on one table hide its absence on another: PutItem on runs vs images, ...).
EXPECTED_GRANTS: dict[str, dict[str, set[str]]] = {
    f"{P}-api": {
        f"table:{P}-tenants": _ddb("GetItem"),
        f"table:{P}-quotes": _ddb("GetItem", "PutItem"),
        f"table:{P}-orders": _ddb("GetItem", "PutItem", "UpdateItem", "Scan"),
        f"index:{P}-orders/by_created": _ddb("Query"),
        f"table:{P}-runs": _ddb("Scan"),
        f"table:{P}-images": _ddb("Query"),
        f"table:{P}-idempotency": _ddb("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
        f"table:{P}-prices": _ddb("Query", "GetItem"),
        "image-objects": {"s3:GetObject"},
        "work-queue": {"sqs:SendMessage"},
        **SECRET,
        f"table:{P}-webhooks": _ddb("GetItem", "PutItem"),  # the secret; a cancel's event
        "webhook-queue": {"sqs:SendMessage"},
    },
    f"{P}-authorizer": {f"table:{P}-tenants": _ddb("GetItem")},
    f"{P}-dispatch": {
        f"table:{P}-runs": _ddb("PutItem", "DeleteItem", "Scan", "ConditionCheckItem"),
        f"table:{P}-orders": _ddb("Scan", "GetItem", "UpdateItem"),
        f"table:{P}-images": _ddb("PutItem"),
        f"table:{P}-prices": _ddb("Query"),
        "work-queue": {"sqs:GetQueueAttributes"},
        "dead-letters": {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        "state-machine": {"states:StartExecution"},
        "executions": {"states:DescribeExecution"},
        **SECRET,
        **ANNOUNCE,
    },
    f"{P}-reaper": {f"table:{P}-runs": _ddb("GetItem", "PutItem", "DeleteItem", "Scan"), **SECRET},
    f"{P}-prices": {
        f"table:{P}-prices": _ddb("BatchWriteItem", "PutItem", "UpdateItem", "GetItem"),
        "history-objects": {"s3:PutObject", "s3:GetObject"},
        "history-bucket": {"s3:ListBucket"},
        **SECRET,
    },
    f"{P}-provision": {**RUNS_STEP, **SECRET},
    f"{P}-wait-ready": {**RUNS_STEP, **SECRET},
    f"{P}-render": {
        **RUNS_STEP,
        f"table:{P}-orders": _ddb("GetItem", "UpdateItem"),
        f"table:{P}-images": _ddb("PutItem"),
        "work-queue": {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
        },
        "image-objects": {"s3:PutObject"},
        **SECRET,
        **ANNOUNCE,
    },
    f"{P}-teardown": {**RUNS_STEP, **SECRET},
    f"{P}-record": {**RUNS_STEP, f"table:{P}-prices": _ddb("Query", "PutItem")},
    f"{P}-webhooks": {
        f"table:{P}-webhooks": _ddb("GetItem", "PutItem", "UpdateItem"),
        "webhook-queue": {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",  # a failed attempt's backoff
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
        },
    },
}


def _resource_key(synth: Synth, resource: Any) -> str:
    stack = synth.stack
    buckets = {
        stack._logical_id(stack.images.images): "image",
        stack._logical_id(stack.images.history): "history",
    }
    key = None
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical, _ = resource["Fn::GetAtt"]
        key = _attribute_key(synth, logical, buckets)
    if isinstance(resource, dict) and "Ref" in resource:
        key = _ref_key(synth, resource["Ref"])
    if isinstance(resource, dict) and "Fn::Join" in resource:
        key = _join_key(resource["Fn::Join"][1], buckets) or _index_key(
            synth, resource["Fn::Join"][1]
        )
    if key is None:
        raise AssertionError(f"unexpected resource in a function role: {resource}")
    return key


def _attribute_key(synth: Synth, logical: str, buckets: dict[str, str]) -> str | None:
    """A grant on ``{"Fn::GetAtt": [logical, ...]}``: a table, a queue, logs or a bucket."""
    kind = synth.template["Resources"][logical]["Type"]
    props = synth.template["Resources"][logical]["Properties"]
    if kind == "AWS::DynamoDB::Table":
        return f"table:{props['TableName']}"
    if kind == "AWS::SQS::Queue" and props["QueueName"] == d.WORK_QUEUE:
        return "work-queue"
    if kind == "AWS::SQS::Queue" and props["QueueName"] == d.WORK_DLQ:
        return "dead-letters"
    if kind == "AWS::SQS::Queue" and props["QueueName"] == d.WEBHOOK_QUEUE:
        return "webhook-queue"
    if kind == "AWS::Logs::LogGroup":
        return "logs"
    if logical in buckets and buckets[logical] == "history":
        return "history-bucket"
    return None


def _ref_key(synth: Synth, logical: str) -> str | None:
    """A grant on ``{"Ref": logical}``: the provider keys' secret or the state machine."""
    kind = synth.template["Resources"][logical]["Type"]
    if kind == "AWS::SecretsManager::Secret":
        return "provider-keys"
    if kind == "AWS::StepFunctions::StateMachine":
        return "state-machine"
    return None


def _join_key(parts: list[Any], buckets: dict[str, str]) -> str | None:
    """A grant on an ``Fn::Join``: the state machine's executions or a bucket's objects."""
    if parts[-1] == f":execution:{d.STATE_MACHINE}:*":
        return "executions"
    first = parts[0]
    if isinstance(first, dict) and "Fn::GetAtt" in first and first["Fn::GetAtt"][0] in buckets:
        bucket = buckets[first["Fn::GetAtt"][0]]
        if bucket == "image" and parts[1:] == ["/images/*"]:
            return "image-objects"
        if bucket == "history" and parts[1:] == ["/market/*"]:
            return "history-objects"
    return None


def _index_key(synth: Synth, parts: list[Any]) -> str | None:
    """A grant on ``{"Fn::Join": ["", [<table>.Arn, "/index/<name>"]]}``: a table's index."""
    first = parts[0]
    if len(parts) != 2 or not isinstance(first, dict) or "Fn::GetAtt" not in first:
        return None
    resource = synth.template["Resources"][first["Fn::GetAtt"][0]]
    if resource["Type"] != "AWS::DynamoDB::Table" or not str(parts[1]).startswith("/index/"):
        return None
    return f"index:{resource['Properties']['TableName']}/{str(parts[1]).removeprefix('/index/')}"


def _grants(synth: Synth, function_name: str) -> dict[str, set[str]]:
    function = synth.template["Resources"][synth.logical_id_of_function(function_name)]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    grants: dict[str, set[str]] = {}
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert s["Effect"] == "Allow" and "Condition" not in s
            actions = {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            for r in resources:
                grants.setdefault(_resource_key(synth, r), set()).update(actions)
    return grants


@pytest.mark.parametrize("function_name", sorted(EXPECTED_GRANTS))
def test_each_role_grants_exactly_its_code_paths_actions_on_each_resource(
    synth: Synth, function_name: str
) -> None:
    grants = _grants(synth, function_name)
    assert grants.pop("logs") == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert grants == EXPECTED_GRANTS[function_name]


def test_every_function_is_expected(synth: Synth) -> None:
    assert set(EXPECTED_GRANTS) == {f.name for f in d.FUNCTIONS}
