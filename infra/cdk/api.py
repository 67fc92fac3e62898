"""API: API Gateway REST API in front of the api Lambda. Routes from ``docs/openapi.json``
(the API's own spec), an API-key authorizer over the tenants table, stage throttling, access
logs, and error bodies in the API's own shape for what API Gateway answers itself."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.nag import acknowledge
from infra.definitions import PREFIX
from subconscious.logic.auth import KEY_HEADER
from subconscious.logic.console import CONSOLE_PATH

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
STAGE = "prod"


def routes() -> list[tuple[str, str]]:
    """(path, METHOD) of every route the API Lambda serves."""
    spec = json.loads(OPENAPI.read_text())
    return sorted((path, method.upper()) for path, ops in spec["paths"].items() for method in ops)


# The web console's page and its assets (subconscious.logic.console): no key, no authorizer.
# They hold no one's data; the page asks for a key and sends it with its own calls.
PUBLIC_ROUTES = [(CONSOLE_PATH, "GET"), (f"{CONSOLE_PATH}/{{asset}}", "GET")]


def _error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, "details": []}})


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        authorizer: lambda_.IFunction,
        rate_limit: int,
        burst_limit: int,
        authorizer_cache_s: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{PREFIX}-api",
            description="Subconscious: quotes, orders, images, market",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry prompts: never in execution logs
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role (needed for access and execution "
            "logs) is the AWS-managed push-to-logs policy; it grants nothing else.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "No WAF yet: every route needs a tenant's key (checked at the edge by the "
            "authorizer), and the stage is throttled. Add a web ACL when traffic warrants it.",
        )
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "KeyAuthorizer",
            authorizer_name=f"{PREFIX}-api-key",
            handler=authorizer,
            identity_sources=[apigw.IdentitySource.header(KEY_HEADER)],
            results_cache_ttl=Duration.seconds(authorizer_cache_s),
        )
        # Enforces what each method declares (the key header, path parameters); bodies are
        # validated by the API Lambda itself (pydantic), which answers in the API's error shape.
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        integration = apigw.LambdaIntegration(handler, proxy=True, allow_test_invoke=False)
        for path, method in routes():
            resource = self.rest_api.root.resource_for_path(path)
            parameters = {f"method.request.header.{KEY_HEADER}": True}
            for segment in path.split("/"):
                if segment.startswith("{"):
                    parameters[f"method.request.path.{segment.strip('{}')}"] = True
            resource.add_method(
                method,
                integration,
                authorizer=self.authorizer,
                authorization_type=apigw.AuthorizationType.CUSTOM,
                request_validator=self.validator,
                request_parameters=parameters,
            )
            # the authorizer is a Lambda REQUEST authorizer, not a Cognito user pool
            acknowledge(
                resource,
                "AwsSolutions-COG4",
                "Customers are machines holding a tenant API key, not Cognito users; the "
                "key is checked by the request authorizer against the tenants table.",
            )
        for path, method in PUBLIC_ROUTES:
            resource = self.rest_api.root.resource_for_path(path)
            resource.add_method(
                method,
                integration,
                authorization_type=apigw.AuthorizationType.NONE,
                request_validator=self.validator,
                request_parameters={
                    f"method.request.path.{segment.strip('{}')}": True
                    for segment in path.split("/")
                    if segment.startswith("{")
                },
            )
            reason = (
                "The web console's static page and assets (GET only): public by design, they "
                "hold no one's data; every call the page makes carries the tenant key and "
                "goes through the key authorizer."
            )
            acknowledge(resource, "AwsSolutions-APIG4", reason)
            acknowledge(resource, "AwsSolutions-COG4", reason)
        json_type = "application/json"
        self.rest_api.add_gateway_response(
            "Unauthorized",
            type=apigw.ResponseType.UNAUTHORIZED,
            status_code="401",
            templates={
                json_type: _error_body(
                    "unauthorized", f"a valid API key is required (header {KEY_HEADER})"
                )
            },
        )
        self.rest_api.add_gateway_response(
            "Throttled",
            type=apigw.ResponseType.THROTTLED,
            status_code="429",
            templates={json_type: _error_body("throttled", "too many requests; retry later")},
        )
