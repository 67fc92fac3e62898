"""Template assertions on real properties: IAM actions per function, SQS wiring, S3, DynamoDB,
the state machine, schedules, alarms and the API. The stack is synthesised once (conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra import definitions as d
from infra.cdk.api import PUBLIC_ROUTES, routes
from infra.cdk.work_queue import WorkQueue
from subconscious.observability import (
    METRICS_NAMESPACE,
    OLDEST_MACHINE_AGE_S,
    SPEND_RATE_USD_PER_HOUR,
)
from subconscious.settings import Settings
from tests.infra.conftest import Synth

P = d.PREFIX
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
SECRET = {"secretsmanager:GetSecretValue"}
RUN_STEP = {"dynamodb:GetItem", "dynamodb:PutItem", *SECRET}

# What each function's code path calls (read from its logic and dal modules), written out here
# rather than read from infra/cdk/permissions.py, so that a change there has to change this too.
EXPECTED_ACTIONS: dict[str, set[str]] = {
    f"{P}-api": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "s3:GetObject",
        "sqs:SendMessage",
        *SECRET,
    },
    f"{P}-authorizer": {"dynamodb:GetItem"},
    f"{P}-dispatch": {
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
        "dynamodb:GetItem",  # the sweep settles dead letters and ends orders
        "dynamodb:UpdateItem",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",  # the dead-letter queue
        "sqs:DeleteMessage",
        "states:StartExecution",
        "states:DescribeExecution",
        *SECRET,
        "sqs:SendMessage",  # an order it ends: its webhook event
    },
    f"{P}-reaper": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        *SECRET,
    },
    f"{P}-prices": {
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        *SECRET,
    },
    f"{P}-provision": RUN_STEP,
    f"{P}-wait-ready": RUN_STEP,
    f"{P}-render": {
        *RUN_STEP,
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",  # a failed task queued again, split
        "s3:PutObject",
    },
    f"{P}-teardown": RUN_STEP,
    f"{P}-record": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"},
    f"{P}-webhooks": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    },
}


def _statements(synth: Synth, function_name: str) -> list[dict[str, Any]]:
    function = synth.template["Resources"][synth.logical_id_of_function(function_name)]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role_props = synth.template["Resources"][role]["Properties"]
    assert "ManagedPolicyArns" not in role_props  # nothing but what is listed below
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _table_logical_ids(synth: Synth) -> dict[str, str]:
    return {
        r["Properties"]["TableName"]: k for k, r in synth.resources("AWS::DynamoDB::Table").items()
    }


def test_cdk_nag_leaves_no_finding_unacknowledged(nag_report: list[str]) -> None:
    assert nag_report == []


def test_every_acknowledgement_has_a_reason(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    suppressed = [s for p in report["pluginReports"] for s in p["suppressedViolations"]]
    assert suppressed  # the report is read, not empty by accident
    assert all(len(s["reason"]) > 40 for s in suppressed)


@pytest.mark.parametrize("function_name", sorted(EXPECTED_ACTIONS))
def test_each_function_role_has_exactly_the_actions_its_code_uses(
    synth: Synth, function_name: str
) -> None:
    statements = _statements(synth, function_name)
    actions = set().union(*(_actions(s) for s in statements))
    assert actions == EXPECTED_ACTIONS[function_name] | LOGS
    assert all(s["Effect"] == "Allow" for s in statements)
    assert all("*" not in a for a in actions)
    assert all(r != "*" for s in statements for r in _resources(s))


def test_every_function_has_its_own_role(synth: Synth) -> None:
    roles = [
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in synth.resources("AWS::Lambda::Function").values()
    ]
    assert len(roles) == len(set(roles)) == len(d.FUNCTIONS)


def test_the_api_cannot_start_render_runs_and_the_render_step_cannot_delete_tables(
    synth: Synth,
) -> None:
    api = set().union(*(_actions(s) for s in _statements(synth, f"{P}-api")))
    render = set().union(*(_actions(s) for s in _statements(synth, f"{P}-render")))
    assert not {a for a in api if a.startswith("states:")}
    assert "dynamodb:DeleteTable" not in render and "dynamodb:DeleteItem" not in render


def test_table_actions_land_on_the_tables_each_function_uses(synth: Synth) -> None:
    tables = _table_logical_ids(synth)

    def tables_for(function_name: str) -> set[str]:
        names = {v: k for k, v in tables.items()}
        return {
            names[r["Fn::GetAtt"][0]]
            for s in _statements(synth, function_name)
            if any(a.startswith("dynamodb:") for a in _actions(s))
            for r in _resources(s)
        }

    assert tables_for(f"{P}-authorizer") == {f"{P}-tenants"}
    assert tables_for(f"{P}-render") == {
        f"{P}-runs",
        f"{P}-orders",
        f"{P}-images",
        f"{P}-webhooks",  # an order it ends: its webhook event
    }
    assert tables_for(f"{P}-record") == {f"{P}-runs", f"{P}-prices"}
    assert f"{P}-tenants" not in tables_for(f"{P}-dispatch")
    assert tables_for(f"{P}-webhooks") == {f"{P}-webhooks"}


def test_only_dispatch_starts_executions_and_only_of_the_render_run(synth: Synth) -> None:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine")
    for spec in d.FUNCTIONS:
        for statement in _statements(synth, spec.name):
            if "states:StartExecution" in _actions(statement):
                assert spec.name == f"{P}-dispatch"
                assert _resources(statement) == [{"Ref": machine}]


def test_provider_secret_reaches_only_the_functions_that_talk_to_providers(synth: Synth) -> None:
    (secret,) = synth.resources("AWS::SecretsManager::Secret")
    for spec in d.FUNCTIONS:
        function = synth.template["Resources"][synth.logical_id_of_function(spec.name)]
        env = function["Properties"]["Environment"]["Variables"]
        reads = any(
            "secretsmanager:GetSecretValue" in _actions(s) for s in _statements(synth, spec.name)
        )
        assert reads == ("SUBC_PROVIDER_SECRETS_ARN" in env)
        if reads:
            assert env["SUBC_PROVIDER_SECRETS_ARN"] == {"Ref": secret}
    generated = synth.resources("AWS::SecretsManager::Secret")[secret]["Properties"]
    assert generated["GenerateSecretString"]["GenerateStringKey"] == "machine_auth_secret"


def test_functions_are_arm64_with_the_layer_and_the_definitions_settings(synth: Synth) -> None:
    (layer,) = synth.resources("AWS::Lambda::LayerVersion")
    for spec in d.FUNCTIONS:
        props = synth.template["Resources"][synth.logical_id_of_function(spec.name)]["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == d.LAMBDA_RUNTIME
        assert props["Handler"] == spec.handler
        assert props["Timeout"] == spec.timeout_s
        assert props["MemorySize"] == spec.memory_mb
        assert props["Layers"] == [{"Ref": layer}]
        assert props["LoggingConfig"]["LogGroup"]


def test_work_queue_dead_letters_and_visibility(synth: Synth) -> None:
    queues = {
        q["Properties"]["QueueName"]: (k, q) for k, q in synth.resources("AWS::SQS::Queue").items()
    }
    dlq_id, _ = queues[d.WORK_DLQ]
    _, work = queues[d.WORK_QUEUE]
    render = synth.template["Resources"][synth.logical_id_of_function(f"{P}-render")]
    assert work["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": d.MAX_RECEIVE_COUNT,
    }
    assert work["Properties"]["VisibilityTimeout"] >= 6 * render["Properties"]["Timeout"]
    for _, queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == d.WORK_QUEUE_RETENTION_S
    policies = synth.resources("AWS::SQS::QueuePolicy").values()
    assert len([p for p in policies if _denies_insecure_transport(p)]) == 4  # with webhooks'


def test_every_sqs_event_source_reports_batch_item_failures(synth: Synth) -> None:
    # The render step polls the queue itself today; any mapping added later must report.
    for mapping in synth.resources("AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_webhook_events_feed_the_webhooks_function_with_their_own_dead_letters(
    synth: Synth,
) -> None:
    queues = {
        q["Properties"]["QueueName"]: (k, q) for k, q in synth.resources("AWS::SQS::Queue").items()
    }
    events_id, events = queues[d.WEBHOOK_QUEUE]
    dlq_id, _ = queues[d.WEBHOOK_DLQ]
    function = synth.template["Resources"][synth.logical_id_of_function(f"{P}-webhooks")]
    assert events["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": d.WEBHOOK_MAX_RECEIVE_COUNT,
    }
    # more receives than the most attempts the settings allow: the function gives up first
    (most,) = [
        m.le for m in Settings.model_fields["webhook_max_attempts"].metadata if hasattr(m, "le")
    ]
    assert most < d.WEBHOOK_MAX_RECEIVE_COUNT
    assert events["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"]
    (mapping,) = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [events_id, "Arn"]}
    ]
    assert mapping["FunctionName"] == {"Ref": synth.logical_id_of_function(f"{P}-webhooks")}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for spec in d.FUNCTIONS:
        env = synth.template["Resources"][synth.logical_id_of_function(spec.name)]["Properties"]
        assert env["Environment"]["Variables"]["SUBC_WEBHOOK_QUEUE_URL"] == {"Ref": events_id}


def test_a_consumer_added_through_the_work_queue_reports_batch_item_failures() -> None:
    stack = Stack(App(), "Consumer")
    work = WorkQueue(stack, "WorkQueue")
    consumer = lambda_.Function(
        stack,
        "Consumer",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): return {}"),
    )
    work.add_consumer(consumer)
    Template.from_stack(stack).has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("WorkQueueTasks"), "Arn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def _denies_insecure_transport(policy: dict[str, Any]) -> bool:
    return any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_buckets_block_public_access_require_tls_and_encrypt(synth: Synth) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # images, market history, their access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert bucket["DeletionPolicy"] == "Retain"
    tls_only = {
        p["Properties"]["Bucket"]["Ref"]
        for p in synth.resources("AWS::S3::BucketPolicy").values()
        if _denies_insecure_transport(p)
    }
    assert tls_only == set(buckets)


def test_old_orders_images_expire(synth: Synth) -> None:
    images = synth.template["Resources"][synth.stack._logical_id(synth.stack.images.images)]
    (rule,) = images["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["Prefix"] == "images/"
    assert rule["ExpirationInDays"] == 30
    assert images["Properties"]["LoggingConfiguration"]["LogFilePrefix"] == "images/"


def test_tables_are_on_demand_with_pitr_and_ttl(synth: Synth) -> None:
    tables = {
        t["Properties"]["TableName"]: t for t in synth.resources("AWS::DynamoDB::Table").values()
    }
    assert set(tables) == {t.name for t in d.TABLES}
    for spec in d.TABLES:
        props = tables[spec.name]["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        if spec.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {
                "AttributeName": spec.ttl_attribute,
                "Enabled": True,
            }
        else:
            assert "TimeToLiveSpecification" not in props
        assert tables[spec.name]["DeletionPolicy"] == "Retain"


def test_state_machine_logs_everything_and_traces(synth: Synth) -> None:
    ((_, machine),) = synth.resources("AWS::StepFunctions::StateMachine").items()
    props = machine["Properties"]
    assert props["StateMachineName"] == d.STATE_MACHINE
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][1] == "Arn"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert json.loads(props["DefinitionString"]) == json.loads(d.STATE_MACHINE_FILE.read_text())


def test_state_machine_role_invokes_exactly_its_step_functions(synth: Synth) -> None:
    ((_, machine),) = synth.resources("AWS::StepFunctions::StateMachine").items()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    invoked = [
        r
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in _actions(s)
        for r in _resources(s)
    ]
    steps = {synth.logical_id_of_function(n) for n in d.STATE_MACHINE_SUBSTITUTIONS.values()}
    assert sorted(invoked, key=str) == sorted(({"Fn::GetAtt": [s, "Arn"]} for s in steps), key=str)


def test_three_schedules_at_their_rates_each_invoking_its_function(synth: Synth) -> None:
    rules = {
        r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["Properties"]
        for r in synth.resources("AWS::Events::Rule").values()
    }
    assert rules.keys() == {synth.logical_id_of_function(n) for n in d.SCHEDULES}
    expected = {
        f"{P}-prices": "rate(5 minutes)",
        f"{P}-dispatch": "rate(1 minute)",
        f"{P}-reaper": "rate(10 minutes)",
    }
    for name, expression in expected.items():
        assert rules[synth.logical_id_of_function(name)]["ScheduleExpression"] == expression
    permissions = [
        p["Properties"]
        for p in synth.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert {p["FunctionName"]["Fn::GetAtt"][0] for p in permissions} == set(rules)


def _alarm(synth: Synth, name: str) -> dict[str, Any]:
    alarms: list[dict[str, Any]] = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == name
    ]
    (alarm,) = alarms
    return alarm


def test_alarms_watch_the_dlq_failed_runs_machine_age_and_spend(synth: Synth) -> None:
    (topic,) = synth.resources("AWS::SNS::Topic")
    queues = {
        q["Properties"]["QueueName"]: k for k, q in synth.resources("AWS::SQS::Queue").items()
    }
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine")

    dlq = _alarm(synth, f"{P}-dead-letters-not-empty")
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queues[d.WORK_DLQ], "QueueName"]}}
    ]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)

    failing = _alarm(synth, f"{P}-render-runs-failing")
    assert (failing["Namespace"], failing["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert failing["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine}}]

    for name, metric, threshold in (
        (f"{P}-machine-alive-too-long", OLDEST_MACHINE_AGE_S, 6 * 3600),
        (f"{P}-spend-per-hour-too-high", SPEND_RATE_USD_PER_HOUR, 10),
    ):
        alarm = _alarm(synth, name)
        assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, metric)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "subconscious"}]
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Maximum", threshold)
        assert alarm["TreatMissingData"] == "breaching"  # dispatch down = nobody watching

    for alarm in synth.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]


def _methods_by_route(synth: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    """Each API method's properties by (path, METHOD), the path rebuilt from its resources."""
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path_of(ref: Any) -> str:
        if not isinstance(ref, dict) or "Ref" not in ref:
            return ""  # the API's root resource (Fn::GetAtt RootResourceId)
        resource = resources[ref["Ref"]]["Properties"]
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (path_of(m["Properties"]["ResourceId"]), m["Properties"]["HttpMethod"]): m["Properties"]
        for m in synth.resources("AWS::ApiGateway::Method").values()
    }


