"""The local stack and the AWS template are built from the same definitions: this fails if they
drift apart (tables, queue attributes and redrive, state machine, functions, schedules)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import definitions as d
from infra.local.resources import Created, create_resources
from tests.infra.conftest import Synth

REGION = "us-east-1"


@pytest.fixture(scope="module")
def local() -> Iterator[Created]:
    with mock_aws():
        yield create_resources(lambda service: boto3.client(service, region_name=REGION))


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def _key_schema(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((k["AttributeName"], k["KeyType"]) for k in keys)


def test_tables(synth: Synth, local: Created) -> None:
    cdk = {
        t["Properties"]["TableName"]: t["Properties"]
        for t in synth.resources("AWS::DynamoDB::Table").values()
    }
    dynamodb = _client("dynamodb")
    assert set(cdk) == set(dynamodb.list_tables()["TableNames"])
    for name, props in cdk.items():
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert _key_schema(table["KeySchema"]) == _key_schema(props["KeySchema"])
        assert sorted(
            (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
        ) == sorted((a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"])
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
        assert [i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])] == [
            i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])
        ]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        local_ttl = ttl.get("AttributeName") if ttl["TimeToLiveStatus"] == "ENABLED" else None
        cdk_ttl = props.get("TimeToLiveSpecification", {}).get("AttributeName")
        assert local_ttl == cdk_ttl


def test_queues_and_redrive(synth: Synth, local: Created) -> None:
    cdk = {
        q["Properties"]["QueueName"]: (k, q["Properties"])
        for k, q in synth.resources("AWS::SQS::Queue").items()
    }
    sqs = _client("sqs")
    names = {url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]}
    assert names == set(cdk)
    logical_to_name = {k: name for name, (k, _) in cdk.items()}
    for name, (_, props) in cdk.items():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == props.get("VisibilityTimeout", 30)
        assert int(attributes["MessageRetentionPeriod"]) == props["MessageRetentionPeriod"]
        local_redrive = (
            json.loads(attributes["RedrivePolicy"]) if "RedrivePolicy" in attributes else None
        )
        cdk_redrive = props.get("RedrivePolicy")
        assert (local_redrive is None) == (cdk_redrive is None)
        if local_redrive and cdk_redrive:
            assert int(local_redrive["maxReceiveCount"]) == cdk_redrive["maxReceiveCount"]
            dlq_name = local_redrive["deadLetterTargetArn"].rsplit(":", 1)[1]
            assert dlq_name == logical_to_name[cdk_redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]


def _with_names(definition: str, arn_to_name: dict[str, str]) -> Any:
    for arn, name in arn_to_name.items():
        definition = definition.replace(arn, name)
    return json.loads(definition)


def test_state_machine_states_after_substitution(synth: Synth, local: Created) -> None:
    ((_, machine),) = synth.resources("AWS::StepFunctions::StateMachine").items()
    props = machine["Properties"]
    names = {
        k: r["Properties"]["FunctionName"]
        for k, r in synth.resources("AWS::Lambda::Function").items()
    }
    cdk_definition = props["DefinitionString"]
    for placeholder, value in props["DefinitionSubstitutions"].items():
        cdk_definition = cdk_definition.replace(
            "${" + placeholder + "}", names[value["Fn::GetAtt"][0]]
        )
    assert "${" not in cdk_definition

    sfn = _client("stepfunctions")
    local_machine = sfn.describe_state_machine(stateMachineArn=local.state_machine_arn)
    assert local_machine["name"] == props["StateMachineName"]
    arns = {
        f["FunctionArn"]: f["FunctionName"] for f in _client("lambda").list_functions()["Functions"]
    }
    assert (
        _with_names(local_machine["definition"], arns)["States"]
        == json.loads(cdk_definition)["States"]
    )


def test_functions(synth: Synth, local: Created) -> None:
    cdk = {
        r["Properties"]["FunctionName"]: r["Properties"]
        for r in synth.resources("AWS::Lambda::Function").values()
    }
    local_functions = {
        f["FunctionName"]: f for f in _client("lambda").list_functions()["Functions"]
    }
    assert set(local_functions) == set(cdk)
    for name, props in cdk.items():
        function = local_functions[name]
        assert (function["Handler"], function["Timeout"], function["MemorySize"]) == (
            props["Handler"],
            props["Timeout"],
            props["MemorySize"],
        )
        assert function["Runtime"] == props["Runtime"]
        assert function["Architectures"] == props["Architectures"]


def test_schedules_match_the_local_timer(synth: Synth) -> None:
    """The local stack's timer fires ``d.SCHEDULES`` (scaled); AWS fires the rules."""
    names = {
        k: r["Properties"]["FunctionName"]
        for k, r in synth.resources("AWS::Lambda::Function").items()
    }
    cdk = {}
    for rule in synth.resources("AWS::Events::Rule").values():
        minutes = re.fullmatch(r"rate\((\d+) minutes?\)", rule["Properties"]["ScheduleExpression"])
        assert minutes is not None
        target = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
        cdk[names[target]] = int(minutes.group(1)) * 60
    assert cdk == d.SCHEDULES


def test_the_settings_the_local_stack_sets_are_the_ones_the_functions_get(
    synth: Synth, local: Created
) -> None:
    for function in synth.resources("AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        for name, value in local.settings.items():
            assert name in env or name == "SUBC_RENDER_RUN_STATE_MACHINE_ARN"
            if name.endswith("_TABLE"):
                assert env[name] == value
    dispatch = synth.template["Resources"][synth.logical_id_of_function(f"{d.PREFIX}-dispatch")]
    assert "SUBC_RENDER_RUN_STATE_MACHINE_ARN" in dispatch["Properties"]["Environment"]["Variables"]
