"""The Lambda functions of ``infra/definitions.py``: one code asset, one layer, arm64, and for
each its own role (only what ``permissions.ACCESS`` lists) and its own log group."""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import groupby

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import definitions as d
from infra.cdk import permissions
from infra.cdk.config import StackConfig
from infra.cdk.nag import acknowledge
from subconscious.observability import SERVICE

RUNTIME = next(r for r in lambda_.Runtime.ALL if r.name == d.LAMBDA_RUNTIME)
ARCHITECTURE = lambda_.Architecture.ARM_64 if d.LAMBDA_ARCHITECTURE == "arm64" else None


def construct_id(function_name: str) -> str:
    """``subc-wait-ready`` → ``WaitReady``."""
    return "".join(part.title() for part in function_name.removeprefix(f"{d.PREFIX}-").split("-"))


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        config: StackConfig,
        environment: Mapping[str, str],
        secret_arn: str,
    ) -> None:
        super().__init__(scope, construct_id_)
        if ARCHITECTURE is None:
            raise ValueError(f"unsupported architecture {d.LAMBDA_ARCHITECTURE}")
        self.layer = lambda_.LayerVersion(
            self,
            "Subconscious",
            code=lambda_.Code.from_asset(str(config.layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="subconscious package + runtime dependencies (requirements.txt)",
        )
        code = lambda_.Code.from_asset(str(config.code_dir))
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for spec in d.FUNCTIONS:
            name = construct_id(spec.name)
            log_group = logs.LogGroup(
                self,
                f"{name}Logs",
                log_group_name=f"/aws/lambda/{spec.name}",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            role = iam.Role(
                self,
                f"{name}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"{spec.name}: only what its code path calls",
            )
            log_group.grant_write(role)
            env = {**environment, **spec.environment}
            if permissions.uses_secret(spec.name):
                env["SUBC_PROVIDER_SECRETS_ARN"] = secret_arn
            self.functions[spec.name] = lambda_.Function(
                self,
                name,
                function_name=spec.name,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=code,
                layers=[self.layer],
                timeout=Duration.seconds(spec.timeout_s),
                memory_size=spec.memory_mb,
                role=role,
                log_group=log_group,
                environment=env,
            )
            self.roles[spec.name] = role
            acknowledge(
                self.functions[spec.name],
                "AwsSolutions-L1",
                f"Pinned to {d.LAMBDA_RUNTIME} on purpose: the layer's wheels are built for it "
                "(pip --python-version) and the local stack declares it; a runtime change is "
                "made in infra/definitions.py, rebuilt and retested, not picked up silently.",
            )

    def grant(self, arns: Mapping[str, str], wildcards: Mapping[str, str]) -> None:
        """Attach ``permissions.ACCESS`` to each role; ``arns`` maps every resource key there
        to its ARN (tables as ``table:<name>``), ``wildcards`` each of ``permissions.WILDCARDS``
        to the ARN as cdk-nag prints it."""
        for function_name, accesses in permissions.ACCESS.items():
            role = self.roles[function_name]
            by_resource = sorted(accesses, key=lambda a: a.resource)
            for resource, group in groupby(by_resource, key=lambda a: a.resource):
                actions = sorted({action for access in group for action in access.actions})
                role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[arns[resource]]))
            for resource, reason in permissions.WILDCARDS.items():
                if any(a.resource == resource for a in accesses):
                    policy = role.node.find_child("DefaultPolicy")
                    acknowledge(
                        policy, f"AwsSolutions-IAM5[Resource::{wildcards[resource]}]", reason
                    )

    def function(self, name: str) -> lambda_.Function:
        return self.functions[name]


def base_environment(
    config: StackConfig, *, table_names: Mapping[str, str], resources: Mapping[str, str]
) -> dict[str, str]:
    """The SUBC_* settings every function gets (names, not permissions)."""
    env = {
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "SUBC_PROVIDERS": json.dumps(list(config.providers)),
        **{f"SUBC_{field.upper()}": name for field, name in table_names.items()},
        **resources,
        **config.settings,
    }
    return env
