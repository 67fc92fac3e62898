"""The price cache (DynamoDB) and the market history (S3, gzip JSON lines by date)."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import epoch
from subconscious.models import Offer
from subconscious.models.spot import SpotOutlook
from subconscious.throughput_model import Correction

_META = "#meta"  # one row per provider: when it was last fetched, and how that went
_FORECAST = "#forecast"  # a partition no provider can have: the history's spot outlook


@dataclass(frozen=True)
class Freshness:
    provider: str
    fetched_at: datetime | None  # the latest good fetch
    attempted_at: datetime
    ok: bool
    error: str | None = None


class PriceCache:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def replace(self, provider: str, offers: list[Offer], at: datetime, ttl: timedelta) -> None:
        """This provider's offers as of ``at``. Older rows are ignored on read (and expire)."""
        with self._table.batch_writer() as batch:
            for row in offer_rows(provider, offers, at, epoch(at + ttl)):
                batch.put_item(Item=row)
        self._table.put_item(Item=meta_row(provider, at))

    def mark_failed(self, provider: str, at: datetime, error: str) -> None:
        """Keep the last good offers (their age shows), record the failed attempt."""
        self._table.update_item(
            Key={"provider": provider, "offer_id": _META},
            UpdateExpression="SET attempted_at = :at, ok = :no, #e = :err",
            ExpressionAttributeNames={"#e": "error"},
            ExpressionAttributeValues={":at": at.isoformat(), ":no": False, ":err": error[:300]},
        )

    def read(self, provider: str) -> tuple[Freshness | None, list[Offer]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": "provider"},
            "ExpressionAttributeValues": {":p": provider},
        }
        while True:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return read_rows(provider, items)

    def save_outlook(self, outlook: SpotOutlook) -> None:
        self._table.put_item(
            Item={"provider": _FORECAST, "offer_id": "spot", "doc": outlook.to_json()}
        )

    def load_outlook(self) -> SpotOutlook | None:
        item = self._table.get_item(Key={"provider": _FORECAST, "offer_id": "spot"}).get("Item")
        return SpotOutlook.from_json(str(item["doc"])) if item else None


# Shared with the in-memory twin (dal/memory.py): the rows a provider's partition holds.
def offer_rows(
    provider: str, offers: list[Offer], at: datetime, expires: int
) -> list[dict[str, Any]]:
    return [
        {
            "provider": provider,
            "offer_id": offer.offer_id,
            "fetched_at": at.isoformat(),
            "doc": offer.model_dump_json(),
            "ttl": expires,
        }
        for offer in offers
    ]


def meta_row(provider: str, at: datetime) -> dict[str, Any]:
    return {
        "provider": provider,
        "offer_id": _META,
        "fetched_at": at.isoformat(),
        "attempted_at": at.isoformat(),
        "ok": True,
    }


def read_rows(provider: str, items: list[dict[str, Any]]) -> tuple[Freshness | None, list[Offer]]:
    """The freshness and the offers of the latest good fetch, from a partition's rows."""
    meta = next((i for i in items if i["offer_id"] == _META), None)
    if meta is None:
        return None, []
    fetched = str(meta["fetched_at"]) if meta.get("fetched_at") else None
    freshness = Freshness(
        provider=provider,
        fetched_at=datetime.fromisoformat(fetched) if fetched else None,
        attempted_at=datetime.fromisoformat(str(meta["attempted_at"])),
        ok=bool(meta.get("ok")),
        error=str(meta["error"]) if meta.get("error") and not meta.get("ok") else None,
    )
    # A refresh overwrites each offer's row in place, then the meta row. A read between the two
    # sees rows newer than the meta: they are the market's newer answer, not strangers, and
    # keeping only rows equal to the meta's time would drop every overwritten offer (a quote
    # during a refresh saw none). Rows older than the meta are offers the market no longer lists.
    offers = [
        Offer.model_validate_json(i["doc"])
        for i in items
        if i["offer_id"] != _META and _not_older(i.get("fetched_at"), freshness.fetched_at)
    ]
    return freshness, offers


def _not_older(row_fetched_at: Any, meta_fetched_at: datetime | None) -> bool:
    if not row_fetched_at or meta_fetched_at is None:
        return False
    return datetime.fromisoformat(str(row_fetched_at)) >= meta_fetched_at


