"""One logger and one metrics object for the whole service (powertools: JSON log lines, and
CloudWatch metrics as embedded-metric-format lines). The alarms in ``infra/cdk/alarms.py`` read
the namespace and metric names below, so code and infra cannot disagree on them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import Metrics

SERVICE = "subconscious"
METRICS_NAMESPACE = "Subconscious"
# Emitted by every dispatch tick (once a minute), over the runs that are live:
LIVE_MACHINES = "LiveMachines"
OLDEST_MACHINE_AGE_S = "OldestMachineAgeSeconds"  # since the oldest live machine was launched
SPEND_RATE_USD_PER_HOUR = "SpendRateUsdPerHour"  # what the live machines cost per hour, together

Event = TypeVar("Event")
Result = TypeVar("Result")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def publish_metrics(handler: Callable[[Event, Any], Result]) -> Callable[[Event, Any], Result]:
    """Flush what an invocation added to ``metrics`` when it ends (one EMF line on stdout, which
    Lambda sends to CloudWatch). Where metrics are disabled (``POWERTOOLS_METRICS_DISABLED``, the
    local stack) they are dropped; powertools alone would keep them and print them later."""

    @functools.wraps(handler)
    def wrapper(event: Event, context: Any) -> Result:
        try:
            return handler(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()
            metrics.clear_metrics()

    return wrapper
