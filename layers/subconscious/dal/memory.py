"""In-memory twins of the stores in ``dal/``: the same behaviour, no AWS, no moto.

Each ``Memory<Store>`` satisfies its Protocol in ``dal/interfaces.py`` and behaves as the
boto3-backed store does over DynamoDB, SQS, S3 and Step Functions, as far as the logic can
tell: conditional writes that lose return False (or raise the same ``ClientError`` code where
the store lets DynamoDB's error through), rows are shaped and read by the same helpers, TTL
deletes nothing (DynamoDB deletes late, so the stores check expiry on read), and the queue
keeps SQS's visibility, delay, receive count and redrive. ``tests/contract/stores`` runs the
same cases against each twin and its store; ``tests/twins.py`` builds a whole
:class:`~subconscious.services.Services` from them.

This module is for tests and tools only (no handler imports it), so it imports powertools'
idempotency at the top. A twin holds one lock per store: the logic calls stores from threads
(a render step's upload pool), and DynamoDB's conditional writes are atomic.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote as url_quote

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)
from pydantic import ValidationError

from subconscious.dal import orders as order_rows
from subconscious.dal._dynamo import epoch, now
from subconscious.dal.executions import execution_arn
from subconscious.dal.idempotency import Idempotency
from subconscious.dal.images import (
    StoredImage,
    decode_token,
    encode_token,
    image_sort_key,
    stored_image,
)
from subconscious.dal.orders import _order
from subconscious.dal.prices import (
    _FORECAST,
    _META,
    Freshness,
    day_prefixes,
    meta_row,
    offer_rows,
    read_rows,
    read_snapshot,
    snapshot_at,
    snapshot_object,
    spread,
)
from subconscious.dal.runs import (
    _LEASE_PREFIX,
    _ORPHAN_PREFIX,
    _STOP_KEEP,
    _STOP_PREFIX,
    RunsRead,
    run_row,
    runs_read,
)
from subconscious.dal.tenants import hash_key, principal_of
from subconscious.dal.webhooks import event_key as webhook_event_key
from subconscious.dal.webhooks import record_of as webhook_record_of
from subconscious.dal.webhooks import record_row as webhook_record_row
from subconscious.dal.webhooks import secret_key as webhook_secret_key
from subconscious.dal.work_queue import _BATCH, Delivery
from subconscious.errors import QuoteAlreadyAccepted
from subconscious.models import (
    LIVE_RUN_STATUSES,
    OPEN_STATES,
    TERMINAL_STATES,
    USUAL_REASON,
    EndReason,
    Offer,
    Order,
    OrderState,
    Quote,
    RenderRun,
    RenderTask,
    sources_of,
)
from subconscious.models.spot import SpotOutlook
from subconscious.models.tenancy import Principal, Role
from subconscious.models.webhooks import (
    DeliveryAttempt,
    DeliveryState,
    WebhookEvent,
    WebhookMessage,
    WebhookRecord,
)
from subconscious.observability import logger
from subconscious.throughput_model import Correction


def condition_failed(operation: str) -> Exception:
    """The error DynamoDB answers a failed condition with (botocore's ClientError), for the
    writes whose store lets it through: callers that check it see the same code."""
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "condition failed"}},
        operation,
    )
    return error


class MemoryTenants:
    def __init__(self) -> None:
        self._keys: dict[str, dict[str, Any]] = {}

    def tenant_for_key(self, api_key: str) -> str | None:
        principal = self.principal_for_key(api_key)
        return None if principal is None else principal.tenant_id

    def principal_for_key(self, api_key: str) -> Principal | None:
        return principal_of(self._keys.get(hash_key(api_key)))

    def add_key(
        self, tenant_id: str, api_key: str, name: str = "", role: Role = Role.CUSTOMER
    ) -> None:
        self._keys[hash_key(api_key)] = {"tenant_id": tenant_id, "name": name, "role": role.value}

    def disable(self, api_key: str) -> None:
        """What an operator does in the table (no code path disables a key)."""
        self._keys[hash_key(api_key)]["disabled"] = True


class MemoryQuotes:
    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], str] = {}

    def put(self, tenant_id: str, quote: Quote) -> None:
        self._docs[(tenant_id, quote.quote_id)] = quote.model_dump_json()

    def get(self, tenant_id: str, quote_id: str) -> Quote | None:
        doc = self._docs.get((tenant_id, quote_id))
        return Quote.model_validate_json(doc) if doc else None


class MemoryOrders:
    """Rows shaped as the orders table's, read by the same ``_order``."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.RLock()  # MemoryImages counts on an order under it

    def create_or_resume(self, tenant_id: str, order: Order, accept_key: str) -> None:
        with self.lock:
            stored = self._items.get((tenant_id, order.order_id))
            if stored is None:
                self._items[(tenant_id, order.order_id)] = {
                    "tenant_id": tenant_id,
                    "order_id": order.order_id,
                    "state": OrderState.QUOTED.value,
                    "option_id": order.option_id,
                    "images_total": order.images_total,
                    "images_done": 0,
                    "spend_micros": 0,
                    "updated_at": order.updated_at.isoformat(),
                    "created_at": order_rows.sort_time(order.created_at),
                    "accept_key": accept_key,
                    "doc": order.model_dump_json(),
                }
                return
            if (stored["accept_key"], stored["option_id"], stored["state"]) == (
                accept_key,
                order.option_id,
                OrderState.QUOTED.value,
            ):
                return
        raise QuoteAlreadyAccepted(
            f"quote {order.quote_id} was already accepted as order {order.order_id}",
            order_id=order.order_id,
        )

    def accepted_with(self, tenant_id: str, order_id: str) -> tuple[str, str] | None:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            return None if item is None else (str(item["accept_key"]), str(item["option_id"]))

    def get(self, tenant_id: str, order_id: str) -> Order | None:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            return _order(item) if item else None

    def transition(
        self, tenant_id: str, order_id: str, target: OrderState, reason: EndReason | None = None
    ) -> bool:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            if item is None or OrderState(item["state"]) not in sources_of(target):
                return False
            at = now().isoformat()
            item.update(state=target.value, updated_at=at)
            if target in TERMINAL_STATES:
                item.update(end_reason=(reason or USUAL_REASON[target]).value, ended_at=at)
            item.pop("held_until", None)
            item.pop("held_reason", None)
            return True

    def set_hold(
        self, tenant_id: str, order_id: str, until: datetime | None, reason: str | None
    ) -> bool:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            if item is None or item["state"] != OrderState.ACCEPTED.value:
                return False
            if until is None:
                item.pop("held_until", None)
                item.pop("held_reason", None)
            else:
                item.update(held_until=until.isoformat(), held_reason=reason)
            return True

    def page(
        self, tenant_id: str, limit: int, token: str | None, state: OrderState | None = None
    ) -> tuple[list[Order], str | None]:
        with self.lock:
            rows = [
                dict(i)
                for (t, _), i in self._items.items()
                if t == tenant_id and (state is None or i["state"] == state.value)
            ]
        rows.sort(key=lambda i: (i["created_at"], i["order_id"]), reverse=True)
        if token:
            after = order_rows.decode_token(token)
            rows = [i for i in rows if (i["created_at"], i["order_id"]) < after]
        kept = rows[:limit]
        more = len(rows) > limit
        last = kept[-1] if more else None
        token_out = order_rows.encode_token(last["created_at"], last["order_id"]) if last else None
        return [_order(i) for i in kept], token_out

    def add_spend(
        self, tenant_id: str, order_id: str, spend_micros: int, aws_micros: int = 0
    ) -> Order:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            if item is None:
                raise condition_failed("UpdateItem")
            item["spend_micros"] = int(item.get("spend_micros", 0)) + spend_micros
            item["aws_micros"] = int(item.get("aws_micros", 0)) + aws_micros
            item["updated_at"] = now().isoformat()
            return _order(item)

    def set_run_cost(
        self, tenant_id: str, order_id: str, run_id: str, gpu_micros: int, aws_micros: int
    ) -> None:
        with self.lock:
            item = self._items.get((tenant_id, order_id))
            if item is None:
                raise condition_failed("UpdateItem")
            item.setdefault("run_costs", {})[run_id] = {"gpu": gpu_micros, "aws": aws_micros}

    def open_orders(self) -> Iterator[tuple[str, Order]]:
        open_values = {s.value for s in OPEN_STATES}
        with self.lock:
            items = [dict(i) for i in self._items.values() if i["state"] in open_values]
        for item in items:
            yield str(item["tenant_id"]), _order(item)

    def count(self, tenant_id: str, order_id: str, counter: str, at: str) -> bool:
        """``ADD counter 1`` on an order that exists (MemoryImages' half of its transaction)."""
        item = self._items.get((tenant_id, order_id))
        if item is None:
            return False
        item[counter] = int(item.get(counter, 0)) + 1
        item["updated_at"] = at
        return True


class MemoryImages:
    """The images ledger; it counts each image on its order in :class:`MemoryOrders`, under
    that store's lock, as the DynamoDB transaction does across the two tables."""

    def __init__(self, orders: MemoryOrders) -> None:
        self._orders = orders
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}

    def record(
        self,
        tenant_id: str,
        order_id: str,
        *,
        prompt_index: int,
        prompt: str,
        seed: int,
        width: int,
        height: int,
        key: str,
    ) -> bool:
        item = {
            "prompt_index": prompt_index,
            "prompt": prompt,
            "seed": seed,
            "width": width,
            "height": height,
            "key": key,
        }
        return self._settle(tenant_id, order_id, image_sort_key(prompt_index, seed), item, False)

    def give_up(self, tenant_id: str, order_id: str, *, prompt_index: int, seed: int) -> bool:
        item = {"prompt_index": prompt_index, "seed": seed, "failed": True}
        return self._settle(tenant_id, order_id, image_sort_key(prompt_index, seed), item, True)

    def _settle(
        self, tenant_id: str, order_id: str, image: str, item: dict[str, Any], failed: bool
    ) -> bool:
        at = now().isoformat()
        with self._orders.lock:
            rows = self._rows.setdefault(f"{tenant_id}#{order_id}", {})
            if image in rows or (tenant_id, order_id) not in self._orders._items:
                return False
            rows[image] = {**item, "image": image, "stored_at": at}
            self._orders.count(
                tenant_id, order_id, "images_failed" if failed else "images_done", at
            )
            return True

    def page(
        self, tenant_id: str, order_id: str, limit: int, token: str | None
    ) -> tuple[list[StoredImage], str | None]:
        """As the DynamoDB query: ``limit`` counts rows read (given-up ones too, then left
        out), and a next token comes only while rows remain after the page."""
        after = decode_token(token) if token else None
        with self._orders.lock:
            rows = self._rows.get(f"{tenant_id}#{order_id}", {})
            keys = sorted(k for k in rows if after is None or k > after)
            read = [rows[k] for k in keys[:limit]]
        records = [stored_image(row) for row in read if not row.get("failed")]
        more = len(keys) > limit
        return records, encode_token(str(read[-1]["image"])) if more else None


