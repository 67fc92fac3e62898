"""The resources of the system, described once.

The local stack (``infra/local/stack.py``) creates them in moto from these definitions, and the
CDK app (``infra/cdk/``) builds the AWS stack from the same ones; ``tests/infra`` fails if the
two drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "subc"
# The Lambda layer is built for this runtime and architecture (pip --platform, no Docker).
LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
STATE_MACHINE_FILE = Path(__file__).with_name("render_run.asl.json")


@dataclass(frozen=True)
class Index:
    """A global secondary index (string keys, every attribute projected)."""

    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class Table:
    name: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    settings_field: str = ""  # the Settings field that carries the table name
    indexes: tuple[Index, ...] = ()


@dataclass(frozen=True)
class Function:
    name: str
    handler: str  # module.function, relative to the code asset root
    timeout_s: int
    memory_mb: int = 256
    environment: dict[str, str] = field(default_factory=dict)


TABLES = (
    Table(f"{PREFIX}-tenants", "key_hash", settings_field="tenants_table"),
    Table(
        f"{PREFIX}-quotes",
        "tenant_id",
        "quote_id",
        ttl_attribute="ttl",
        settings_field="quotes_table",
    ),
    # by_created: a tenant's orders newest first (GET /v1/orders; subconscious.dal.orders)
    Table(
        f"{PREFIX}-orders",
        "tenant_id",
        "order_id",
        settings_field="orders_table",
        indexes=(Index("by_created", "tenant_id", "created_at"),),
    ),
    Table(f"{PREFIX}-images", "order", "image", settings_field="images_table"),
    # leases, stop requests and ended runs (a month after they end) carry "expires"; live runs
    # and orphan sightings do not
    Table(f"{PREFIX}-runs", "run_id", settings_field="runs_table", ttl_attribute="expires"),
    # live offers per provider; each provider's rows carry the time of its latest good fetch
    Table(
        f"{PREFIX}-prices",
        "provider",
        "offer_id",
        ttl_attribute="ttl",
        settings_field="prices_table",
    ),
    # powertools idempotency's default schema: partition key "id", TTL "expiration"
    Table(
        f"{PREFIX}-idempotency",
        "id",
        ttl_attribute="expiration",
        settings_field="idempotency_table",
    ),
    # webhooks: each tenant's signing secret, each order's end event with every attempt (events
    # carry "expires": kept 30 days for support, then deleted; secrets do not)
    Table(f"{PREFIX}-webhooks", "pk", ttl_attribute="expires", settings_field="webhooks_table"),
)

IMAGES_BUCKET = f"{PREFIX}-images"
# market snapshots, gzip JSON lines partitioned by date, for forecasting and backtests
HISTORY_BUCKET = f"{PREFIX}-market-history"
WORK_QUEUE = f"{PREFIX}-work"
WORK_DLQ = f"{PREFIX}-work-dlq"
MAX_RECEIVE_COUNT = 5
RENDER_FUNCTION_TIMEOUT_S = 900
# The render step sets visibility on every receive and extends it per batch; the queue's default
# follows AWS's rule for a queue a function consumes: at least 6 x that function's timeout.
WORK_QUEUE_VISIBILITY_S = 6 * RENDER_FUNCTION_TIMEOUT_S
# Orders may wait days for a cheap machine: their tasks must outlive SQS's 4-day default.
WORK_QUEUE_RETENTION_S = 14 * 24 * 3600
STATE_MACHINE = f"{PREFIX}-render-run"
# Webhook events to deliver (docs/webhooks.md): a failed attempt's message is hidden for its
# backoff (up to 12 h) and comes back; the dead-letter queue catches one that kept failing
# before its attempts were even recorded (the function counts attempts itself, at most 20).
WEBHOOK_QUEUE = f"{PREFIX}-webhooks"
WEBHOOK_DLQ = f"{PREFIX}-webhooks-dlq"
WEBHOOK_MAX_RECEIVE_COUNT = 25
WEBHOOK_FUNCTION_TIMEOUT_S = 60
WEBHOOK_QUEUE_VISIBILITY_S = 6 * WEBHOOK_FUNCTION_TIMEOUT_S  # AWS's rule for a consumed queue
# Secrets Manager (AWS only): provider API keys and the machine credential key, as one JSON object
# whose keys are Settings fields (see subconscious.settings.SECRET_FIELDS).
PROVIDER_SECRET = f"{PREFIX}/provider-keys"

FUNCTIONS = (
    Function(f"{PREFIX}-api", "functions.api.handler.lambda_handler", timeout_s=29, memory_mb=512),
    # API Gateway's request authorizer (AWS only; the local HTTP front leaves keys to the API)
    Function(f"{PREFIX}-authorizer", "functions.authorizer.handler.lambda_handler", timeout_s=10),
    Function(f"{PREFIX}-dispatch", "functions.dispatch.handler.lambda_handler", timeout_s=60),
    Function(f"{PREFIX}-reaper", "functions.reaper.handler.lambda_handler", timeout_s=120),
    Function(f"{PREFIX}-prices", "functions.prices.handler.lambda_handler", timeout_s=120),
    Function(f"{PREFIX}-provision", "functions.render_run.handler.provision", timeout_s=60),
    Function(f"{PREFIX}-wait-ready", "functions.render_run.handler.wait_ready", timeout_s=60),
    Function(
        f"{PREFIX}-render",
        "functions.render_run.handler.render",
        timeout_s=RENDER_FUNCTION_TIMEOUT_S,
    ),
    Function(f"{PREFIX}-teardown", "functions.render_run.handler.teardown", timeout_s=60),
    Function(f"{PREFIX}-record", "functions.render_run.handler.record", timeout_s=30),
    # SQS-triggered: delivers webhook events (AWS: an event source; locally: a poller)
    Function(
        f"{PREFIX}-webhooks",
        "functions.webhooks.handler.lambda_handler",
        timeout_s=WEBHOOK_FUNCTION_TIMEOUT_S,
    ),
)

# ${Name} placeholders in the ASL file → the function that fills them.
STATE_MACHINE_SUBSTITUTIONS = {
    "ProvisionFunctionArn": f"{PREFIX}-provision",
    "WaitReadyFunctionArn": f"{PREFIX}-wait-ready",
    "RenderFunctionArn": f"{PREFIX}-render",
    "TeardownFunctionArn": f"{PREFIX}-teardown",
    "RecordFunctionArn": f"{PREFIX}-record",
}

SCHEDULES = {  # function → rate in seconds (EventBridge in AWS, a timer locally)
    f"{PREFIX}-dispatch": 60,
    f"{PREFIX}-reaper": 600,
    f"{PREFIX}-prices": 300,
}
