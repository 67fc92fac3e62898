"""Scheduled reaper (EventBridge, every 10 minutes): destroy machines no live run owns."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious.logic.reaper import reap
from subconscious.observability import logger
from subconscious.services import services


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asdict(reap(services()))