class MemoryRuns:
    """Runs, orphan sightings, stop requests and the lease, in one dict as in one table."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def put(self, run: RenderRun) -> None:
        with self._lock:
            self._items[run.run_id] = run_row(run)

    def put_under_lease(self, run: RenderRun, lease: str, holder: str, at: datetime) -> bool:
        with self._lock:
            held = self._items.get(_LEASE_PREFIX + lease)
            if held is None or held["holder"] != holder or held["expires"] < epoch(at):
                return False
            if run.run_id in self._items:
                return False
            self._items[run.run_id] = run_row(run)
            return True

    def get(self, run_id: str) -> RenderRun | None:
        with self._lock:
            item = self._items.get(run_id)
        return RenderRun.model_validate_json(item["doc"]) if item and "doc" in item else None

    def save(self, run: RenderRun) -> None:
        with self._lock:
            if run.run_id not in self._items:
                raise condition_failed("PutItem")
            self._items[run.run_id] = run_row(run)

    def live(self) -> Iterator[RenderRun]:
        statuses = {s.value for s in LIVE_RUN_STATUSES}
        with self._lock:
            docs = [i["doc"] for i in self._items.values() if i.get("status") in statuses]
        yield from (RenderRun.model_validate_json(doc) for doc in docs)

    def read(self, since: datetime) -> RunsRead:
        with self._lock:
            items = [(key, dict(item)) for key, item in self._items.items()]
        return runs_read(items, since)

    def orphans_first_seen(self, provider: str) -> dict[str, datetime]:
        prefix = f"{_ORPHAN_PREFIX}{provider}#"
        with self._lock:
            return {
                run_id[len(prefix) :]: datetime.fromisoformat(str(item["seen"]))
                for run_id, item in self._items.items()
                if item.get("kind") == "orphan" and run_id.startswith(prefix)
            }

    def remember_orphan(self, provider: str, machine_id: str, at: datetime) -> None:
        with self._lock:
            self._items.setdefault(
                f"{_ORPHAN_PREFIX}{provider}#{machine_id}",
                {"kind": "orphan", "seen": at.isoformat()},
            )

    def forget_orphan(self, provider: str, machine_id: str) -> None:
        with self._lock:
            self._items.pop(f"{_ORPHAN_PREFIX}{provider}#{machine_id}", None)

    def request_stop(self, run_id: str, reason: str, at: datetime) -> None:
        with self._lock:
            self._items[_STOP_PREFIX + run_id] = {
                "kind": "stop",
                "reason": reason,
                "at": at.isoformat(),
                "expires": epoch(at + _STOP_KEEP),
            }

    def stop_requested(self, run_id: str) -> bool:
        with self._lock:
            return _STOP_PREFIX + run_id in self._items

    def acquire_lease(
        self, name: str, holder: str, seconds: int, at: datetime | None = None
    ) -> bool:
        at = at or now()
        with self._lock:
            held = self._items.get(_LEASE_PREFIX + name)
            if held is not None and not held["expires"] < epoch(at):
                return False
            self._items[_LEASE_PREFIX + name] = {
                "holder": holder,
                "expires": epoch(at + timedelta(seconds=seconds)),
            }
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._lock:
            held = self._items.get(_LEASE_PREFIX + name)
            if held is not None and held["holder"] == holder:
                del self._items[_LEASE_PREFIX + name]


@dataclass
class _Message:
    message_id: str
    body: str
    visible_at: float
    sent_at: float
    receive_count: int = 0
    receipt: str = ""
    receipts: set[str] = field(default_factory=set)


class MemoryQueue:
    """An SQS standard queue: a received message is hidden for its visibility timeout, a
    delayed one waits its delay, each receive counts, and (given ``dead_letters``) a message
    received ``max_receives`` times moves there on its next receive, as a redrive policy does.
    Delivery order is first in, first out (SQS only tries; nothing may rely on it).
    ``clock`` is monotonic seconds (a test can move time)."""

    def __init__(
        self,
        dead_letters: MemoryQueue | None = None,
        max_receives: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._messages: dict[str, _Message] = {}
        self._dead_letters = dead_letters
        self._max_receives = max_receives
        self._clock = clock
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def send(self, tasks: Sequence[RenderTask], delay_s: int = 0) -> None:
        for task in tasks:
            self.send_raw(task.model_dump_json(), delay_s)

    def send_raw(self, body: str, delay_s: int = 0) -> None:
        """Any body, as another sender could put on the queue (a test's unreadable message)."""
        with self._lock:
            at = self._clock()
            message_id = f"m-{next(self._ids)}"
            self._messages[message_id] = _Message(message_id, body, at + delay_s, at)

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[Delivery]:
        deadline = self._clock() + wait_s
        while True:
            taken = self._take(max(1, min(max_messages, _BATCH)), visibility_s)
            if taken or self._clock() >= deadline:
                break
            self._sleep(min(0.05, max(0.0, deadline - self._clock())))
        deliveries = []
        for message in taken:
            try:
                task = RenderTask.model_validate_json(message.body)
            except ValidationError:
                logger.error("unreadable message removed", message_id=message.message_id)
                self._remove(message.receipt)
                continue
            deliveries.append(Delivery(task, message.receipt, message.receive_count))
        return deliveries

    def _take(self, limit: int, visibility_s: int) -> list[_Message]:
        with self._lock:
            at = self._clock()
            ready = [m for m in self._messages.values() if m.visible_at <= at]
            taken: list[_Message] = []
            for message in sorted(ready, key=lambda m: (m.sent_at, m.message_id)):
                if len(taken) == limit:
                    break
                if self._redrive(message):
                    continue
                message.receive_count += 1
                message.receipt = f"{message.message_id}#{message.receive_count}"
                message.receipts.add(message.receipt)
                message.visible_at = at + visibility_s
                taken.append(copy.copy(message))
            return taken

    def _redrive(self, message: _Message) -> bool:
        dead = self._dead_letters
        if dead is None or not 0 < self._max_receives <= message.receive_count:
            return False
        del self._messages[message.message_id]
        with dead._lock:
            moved = copy.copy(message)
            moved.visible_at = dead._clock()
            dead._messages[message.message_id] = moved
        return True

    def _find(self, receipt: str) -> _Message:
        for message in self._messages.values():
            if receipt in message.receipts:
                return message
        raise _invalid_receipt(receipt)

    def _remove(self, receipt: str) -> None:
        with self._lock:
            found = next((m for m in self._messages.values() if receipt in m.receipts), None)
            if found is not None:  # SQS ignores a receipt of a message already deleted
                del self._messages[found.message_id]

    def delete(self, delivery: Delivery) -> None:
        self._remove(delivery.receipt)

    def set_visibility(self, delivery: Delivery, seconds: int) -> None:
        with self._lock:
            message = self._find(delivery.receipt)
            message.visible_at = self._clock() + seconds

    def depth(self) -> tuple[int, int]:
        """(waiting, in flight): never received or visible again count as waiting (delayed
        ones too, as the store reports them); received and still hidden, in flight."""
        with self._lock:
            at = self._clock()
            hidden = sum(
                1 for m in self._messages.values() if m.receive_count and m.visible_at > at
            )
            return len(self._messages) - hidden, hidden

    def bodies(self) -> list[str]:
        """Every message's body, visible or not, without receiving (what a test inspects)."""
        with self._lock:
            return [m.body for m in self._messages.values()]


def _invalid_receipt(receipt: str) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {"Error": {"Code": "ReceiptHandleIsInvalid", "Message": f"{receipt} is not valid"}},
        "ChangeMessageVisibility",
    )
    return error


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    content_type: str
    metadata: dict[str, str]


