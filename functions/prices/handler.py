"""Scheduled price refresh (EventBridge, every 5 minutes): every provider's offers into the
price cache, and a snapshot into the market history."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious.logic.prices import refresh
from subconscious.observability import logger
from subconscious.services import services


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asdict(refresh(services()))
