"""What AWS charges to serve images: the part of an order's cost that is not the GPU. Pure.

A rented machine is driven by one Step Functions execution (``infra/render_run.asl.json``):
Provision, WaitReady polled every ``poll_interval_s`` until automatic1111 answers, Render in
slices of ``render_slice_s`` (a Lambda that waits on the GPU the whole time it renders), then
Teardown and Record. Each image is uploaded to S3, recorded in DynamoDB in a transaction that
also counts it on its order, and later downloaded once by the customer through a presigned URL
(S3 GET and data transfer out). Each render task (a batch of seeds) travels through SQS.

Every count below is read off the code that does it (cited beside it); every price is the
public list price in us-east-1 (cited beside it, first tier, free tiers not counted: a free
tier is shared with everything else in the account). Where the code leaves a quantity open
(how long start-up takes, how many images a task holds, how large an order's item is) the
count takes the safe side and says so. Money is ``Decimal`` dollars.

Not counted: API Gateway and the API Lambda per request (customer-driven: a quote, an
acceptance and however often the customer polls; $3.50 per million REST requests), CloudWatch
Logs ingestion ($0.50/GB: the state machine logs every transition with its data), X-Ray traces
($5 per million), and the platform's fixed costs that no order causes (the dispatch, prices and
reaper schedules, the queue depth polls). See ``docs/serving-costs.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

_MILLION = Decimal(1_000_000)

# --- Prices: AWS public list prices, us-east-1, first tier ------------------------------------
# Lambda, Arm (Graviton): $0.0000133334 per GB-second for the first 7.5 billion GB-s a month;
# x86 $0.0000166667; requests $0.20 per million. https://aws.amazon.com/lambda/pricing/
LAMBDA_USD_PER_GB_S_ARM64 = Decimal("0.0000133334")
LAMBDA_USD_PER_GB_S_X86_64 = Decimal("0.0000166667")
LAMBDA_USD_PER_REQUEST = Decimal("0.20") / _MILLION
# Step Functions Standard workflows: $0.025 per 1,000 state transitions.
# https://aws.amazon.com/step-functions/pricing/
SFN_USD_PER_TRANSITION = Decimal("0.025") / 1000
# DynamoDB on-demand (since the November 2024 cut): $0.625 per million write request units,
# $0.125 per million read request units. A standard write is 1 WRU per 1 KB of item, a
# transactional one 2 WRU per 1 KB; an eventually consistent read 0.5 RRU per 4 KB.
# https://aws.amazon.com/dynamodb/pricing/on-demand/
DDB_USD_PER_WRU = Decimal("0.625") / _MILLION
DDB_USD_PER_RRU = Decimal("0.125") / _MILLION
# S3 Standard: PUT/COPY/POST/LIST $0.005 per 1,000 requests, GET $0.0004 per 1,000, storage
# $0.023 per GB-month (first 50 TB); data transfer out to the internet $0.09 per GB (first
# 10 TB a month, after the 100 GB a month AWS gives free across services).
# https://aws.amazon.com/s3/pricing/
S3_USD_PER_PUT = Decimal("0.005") / 1000
S3_USD_PER_GET = Decimal("0.0004") / 1000
S3_USD_PER_GB_MONTH = Decimal("0.023")
DATA_OUT_USD_PER_GB = Decimal("0.09")
# SQS standard queue: $0.40 per million requests (each 64 KB chunk of a payload is a request;
# a render task is well under 64 KB). https://aws.amazon.com/sqs/pricing/
SQS_USD_PER_REQUEST = Decimal("0.40") / _MILLION

# --- What the system does, read off its code and settings ---------------------------------------
# The render Lambda: 256 MB (infra/definitions.py, Function's default memory_mb), Arm
# (LAMBDA_ARCHITECTURE = "arm64"). tests/unit/planner/test_serving.py checks both still hold.
RENDER_MEMORY_MB = 256
LAMBDA_USD_PER_GB_S = LAMBDA_USD_PER_GB_S_ARM64
# The short steps, charged for their whole timeout (infra/definitions.py): Provision 60 s,
# Teardown 60 s, Record 30 s, all 256 MB. An upper bound; they take a second or two.
FIXED_STEP_LAMBDA_S = 60 + 60 + 30
# Settings defaults (layers/subconscious/settings.py): WaitReady is polled every 15 s for at
# most ready_timeout_s (900 s) before a machine is given up; Render runs in 540 s slices.
POLL_INTERVAL_S = 15
READY_TIMEOUT_S = 900
RENDER_SLICE_S = 540
# State transitions (infra/render_run.asl.json), each state entered counts one:
# Provision, Teardown, Record, Outcome and RunSucceeded once per run; per poll WaitReady,
# IsReady, WaitBeforePoll; per slice Render, MoreWork.
FIXED_TRANSITIONS = 5
TRANSITIONS_PER_POLL = 3
TRANSITIONS_PER_SLICE = 2
# DynamoDB, per image (dal/images.py ImageStore.record): one TransactWriteItems of two items,
# the image's row (prompt, seed, size, key: under 1 KB for a prompt under ~700 characters) and
# the order's counter. An UpdateItem is charged for the whole item, not the attributes it
# changes, and an order's item holds its whole job document: ~1.5 KB for one prompt, taken as
# 2 KB. Transactional: 2 WRU per KB of each.
IMAGE_ROW_KB = 1
ORDER_ITEM_KB = 2
TRANSACTION_WRU_PER_KB = 2
# Per task (logic/batch_storage.py, logic/render_run.py): the order's spend added (one
# UpdateItem of the order's item); the order read for its verdict and the run's stop flag read
# before each receive (eventually consistent, under 4 KB: 0.5 RRU each).
# Per image listed for download (dal/images.py page): its row read by a Query, ~0.5 KB of a
# 4 KB read unit: taken as 0.125 RRU.
READS_RRU_PER_TASK = Decimal("1.0")
LIST_RRU_PER_IMAGE = Decimal("0.125")
# Per run (logic/render_run.py): the run's item (~2 KB) saved by Provision, twice by WaitReady
# (running, ready), by every slice, by Teardown, by Record, and the throughput correction
# learned; read by each step and each poll (0.5 RRU each).
RUN_ITEM_KB = 2
RUN_WRITES = 6
# SQS per task (dal/work_queue.py, logic/render_run.py): SendMessageBatch carries 10 tasks
# (0.1 request each); a receive takes 2 at a time (0.5); each task's visibility is extended once
# while it renders and it is deleted once stored. Per run: the empty receives that end it
# (idle_polls_before_teardown = 2).
SQS_REQUESTS_PER_TASK = Decimal("0.1") + Decimal("0.5") + 1 + 1
SQS_REQUESTS_PER_RUN = 2
# A PNG's size, measured: 573.8 KiB for SD 1.5 at 512x512 and 2293.2 KiB for SDXL at
# 1024x1024 (docs/data/worker-bench-h100-run1.json, png_kb_per_image: 2.24 bytes a pixel both).
PNG_BYTES_PER_PIXEL = Decimal("2.25")
# Each image is downloaded once; S3 keeps it image_retention_days (infra/cdk/config.py: 30).
DOWNLOADS_PER_IMAGE = 1
RETENTION_MONTHS = Decimal(1)
# AWS's GB for data transfer taken as 10^9 bytes: the safe side of 2^30.
BYTES_PER_GB = Decimal(10**9)


@dataclass(frozen=True)
class ServingCost:
    """AWS's charges for serving one order (or any set of images), by service, in dollars."""

    lambda_usd: Decimal  # render step GB-seconds while machines are held, short steps, requests
    step_functions_usd: Decimal  # state transitions: start-up polls, slices, the fixed states
    dynamodb_usd: Decimal  # image transactions, order and run writes, reads
    s3_requests_usd: Decimal  # PUT per image, GET per download
    s3_storage_usd: Decimal  # the retention period's GB-months
    sqs_usd: Decimal  # send, receive, visibility, delete per task; empty receives per run
    data_out_usd: Decimal  # downloads to the internet

    @property
    def total_usd(self) -> Decimal:
        return (
            self.lambda_usd
            + self.step_functions_usd
            + self.dynamodb_usd
            + self.s3_requests_usd
            + self.s3_storage_usd
            + self.sqs_usd
            + self.data_out_usd
        )

    def as_dict(self) -> dict[str, Decimal]:
        return {
            "lambda": self.lambda_usd,
            "step_functions": self.step_functions_usd,
            "dynamodb": self.dynamodb_usd,
            "s3_requests": self.s3_requests_usd,
            "s3_storage": self.s3_storage_usd,
            "sqs": self.sqs_usd,
            "data_out": self.data_out_usd,
        }