class ThroughputCorrections:
    """Per-GPU factors on the throughput model, learned from runs. Rows live in the prices
    table under a partition no provider can have, one per server our images run (``scope``)
    and per version of what a factor multiplies (``VERSION``: bumped when the model's meaning
    changes, so factors learned against the old one are not applied twice); each write is
    conditional on the run count it read, so two runs recorded at once never lose an update."""

    # 2: automatic1111's PNG encoding is modelled (planner/workers.py server_share); factors
    # learned before it already held that cost.
    VERSION = 2

    def __init__(self, table_name: str, table: Any = None, scope: str = "automatic1111") -> None:
        self._table = table or aws.table(table_name)
        self.partition = f"#throughput/v{self.VERSION}/{scope}"

    def load(self) -> dict[str, Correction]:
        page = self._table.query(
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": "provider"},
            ExpressionAttributeValues={":p": self.partition},
        )
        return {
            str(i["offer_id"]): Correction(factor=Decimal(str(i["factor"])), runs=int(i["runs"]))
            for i in page.get("Items", [])
        }

    def replace(self, gpu: str, old: Correction, new: Correction) -> bool:
        """Write ``new`` for ``gpu`` if the stored one is still ``old``; False if it moved."""
        condition = "attribute_not_exists(#r)" if old.runs == 0 else "#r = :old"
        values: dict[str, Any] = {":old": old.runs} if old.runs else {}
        try:
            self._table.put_item(
                Item={
                    "provider": self.partition,
                    "offer_id": gpu,
                    "factor": new.factor,
                    "runs": new.runs,
                },
                ConditionExpression=condition,
                ExpressionAttributeNames={"#r": "runs"},
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except self._table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        return True


class MarketHistory:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = client or aws.client("s3")

    def append(self, offers: list[Offer], at: datetime) -> str:
        """One snapshot object: ``market/date=YYYY-MM-DD/<time>.jsonl.gz``, one offer a line."""
        key, body = snapshot_object(offers, at)
        self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
        )
        return key

    def snapshots(
        self, until: datetime, days: int, per_day: int
    ) -> Iterator[tuple[datetime, list[Offer]]]:
        """Up to ``per_day`` snapshots of the day of ``until`` and of each of the ``days`` days
        before it (evenly spread over each day's objects), oldest first, each with when it was
        taken (not evenly spaced: today's are all read while it has fewer than ``per_day``)."""
        for prefix in day_prefixes(until, days):
            for key in spread(sorted(self._keys(prefix)), per_day):
                yield snapshot_at(key), self._read(key)

    def _keys(self, prefix: str) -> Iterator[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def _read(self, key: str) -> list[Offer]:
        return read_snapshot(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())


# Shared with the in-memory twin (dal/memory.py): the objects' names, sampling and format.
def snapshot_object(offers: list[Offer], at: datetime) -> tuple[str, bytes]:
    """One snapshot's key and gzip JSON-lines body."""
    lines = (json.dumps({"at": at.isoformat(), **json.loads(o.model_dump_json())}) for o in offers)
    body = gzip.compress("\n".join(lines).encode() + b"\n")
    return f"market/date={at:%Y-%m-%d}/{at:%H%M%S}.jsonl.gz", body


def snapshot_at(key: str) -> datetime:
    """When a snapshot was taken, from its key (``market/date=YYYY-MM-DD/HHMMSS.jsonl.gz``)."""
    day, clock = key.split("date=", 1)[1].split("/")[:2]
    return datetime.strptime(f"{day} {clock[:6]}", "%Y-%m-%d %H%M%S").replace(tzinfo=UTC)


def day_prefixes(until: datetime, days: int) -> list[str]:
    """The key prefix of the day of ``until`` and of each of the ``days`` before, oldest first."""
    return [f"market/date={until - timedelta(days=back):%Y-%m-%d}/" for back in range(days, -1, -1)]


def spread(keys: list[str], per_day: int) -> list[str]:
    """Up to ``per_day`` of one day's sorted keys, evenly spread."""
    step = max(1, math.ceil(len(keys) / per_day)) if per_day > 0 else len(keys) + 1
    return keys[::step]


def read_snapshot(body: bytes) -> list[Offer]:
    offers = []
    for line in gzip.decompress(body).decode().splitlines():
        if line.strip():
            doc = json.loads(line)
            doc.pop("at", None)
            offers.append(Offer.model_validate(doc))
    return offers