def test_only_the_console_s_static_files_are_served_without_the_authorizer(
    synth: Synth,
) -> None:
    methods = _methods_by_route(synth)
    api_function = synth.logical_id_of_function(f"{P}-api")
    assert PUBLIC_ROUTES == [("/console", "GET"), ("/console/{asset}", "GET")]
    for route in PUBLIC_ROUTES:
        props = methods[route]
        assert props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
        assert api_function in json.dumps(props["Integration"]["Uri"])
    assert methods[PUBLIC_ROUTES[1]]["RequestParameters"] == {"method.request.path.asset": True}
    # the page's thumbnails: its policy names the images bucket's endpoints, and the bucket
    # lets the page read them (GET only) for the zip download
    api = next(
        f["Properties"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"]["FunctionName"] == f"{P}-api"
    )
    origins = json.dumps(api["Environment"]["Variables"]["SUBC_CONSOLE_IMAGE_ORIGINS"])
    images = synth.stack._logical_id(synth.stack.images.images)
    assert ".s3.amazonaws.com" in origins and images in origins and "RegionalDomainName" in origins
    (rule,) = synth.template["Resources"][images]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["GET"]


def test_api_routes_need_the_key_authorizer_and_the_stage_is_throttled_and_logged(
    synth: Synth,
) -> None:
    ((authorizer_id, authorizer),) = synth.resources("AWS::ApiGateway::Authorizer").items()
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.x-api-key"
    assert f"{synth.logical_id_of_function(f'{P}-authorizer')}" in json.dumps(
        authorizer["Properties"]["AuthorizerUri"]
    )
    methods = _methods_by_route(synth)
    # every route of the JSON API, and the console's static files (public: see below)
    assert set(methods) == set(routes()) | set(PUBLIC_ROUTES)
    api_function = synth.logical_id_of_function(f"{P}-api")
    for route in routes():
        props = methods[route]
        assert props["AuthorizationType"] == "CUSTOM"
        assert props["AuthorizerId"] == {"Ref": authorizer_id}
        assert props["RequestParameters"]["method.request.header.x-api-key"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert api_function in json.dumps(props["Integration"]["Uri"])
    ((_, stage),) = synth.resources("AWS::ApiGateway::Stage").items()
    (settings,) = stage["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20, 40)
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert stage["Properties"]["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][1] == "Arn"
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    unauthorized = json.loads(responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"])
    assert unauthorized["error"]["code"] == "unauthorized"
    assert responses["THROTTLED"]["StatusCode"] == "429"


def test_the_quote_path_may_read_what_a_quote_reads(synth: Synth) -> None:
    # a quote scans the open orders and the live runs (its backlog and machines) and reads the
    # spot outlook: role-wide action sets would not notice one missing on one table
    tables = _table_logical_ids(synth)

    def actions_on(function_name: str, table: str) -> set[str]:
        return {
            action
            for s in _statements(synth, function_name)
            if any(r.get("Fn::GetAtt", [None])[0] == tables[table] for r in _resources(s))
            for action in _actions(s)
        }

    assert {"dynamodb:Scan", "dynamodb:GetItem"} <= actions_on(f"{P}-api", f"{P}-orders")
    assert actions_on(f"{P}-api", f"{P}-runs") == {"dynamodb:Scan"}
    assert {"dynamodb:Query", "dynamodb:GetItem"} <= actions_on(f"{P}-api", f"{P}-prices")
    assert "dynamodb:GetItem" in actions_on(f"{P}-prices", f"{P}-prices")