def png_bytes(width: int, height: int) -> Decimal:
    """The expected size of one PNG of ``width`` x ``height`` (measured bytes a pixel)."""
    return PNG_BYTES_PER_PIXEL * width * height


@dataclass(frozen=True)
class Usage:
    """What serving uses, in AWS's billing units, before prices."""

    lambda_gb_s: Decimal = Decimal(0)
    lambda_requests: int = 0
    transitions: int = 0
    wru: Decimal = Decimal(0)
    rru: Decimal = Decimal(0)
    s3_puts: int = 0
    s3_gets: int = 0
    stored_gb_months: Decimal = Decimal(0)
    sqs_requests: Decimal = Decimal(0)
    gb_out: Decimal = Decimal(0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def priced(self) -> ServingCost:
        return ServingCost(
            lambda_usd=self.lambda_gb_s * LAMBDA_USD_PER_GB_S
            + self.lambda_requests * LAMBDA_USD_PER_REQUEST,
            step_functions_usd=self.transitions * SFN_USD_PER_TRANSITION,
            dynamodb_usd=self.wru * DDB_USD_PER_WRU + self.rru * DDB_USD_PER_RRU,
            s3_requests_usd=self.s3_puts * S3_USD_PER_PUT + self.s3_gets * S3_USD_PER_GET,
            s3_storage_usd=self.stored_gb_months * S3_USD_PER_GB_MONTH,
            sqs_usd=self.sqs_requests * SQS_USD_PER_REQUEST,
            data_out_usd=self.gb_out * DATA_OUT_USD_PER_GB,
        )


_RENDER_GB = Decimal(RENDER_MEMORY_MB) / 1024
_RUN_READ_RRU = Decimal("0.5")
# A machine whose start-up is unknown polls its whole ready timeout.
BOUND_POLLS = math.ceil(READY_TIMEOUT_S / POLL_INTERVAL_S)


def machines_usage(machine_seconds: float, machines: int, *, polls: int | None = None) -> Usage:
    """The charges that come with renting: the render step for every second held, the
    short steps, the state machine's transitions, the run's own reads and writes, the empty
    receives that end a run. ``polls``: WaitReady polls in all (unknown: every machine polls
    its whole ready timeout)."""
    if machine_seconds < 0 or machines < 0:
        raise ValueError("images, machines and machine_seconds must not be negative")
    polls = machines * BOUND_POLLS if polls is None else polls
    # every machine ends in a slice of its own; the rest follow from the time held
    slices = math.ceil(machine_seconds / RENDER_SLICE_S) + machines
    held = Decimal(str(machine_seconds)) + machines * FIXED_STEP_LAMBDA_S
    return Usage(
        lambda_gb_s=held * _RENDER_GB,
        lambda_requests=machines * 3 + polls + slices,
        transitions=machines * FIXED_TRANSITIONS
        + polls * TRANSITIONS_PER_POLL
        + slices * TRANSITIONS_PER_SLICE,
        wru=Decimal((machines * RUN_WRITES + slices) * RUN_ITEM_KB),
        rru=(machines * 5 + polls + slices) * _RUN_READ_RRU,
        sqs_requests=Decimal(machines * SQS_REQUESTS_PER_RUN),
    )


def images_usage(images: int, width: int, height: int, images_per_task: int = 1) -> Usage:
    """The charges that come with each image: its S3 object (put, kept, fetched, sent out),
    its DynamoDB transaction, and its task's queue requests and order writes."""
    if images < 0:
        raise ValueError("images, machines and machine_seconds must not be negative")
    if images_per_task < 1:
        raise ValueError("images_per_task must be at least 1")
    tasks = math.ceil(images / images_per_task)
    gigabytes = images * png_bytes(width, height) / BYTES_PER_GB
    return Usage(
        wru=Decimal(
            images * TRANSACTION_WRU_PER_KB * (IMAGE_ROW_KB + ORDER_ITEM_KB) + tasks * ORDER_ITEM_KB
        ),
        rru=tasks * READS_RRU_PER_TASK + images * LIST_RRU_PER_IMAGE,
        s3_puts=images,
        s3_gets=images * DOWNLOADS_PER_IMAGE,
        stored_gb_months=gigabytes * RETENTION_MONTHS,
        sqs_requests=tasks * SQS_REQUESTS_PER_TASK,
        gb_out=gigabytes * DOWNLOADS_PER_IMAGE,
    )


def serving_breakdown(
    *,
    images: int,
    width: int,
    height: int,
    machine_seconds: float,
    machines: int,
    startup_seconds: float | None = None,
    images_per_task: int = 1,
) -> ServingCost:
    """AWS's charges, by service, for serving ``images`` images of ``width`` x ``height``
    rendered on ``machines`` rented machines held ``machine_seconds`` in total (the sum over
    machines, start-up included).

    ``startup_seconds`` (summed over machines) sets how long WaitReady polls; unknown, every
    machine is taken to poll its whole ready timeout. ``images_per_task``: the batch each SQS
    task carries; 1 (the most requests) if unknown."""
    polls = (
        None
        if startup_seconds is None
        else math.ceil(min(machine_seconds, max(0.0, startup_seconds)) / POLL_INTERVAL_S)
    )
    usage = machines_usage(machine_seconds, machines, polls=polls) + images_usage(
        images, width, height, images_per_task
    )
    return usage.priced()


def machine_usd(held_seconds: float, polls: int | None = None) -> Decimal:
    """AWS's charges for renting one machine held ``held_seconds`` (``polls``: its WaitReady
    polls; unknown, its whole ready timeout). Summed over a fleet's machines, never less than
    :func:`serving_breakdown` counts for the fleet (each machine's slices rounded up on its
    own)."""
    return machines_usage(held_seconds, 1, polls=polls).priced().total_usd


def images_usd(images: int, width: int, height: int, images_per_task: int = 1) -> Decimal:
    """AWS's charges that come with ``images`` images, whatever renders them."""
    return images_usage(images, width, height, images_per_task).priced().total_usd


# machine_usd(h) = MACHINE_USD_FIXED + MACHINE_USD_PER_S * h + MACHINE_USD_PER_SLICE *
# ceil(h / RENDER_SLICE_S): the same sum, in a form numpy can take for many h at once
# (planner/fleets.py)
MACHINE_USD_FIXED = machine_usd(0)
MACHINE_USD_PER_SLICE = (
    machines_usage(RENDER_SLICE_S, 0).priced().total_usd
    - machines_usage(0, 0).priced().total_usd
    - RENDER_SLICE_S * _RENDER_GB * LAMBDA_USD_PER_GB_S
)
MACHINE_USD_PER_S = _RENDER_GB * LAMBDA_USD_PER_GB_S


def serving_cost_usd(
    *,
    images: int,
    width: int,
    height: int,
    machine_seconds: float,
    machines: int,
    startup_seconds: float | None = None,
    images_per_task: int = 1,
) -> Decimal:
    """AWS's charges for serving `images` images rendered on `machines` rented machines held
    `machine_seconds` in total (sum over machines, start-up included)."""
    return serving_breakdown(
        images=images,
        width=width,
        height=height,
        machine_seconds=machine_seconds,
        machines=machines,
        startup_seconds=startup_seconds,
        images_per_task=images_per_task,
    ).total_usd


@dataclass(frozen=True)
class ListPrice:
    """One row of the price table: what AWS charges per unit, and where it says so."""

    service: str
    unit: str
    usd: Decimal
    source: str


PRICE_TABLE = (
    ListPrice(
        "Lambda (Arm)",
        "GB-second",
        LAMBDA_USD_PER_GB_S_ARM64,
        "https://aws.amazon.com/lambda/pricing/",
    ),
    ListPrice(
        "Lambda", "request", LAMBDA_USD_PER_REQUEST, "https://aws.amazon.com/lambda/pricing/"
    ),
    ListPrice(
        "Step Functions Standard",
        "state transition",
        SFN_USD_PER_TRANSITION,
        "https://aws.amazon.com/step-functions/pricing/",
    ),
    ListPrice(
        "DynamoDB on-demand",
        "write request unit",
        DDB_USD_PER_WRU,
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    ListPrice(
        "DynamoDB on-demand",
        "read request unit",
        DDB_USD_PER_RRU,
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    ListPrice("S3 Standard", "PUT request", S3_USD_PER_PUT, "https://aws.amazon.com/s3/pricing/"),
    ListPrice("S3 Standard", "GET request", S3_USD_PER_GET, "https://aws.amazon.com/s3/pricing/"),
    ListPrice("S3 Standard", "GB-month", S3_USD_PER_GB_MONTH, "https://aws.amazon.com/s3/pricing/"),
    ListPrice(
        "Data transfer out (internet)",
        "GB",
        DATA_OUT_USD_PER_GB,
        "https://aws.amazon.com/s3/pricing/",
    ),
    ListPrice(
        "SQS standard", "request", SQS_USD_PER_REQUEST, "https://aws.amazon.com/sqs/pricing/"
    ),
)
