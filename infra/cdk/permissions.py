"""Least privilege: what each function's code path calls, and on which resource.

Read from the logic and ``dal`` modules each handler reaches (``subconscious/logic/*.py`` →
``subconscious/dal/*.py``). A DynamoDB transaction needs the action of each of its items
(``TransactWriteItems`` with a ConditionCheck and a Put = ``ConditionCheckItem`` + ``PutItem``).
The template tests assert these sets exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.definitions import PREFIX


@dataclass(frozen=True)
class Access:
    resource: str  # "table:<name>", or one of RESOURCES below
    actions: tuple[str, ...]


# resource keys other than tables; the stack maps each to an ARN
QUEUE = "work-queue"
DEAD_LETTERS = "dead-letters"
IMAGE_OBJECTS = "image-objects"
HISTORY_OBJECTS = "history-objects"
HISTORY_BUCKET = "history-bucket"
PROVIDER_KEYS = "provider-keys"
STATE_MACHINE = "state-machine"
EXECUTIONS = "executions"
WEBHOOK_QUEUE = "webhook-queue"

# Resources that can only be named with a wildcard, and why that is still least privilege.
WILDCARDS = {
    IMAGE_OBJECTS: "Image objects are created per order at run time; the grant is limited to "
    "the images/ prefix of the images bucket and to the one action each role needs.",
    HISTORY_OBJECTS: "A market snapshot object is written per refresh and read back for the "
    "spot forecast; the grant is limited to the market/ prefix of the history bucket and to "
    "s3:PutObject and s3:GetObject.",
    EXECUTIONS: "Dispatch checks whether the render runs it started still run: executions of "
    "the one render-run state machine, named by run id at run time (DescribeExecution only).",
}


def _table(name: str, *actions: str) -> Access:
    return Access(f"table:{PREFIX}-{name}", tuple(f"dynamodb:{a}" for a in actions))


def _index(table: str, index: str, *actions: str) -> Access:
    """A global secondary index (``index:<table>/<index>``): a Query on one needs its own ARN."""
    return Access(f"index:{PREFIX}-{table}/{index}", tuple(f"dynamodb:{a}" for a in actions))


_SECRET = Access(PROVIDER_KEYS, ("secretsmanager:GetSecretValue",))
# Whoever ends an order stores its webhook event and queues it (logic/webhooks.py announce).
_ANNOUNCE = (_table("webhooks", "PutItem"), Access(WEBHOOK_QUEUE, ("sqs:SendMessage",)))
_RUN_STEP = (_table("runs", "GetItem", "PutItem"), _SECRET)

ACCESS: dict[str, tuple[Access, ...]] = {
    f"{PREFIX}-api": (
        _table("tenants", "GetItem"),  # logic.auth
        _table("quotes", "GetItem", "PutItem"),  # logic.quotes, logic.orders
        # accept, read, cancel; a quote scans the open orders (the backlog it must keep)
        _table("orders", "GetItem", "PutItem", "UpdateItem", "Scan"),
        _index("orders", "by_created", "Query"),  # GET /v1/orders: newest first
        _table("runs", "Scan"),  # a quote counts the live machines and the ones leaving
        _table("images", "Query"),  # list images
        _table("idempotency", "GetItem", "PutItem", "UpdateItem", "DeleteItem"),  # powertools
        # quotes and GET /v1/market read the price cache; quotes read the spot outlook
        _table("prices", "Query", "GetItem"),
        Access(IMAGE_OBJECTS, ("s3:GetObject",)),  # presigned links are signed by this role
        Access(QUEUE, ("sqs:SendMessage",)),  # accepted orders' tasks
        _SECRET,  # a stale cache asks providers live
        # a cancel announces the order's end; GET /v1/webhooks/secret reads or makes the secret
        _table("webhooks", "GetItem", "PutItem"),
        Access(WEBHOOK_QUEUE, ("sqs:SendMessage",)),
    ),
    f"{PREFIX}-authorizer": (_table("tenants", "GetItem"),),
    f"{PREFIX}-dispatch": (
        # lease (put/delete), live and failed runs (scan), a new run under the lease (transaction)
        _table("runs", "PutItem", "DeleteItem", "Scan", "ConditionCheckItem"),
        # the sweep (logic/lifecycle.py): open orders (scan), a given-up task's order read and
        # ended (get, update), its images settled with the order's count (transaction)
        _table("orders", "Scan", "GetItem", "UpdateItem"),
        _table("images", "PutItem"),
        _table("prices", "Query"),
        Access(QUEUE, ("sqs:GetQueueAttributes",)),
        Access(DEAD_LETTERS, ("sqs:ReceiveMessage", "sqs:DeleteMessage")),
        Access(STATE_MACHINE, ("states:StartExecution",)),
        Access(EXECUTIONS, ("states:DescribeExecution",)),
        _SECRET,
        *_ANNOUNCE,  # the sweep ends orders
    ),
    f"{PREFIX}-reaper": (_table("runs", "GetItem", "PutItem", "DeleteItem", "Scan"), _SECRET),
    f"{PREFIX}-prices": (
        _table("prices", "BatchWriteItem", "PutItem", "UpdateItem", "GetItem"),
        # a snapshot per refresh; the spot outlook reads the last days back (hourly)
        Access(HISTORY_OBJECTS, ("s3:PutObject", "s3:GetObject")),
        Access(HISTORY_BUCKET, ("s3:ListBucket",)),
        _SECRET,
    ),
    f"{PREFIX}-provision": _RUN_STEP,
    f"{PREFIX}-wait-ready": _RUN_STEP,
    f"{PREFIX}-render": (
        *_RUN_STEP,
        _table("orders", "GetItem", "UpdateItem"),
        _table("images", "PutItem"),  # with the order's count, in one transaction
        # a failed task is queued again, split, before its delivery is deleted
        Access(
            QUEUE,
            (
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
            ),
        ),
        Access(IMAGE_OBJECTS, ("s3:PutObject",)),
        *_ANNOUNCE,  # the last image stored, or a task given up, ends its order
    ),
    f"{PREFIX}-teardown": _RUN_STEP,
    f"{PREFIX}-record": (
        _table("runs", "GetItem", "PutItem"),
        # the run's measured rate moves its GPU's factor (logic/throughput.py learn_from_run)
        _table("prices", "Query", "PutItem"),
    ),
    f"{PREFIX}-webhooks": (
        # the event and its attempts; the tenant's secret (made here if the API never was asked)
        _table("webhooks", "GetItem", "PutItem", "UpdateItem"),
        # what the SQS event source needs (CDK grants the same), and a failed attempt's backoff
        Access(
            WEBHOOK_QUEUE,
            (
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ),
        ),
    ),
}


def uses_secret(function_name: str) -> bool:
    return any(a.resource == PROVIDER_KEYS for a in ACCESS[function_name])