class MemoryBucket:
    """Images by key; presigned links have the shape S3's have (host, key, expiry), signed
    with nothing: no client can fetch them."""

    def __init__(self, bucket: str = "subc-images") -> None:
        self.bucket = bucket
        self.objects: dict[str, StoredObject] = {}

    def put_png(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        self.objects[key] = StoredObject(body, "image/png", dict(metadata))

    def presign(self, key: str, expires_s: int) -> str:
        signed_at = f"{now():%Y%m%dT%H%M%SZ}"
        credential = url_quote(f"memory/{signed_at[:8]}/us-east-1/s3/aws4_request", safe="")
        return (
            f"https://{self.bucket}.s3.amazonaws.com/{url_quote(key)}"
            f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
            f"&X-Amz-Date={signed_at}&X-Amz-Expires={expires_s}"
            "&X-Amz-SignedHeaders=host&X-Amz-Signature=memory"
        )


class MemoryPrices:
    """The price cache's rows, as the prices table holds them, read by the same helper."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def replace(self, provider: str, offers: list[Offer], at: datetime, ttl: timedelta) -> None:
        with self._lock:
            for row in [*offer_rows(provider, offers, at, epoch(at + ttl)), meta_row(provider, at)]:
                self._items[(provider, str(row["offer_id"]))] = row

    def mark_failed(self, provider: str, at: datetime, error: str) -> None:
        """An update creates the row if missing (DynamoDB's UpdateItem does)."""
        with self._lock:
            item = self._items.setdefault(
                (provider, _META), {"provider": provider, "offer_id": _META}
            )
            item.update(attempted_at=at.isoformat(), ok=False, error=error[:300])

    def read(self, provider: str) -> tuple[Freshness | None, list[Offer]]:
        with self._lock:
            rows = [dict(i) for (p, _), i in self._items.items() if p == provider]
        return read_rows(provider, rows)

    def save_outlook(self, outlook: SpotOutlook) -> None:
        with self._lock:
            row = {"provider": _FORECAST, "offer_id": "spot", "doc": outlook.to_json()}
            self._items[(_FORECAST, "spot")] = row

    def load_outlook(self) -> SpotOutlook | None:
        with self._lock:
            item = self._items.get((_FORECAST, "spot"))
        return SpotOutlook.from_json(str(item["doc"])) if item else None


class MemoryCorrections:
    """Per-GPU throughput factors; a write succeeds only over the run count it read."""

    def __init__(self) -> None:
        self._stored: dict[str, Correction] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, Correction]:
        with self._lock:
            return dict(self._stored)

    def replace(self, gpu: str, old: Correction, new: Correction) -> bool:
        with self._lock:
            stored = self._stored.get(gpu)
            if (stored.runs if stored else None) != (old.runs if old.runs else None):
                return False
            self._stored[gpu] = new
            return True


class MemoryHistory:
    """Market snapshots as the history bucket's objects (same keys, same gzip lines)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def append(self, offers: list[Offer], at: datetime) -> str:
        key, body = snapshot_object(offers, at)
        self.objects[key] = body
        return key

    def snapshots(
        self, until: datetime, days: int, per_day: int
    ) -> Iterator[tuple[datetime, list[Offer]]]:
        for prefix in day_prefixes(until, days):
            keys = sorted(k for k in self.objects if k.startswith(prefix))
            for key in spread(keys, per_day):
                yield snapshot_at(key), read_snapshot(self.objects[key])


class MemoryExecutions:
    """Step Functions executions by name: a second start of a run is the first one; each
    stays RUNNING until a test :meth:`finish`-es it."""

    def __init__(
        self, state_machine_arn: str = "arn:aws:states:us-east-1:123456789012:stateMachine:subc-run"
    ) -> None:
        self.arn = state_machine_arn
        self.started: dict[str, dict[str, Any]] = {}
        self._status: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str, payload: dict[str, Any]) -> str:
        with self._lock:
            if run_id not in self.started:
                self.started[run_id] = json.loads(json.dumps(payload))
                self._status[self.arn_for(run_id)] = "RUNNING"
        return self.arn_for(run_id)

    def is_running(self, execution_arn: str) -> bool:
        with self._lock:
            return self._status.get(execution_arn) == "RUNNING"

    def arn_for(self, run_id: str) -> str:
        return execution_arn(self.arn, run_id)

    def finish(self, run_id: str, status: str = "SUCCEEDED") -> None:
        with self._lock:
            self._status[self.arn_for(run_id)] = status


class MemoryPersistenceLayer(BasePersistenceLayer):
    """powertools' idempotency persistence over a dict, with the DynamoDB layer's put
    condition: a record is taken if absent, expired, or in progress past its lock; otherwise
    the stored one answers (and a different payload under the same key is refused)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.records: dict[str, DataRecord] = {}
        self._records_lock = threading.Lock()

    def _get_record(self, idempotency_key: str) -> DataRecord:
        with self._records_lock:
            if idempotency_key not in self.records:
                raise IdempotencyItemNotFoundError
            return copy.copy(self.records[idempotency_key])

    def _put_record(self, data_record: DataRecord) -> None:
        at = time.time()
        with self._records_lock:
            old = self.records.get(data_record.idempotency_key)
            if old is not None and not _takeable(old, at):
                self._validate_payload(data_payload=data_record, stored_data_record=old)
                self._save_to_cache(data_record=old)
                raise IdempotencyItemAlreadyExistsError(old_data_record=copy.copy(old))
            self.records[data_record.idempotency_key] = copy.copy(data_record)

    def _update_record(self, data_record: DataRecord) -> None:
        with self._records_lock:
            self.records[data_record.idempotency_key] = copy.copy(data_record)

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._records_lock:
            self.records.pop(data_record.idempotency_key, None)


def _takeable(old: DataRecord, at: float) -> bool:
    if old.expiry_timestamp is not None and old.expiry_timestamp < int(at):
        return True
    lock = old.in_progress_expiry_timestamp
    in_progress = old._status == STATUS_CONSTANTS["INPROGRESS"]
    return in_progress and lock is not None and lock < int(at * 1000)


class MemoryIdempotency(Idempotency):
    """The services' idempotency: the API's config over an in-memory persistence layer."""

    def __init__(self) -> None:
        super().__init__(MemoryPersistenceLayer)


class MemoryWebhooks:
    """Twin of :class:`~subconscious.dal.webhooks.WebhookStore` (rows shaped by its helpers)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def secret(self, tenant_id: str, create: Callable[[], str]) -> str:
        key = webhook_secret_key(tenant_id)
        with self._lock:
            if key not in self.rows:
                self.rows[key] = {"pk": key, "secret": create()}
            return str(self.rows[key]["secret"])

    def add(self, record: WebhookRecord) -> bool:
        row = webhook_record_row(record)
        with self._lock:
            if row["pk"] in self.rows:
                return False
            self.rows[row["pk"]] = row
            return True

    def get(self, tenant_id: str, order_id: str, event: WebhookEvent) -> WebhookRecord | None:
        with self._lock:
            row = self.rows.get(webhook_event_key(tenant_id, order_id, event))
            return webhook_record_of(copy.deepcopy(row)) if row else None

    def record_attempt(
        self, record: WebhookRecord, attempt: DeliveryAttempt, state: DeliveryState
    ) -> None:
        with self._lock:
            row = self.rows.get(webhook_event_key(record.tenant_id, record.order_id, record.event))
            if row is None:
                raise condition_failed("UpdateItem")
            row["attempts"] = [*row.get("attempts", []), attempt.model_dump_json()]
            row["state"] = state.value


class MemoryWebhookQueue:
    """Twin of :class:`~subconscious.dal.webhooks.WebhookQueue`: what was sent, in order, and
    the invisibility each failed delivery was given (by receipt)."""

    def __init__(self) -> None:
        self.sent: list[WebhookMessage] = []
        self.delays: dict[str, int] = {}
        self._lock = threading.Lock()

    def send(self, message: WebhookMessage) -> None:
        with self._lock:
            self.sent.append(message)

    def retry_later(self, receipt: str, seconds: int) -> None:
        with self._lock:
            self.delays[receipt] = seconds
