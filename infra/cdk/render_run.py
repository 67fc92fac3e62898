"""Render run: the Step Functions state machine from the same ASL file the local stack runs,
its ``${...}`` placeholders filled by definition substitutions; logging and tracing on."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import definitions as d
from infra.cdk.nag import acknowledge


class RenderRun(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, functions: Mapping[str, lambda_.IFunction]
    ) -> None:
        super().__init__(scope, construct_id)
        steps = {
            placeholder: functions[name]
            for placeholder, name in d.STATE_MACHINE_SUBSTITUTIONS.items()
        }
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{d.STATE_MACHINE}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=d.STATE_MACHINE,
            definition_body=sfn.DefinitionBody.from_string(d.STATE_MACHINE_FILE.read_text()),
            definition_substitutions={p: f.function_arn for p, f in steps.items()},
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
        )
        # The ASL names each function by its unqualified ARN: that ARN, nothing wider.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[f.function_arn for f in steps.values()],
            )
        )
        policy = self.state_machine.role.node.try_find_child("DefaultPolicy")
        acknowledge(
            policy or self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "Step Functions' log delivery (logs:*LogDelivery*, DescribeLogGroups, "
            "DescribeResourcePolicies, PutResourcePolicy) and X-Ray (PutTraceSegments, "
            "PutTelemetryRecords, GetSampling*) take no resource-level permission.",
        )
