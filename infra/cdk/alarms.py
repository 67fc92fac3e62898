"""Alarms: failed tasks in the dead-letter queue, render runs failing, a machine alive too long,
spend per hour too high. Each notifies one SNS topic (email subscription optional)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.definitions import PREFIX
from subconscious.observability import (
    METRICS_NAMESPACE,
    OLDEST_MACHINE_AGE_S,
    SERVICE,
    SPEND_RATE_USD_PER_HOUR,
)

PERIOD = Duration.minutes(5)


def fleet_metric(name: str) -> cloudwatch.Metric:
    """A metric dispatch emits (powertools adds the ``service`` dimension)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=cloudwatch.Stats.MAXIMUM,
        period=PERIOD,
    )


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dlq: sqs.IQueue,
        state_machine: sfn.IStateMachine,
        machine_age_limit_s: int,
        spend_rate_limit_usd_per_hour: float,
        email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Topic", topic_name=f"{PREFIX}-alarms", enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        greater = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        self.dlq_not_empty = cloudwatch.Alarm(
            self,
            "DeadLettersNotEmpty",
            alarm_name=f"{PREFIX}-dead-letters-not-empty",
            alarm_description="Render tasks failed 5 deliveries and wait in the DLQ.",
            metric=dlq.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=greater,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.runs_failing = cloudwatch.Alarm(
            self,
            "RenderRunsFailing",
            alarm_name=f"{PREFIX}-render-runs-failing",
            alarm_description="Render runs ended in RunFailed (see the runs table's error).",
            metric=state_machine.metric_failed(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=greater,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # Dispatch emits these every minute; no data means dispatch itself is down: breaching,
        # since nobody then watches the machines we pay for.
        self.machine_too_old = cloudwatch.Alarm(
            self,
            "MachineAliveTooLong",
            alarm_name=f"{PREFIX}-machine-alive-too-long",
            alarm_description=f"A rented machine has run longer than {machine_age_limit_s}s.",
            metric=fleet_metric(OLDEST_MACHINE_AGE_S),
            threshold=machine_age_limit_s,
            comparison_operator=greater,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        self.spend_too_high = cloudwatch.Alarm(
            self,
            "SpendPerHourTooHigh",
            alarm_name=f"{PREFIX}-spend-per-hour-too-high",
            alarm_description=(
                f"Live machines cost more than ${spend_rate_limit_usd_per_hour}/h together."
            ),
            metric=fleet_metric(SPEND_RATE_USD_PER_HOUR),
            threshold=spend_rate_limit_usd_per_hour,
            comparison_operator=greater,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        for alarm in (
            self.dlq_not_empty,
            self.runs_failing,
            self.machine_too_old,
            self.spend_too_high,
        ):
            alarm.add_alarm_action(actions.SnsAction(self.topic))
