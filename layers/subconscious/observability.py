"""One logger for the whole service (powertools, JSON lines, service name from the stack)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="subconscious")
