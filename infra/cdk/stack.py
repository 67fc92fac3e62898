"""The stack: thin, one construct per capability, wired by names from ``infra/definitions.py``."""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Aws, CfnElement, CfnOutput, Stack
from constructs import Construct

from infra import definitions as d
from infra.cdk import permissions
from infra.cdk.alarms import Alarms
from infra.cdk.api import Api
from infra.cdk.config import StackConfig
from infra.cdk.ec2_market import Ec2Market
from infra.cdk.functions import Functions, base_environment
from infra.cdk.images import HISTORY_PREFIX, IMAGES_PREFIX, Images
from infra.cdk.render_run import RenderRun
from infra.cdk.schedules import Schedules
from infra.cdk.secrets import Secrets
from infra.cdk.state import State
from infra.cdk.webhooks import Webhooks
from infra.cdk.work_queue import WorkQueue

STACK_NAME = "Subconscious"


class SubconsciousStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Subconscious Systems: batch text-to-image on rented GPUs",
        )
        state = State(self, "State")
        work = WorkQueue(self, "WorkQueue")
        webhooks = Webhooks(self, "Webhooks")
        images = Images(self, "Images", retention_days=config.image_retention_days)
        secrets = Secrets(self, "Secrets")
        environment = base_environment(
            config,
            table_names={t.settings_field: t.name for t in d.TABLES},
            resources={
                "SUBC_IMAGES_BUCKET": images.images.bucket_name,
                "SUBC_HISTORY_BUCKET": images.history.bucket_name,
                "SUBC_WORK_QUEUE_URL": work.queue.queue_url,
                "SUBC_DEAD_LETTER_QUEUE_URL": work.dlq.queue_url,
                "SUBC_WEBHOOK_QUEUE_URL": webhooks.queue.queue_url,
            },
        )
        functions = Functions(
            self,
            "Functions",
            config=config,
            environment=environment,
            secret_arn=secrets.provider_keys.secret_arn,
        )
        if "ec2" in config.providers:
            market = Ec2Market(self, "Ec2Market", roles=functions.roles)
            for function in functions.functions.values():
                for key, value in market.settings.items():
                    function.add_environment(key, value)
        render_run = RenderRun(self, "RenderRun", functions=functions.functions)
        machine = render_run.state_machine
        functions.function(f"{d.PREFIX}-api").add_environment(
            "SUBC_CONSOLE_IMAGE_ORIGINS", json.dumps(images.image_origins)
        )
        dispatch = functions.function(f"{d.PREFIX}-dispatch")
        dispatch.add_environment("SUBC_RENDER_RUN_STATE_MACHINE_ARN", machine.state_machine_arn)
        executions = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{d.STATE_MACHINE}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        functions.grant(
            {
                **{f"table:{name}": table.table_arn for name, table in state.tables.items()},
                **{
                    f"index:{spec.name}/{index.name}": (
                        f"{state.tables[spec.name].table_arn}/index/{index.name}"
                    )
                    for spec in d.TABLES
                    for index in spec.indexes
                },
                permissions.QUEUE: work.queue.queue_arn,
                permissions.DEAD_LETTERS: work.dlq.queue_arn,
                permissions.IMAGE_OBJECTS: images.images.arn_for_objects(f"{IMAGES_PREFIX}*"),
                permissions.HISTORY_OBJECTS: images.history.arn_for_objects(f"{HISTORY_PREFIX}*"),
                permissions.HISTORY_BUCKET: images.history.bucket_arn,
                permissions.PROVIDER_KEYS: secrets.provider_keys.secret_arn,
                permissions.STATE_MACHINE: machine.state_machine_arn,
                permissions.EXECUTIONS: executions,
                permissions.WEBHOOK_QUEUE: webhooks.queue.queue_arn,
            },
            wildcards={
                permissions.IMAGE_OBJECTS: f"<{self._logical_id(images.images)}.Arn>/"
                f"{IMAGES_PREFIX}*",
                permissions.HISTORY_OBJECTS: f"<{self._logical_id(images.history)}.Arn>/"
                f"{HISTORY_PREFIX}*",
                permissions.EXECUTIONS: "arn:<AWS::Partition>:states:<AWS::Region>:"
                f"<AWS::AccountId>:execution:{d.STATE_MACHINE}:*",
            },
        )
        webhooks.deliver_with(functions.function(f"{d.PREFIX}-webhooks"))
        Schedules(self, "Schedules", rates_s=config.schedule_rates_s, functions=functions.functions)
        api = Api(
            self,
            "Api",
            handler=functions.function(f"{d.PREFIX}-api"),
            authorizer=functions.function(f"{d.PREFIX}-authorizer"),
            rate_limit=config.api_rate_limit,
            burst_limit=config.api_burst_limit,
            authorizer_cache_s=config.authorizer_cache_s,
        )
        alarms = Alarms(
            self,
            "Alarms",
            dlq=work.dlq,
            state_machine=machine,
            machine_age_limit_s=config.machine_age_limit_s,
            spend_rate_limit_usd_per_hour=config.spend_rate_limit_usd_per_hour,
            email=config.alarm_email,
        )
        CfnOutput(self, "ApiUrl", value=api.rest_api.url)
        CfnOutput(self, "TenantsTable", value=state.table(f"{d.PREFIX}-tenants").table_name)
        CfnOutput(self, "ProviderSecret", value=secrets.provider_keys.secret_name)
        CfnOutput(self, "Region", value=Aws.REGION)
        self.alarms = alarms
        self.state, self.work, self.images, self.secrets = state, work, images, secrets
        self.webhooks = webhooks
        self.functions, self.render_run, self.api = functions, render_run, api

    def _logical_id(self, construct: Construct) -> str:
        default = construct.node.default_child
        assert isinstance(default, CfnElement)
        return str(self.resolve(default.logical_id))
