"""Scheduled dispatch (EventBridge, every minute): decide what to rent and start render runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious.logic.dispatch import tick
from subconscious.observability import logger, publish_metrics
from subconscious.services import services


@publish_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asdict(tick(services()))
