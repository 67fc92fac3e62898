"""State: the DynamoDB tables of ``infra/definitions.py`` (on demand, PITR, TTL where defined)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from constructs import Construct

from infra import definitions as d


class State(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, ddb.Table] = {}
        for spec in d.TABLES:
            self.tables[spec.name] = ddb.Table(
                self,
                spec.settings_field.removesuffix("_table").title(),
                table_name=spec.name,
                partition_key=ddb.Attribute(name=spec.partition_key, type=ddb.AttributeType.STRING),
                sort_key=(
                    ddb.Attribute(name=spec.sort_key, type=ddb.AttributeType.STRING)
                    if spec.sort_key
                    else None
                ),
                billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                time_to_live_attribute=spec.ttl_attribute,
                encryption=ddb.TableEncryption.AWS_MANAGED,
                removal_policy=RemovalPolicy.RETAIN,  # orders and tenants outlive a stack
            )
            for index in spec.indexes:
                self.tables[spec.name].add_global_secondary_index(
                    index_name=index.name,
                    partition_key=ddb.Attribute(
                        name=index.partition_key, type=ddb.AttributeType.STRING
                    ),
                    sort_key=ddb.Attribute(name=index.sort_key, type=ddb.AttributeType.STRING),
                    projection_type=ddb.ProjectionType.ALL,
                )

    def table(self, name: str) -> ddb.Table:
        return self.tables[name]
