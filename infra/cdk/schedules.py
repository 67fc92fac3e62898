"""Schedules: EventBridge rules that invoke prices, dispatch and the reaper at their rates."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


def rate(seconds: int) -> events.Schedule:
    if seconds < 60 or seconds % 60:
        raise ValueError(f"EventBridge rates are whole minutes, not {seconds}s")
    return events.Schedule.rate(Duration.minutes(seconds // 60))


class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rates_s: Mapping[str, int],
        functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules: dict[str, events.Rule] = {}
        for name, seconds in rates_s.items():
            self.rules[name] = events.Rule(
                self,
                name,
                rule_name=f"{name}-schedule",
                description=f"{name} every {seconds // 60} min",
                schedule=rate(seconds),
                # a missed tick is not retried: the next one comes within the rate
                targets=[targets.LambdaFunction(functions[name], retry_attempts=0)],
            )
