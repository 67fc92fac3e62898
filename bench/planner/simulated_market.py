"""The simulated market: offers from the price file, interruptible capacity from the traces.

Offers are the local stack's (``infra.local.emulated_market.load_offers``: one single-GPU offer per
(provider, GPU) of Vast.ai and RunPod, most recent price of the file; its behaviour is not
changed here), turned into planner :class:`Offer` objects with:

* ``provider``: ``vast`` or ``runpod`` (billing increments and request limits of
  ``subconscious.planner.costs``), and the start-up time the real adapters assume
  (``subconscious.market.vast.STARTUP_S`` = 300 s, ``runpod.STARTUP_S`` = 240 s).
* an interruptible price: the file's own ``spot`` row for the same provider and card where it
  has one (RunPod Secure Cloud RTX A6000 and A100 80GB PCIe), else the on-demand price times
  :func:`spot_ratio` — the median spot/on-demand ratio of every single-GPU pair in the file
  (0.50 over 22 pairs: AWS 0.33–0.50, Azure 0.19, GCP 0.60, DataCrunch 0.50, Hyperstack 0.80,
  RunPod Secure 0.67–0.73). The RunPod feed whose spot price equals on-demand for every card is
  left out, as ``data/SOURCES.md`` calls it an artefact.

Each offer is one machine (a marketplace offer is one host): once rented, by anyone in the
simulation, it is not offered again until released. Each offer's interruptible capacity
belongs to one trace pool (offers sorted by id, pools by name, offer ``i`` → pool
``i mod pools``). While the pool has capacity, the offer carries ``min_bid_usd_per_hour``
(rentable interruptible or on-demand); while it has none, the offer is on-demand only, and an
interruptible machine of the offer is preempted when its pool loses capacity. On-demand
capacity never runs out.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from bench.planner.traces import Pool
from infra.local.emulated_market import DEFAULT_CSV, load_offers
from subconscious.market.runpod import STARTUP_S as RUNPOD_STARTUP_S
from subconscious.market.vast import STARTUP_S as VAST_STARTUP_S
from subconscious.models import Offer

PROVIDERS = {
    "Vast.ai": ("vast", VAST_STARTUP_S),
    "RunPod Community Cloud": ("runpod", RUNPOD_STARTUP_S),
    "RunPod Secure Cloud": ("runpod", RUNPOD_STARTUP_S),
}
PRICE_CSV = DEFAULT_CSV


def _single_gpu_prices(rows: Iterable[dict[str, str]], kind: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["pricing_type"] != kind or row["gpus_per_instance"].strip() != "1":
            continue
        key = (row["provider"], row["gpu"])
        price = float(row["usd_per_gpu_hour"])
        out[key] = min(price, out.get(key, price))
    return out


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def spot_ratio(csv_path: Path = PRICE_CSV) -> Decimal:
    """Median spot / on-demand price over the file's single-GPU pairs with a real discount."""
    rows = _rows(csv_path)
    on_demand = _single_gpu_prices(rows, "on_demand")
    ratios = []
    for row in rows:
        key = (row["provider"], row["gpu"])
        single = row["gpus_per_instance"].strip() == "1"
        if row["pricing_type"] == "spot" and single and key in on_demand:
            ratio = float(row["usd_per_gpu_hour"]) / on_demand[key]
            if ratio < 1:  # equal prices: the feed's artefact
                ratios.append(ratio)
    return Decimal(str(round(statistics.median(ratios), 3)))


@dataclass(frozen=True)
class MarketOffer:
    on_demand: Offer  # min_bid_usd_per_hour is None
    spot: Offer  # the same offer with its minimum bid
    pool: Pool | None


class Market:
    def __init__(self, offers: Sequence[MarketOffer]) -> None:
        self.offers = list(offers)
        self.by_id = {o.on_demand.offer_id: o for o in self.offers}
        if len(self.by_id) != len(self.offers):
            raise ValueError("offer ids must be unique")

    @property
    def pools(self) -> list[Pool]:
        seen: dict[str, Pool] = {}
        for o in self.offers:
            if o.pool is not None:
                seen.setdefault(o.pool.name, o.pool)
        return list(seen.values())

    def spot_available(self, offer_id: str, t: float) -> bool:
        pool = self.by_id[offer_id].pool
        return pool is not None and pool.available_at(t)

    def offers_at(self, t: float, taken: frozenset[str] | set[str] = frozenset()) -> list[Offer]:
        """What the market lists at ``t``: every offer not rented, with its bid if its pool
        has capacity."""
        return [
            (o.spot if o.pool is not None and o.pool.available_at(t) else o.on_demand)
            for o in self.offers
            if o.on_demand.offer_id not in taken
        ]


def load_market(pools: Sequence[Pool], csv_path: Path = PRICE_CSV) -> Market:
    rows = _rows(csv_path)
    spot_rows = _single_gpu_prices(rows, "spot")
    ratio = spot_ratio(csv_path)
    built: list[tuple[Offer, Decimal]] = []
    for raw in load_offers(csv_path):
        provider_name = str(raw["provider_name"])
        provider, startup_s = PROVIDERS[provider_name]
        on_demand = Offer(
            provider=provider,
            offer_id=str(raw["offer_id"]),
            gpu=str(raw["gpu"]),
            gpu_count=1,
            gpu_memory_gb=int(str(raw["gpu_memory_gb"])),
            usd_per_hour=Decimal(str(raw["usd_per_hour"])),
            location=str(raw["location"]),
            startup_s=startup_s,
        )
        listed = spot_rows.get((provider_name, on_demand.gpu))
        if listed is not None and listed < float(on_demand.usd_per_hour):
            bid = Decimal(str(listed))
        else:
            bid = (on_demand.usd_per_hour * ratio).quantize(Decimal("0.0001"))
        built.append((on_demand, bid))
    built.sort(key=lambda pair: pair[0].offer_id)
    offers = []
    for index, (on_demand, bid) in enumerate(built):
        spot = on_demand.model_copy(update={"interruptible": True, "min_bid_usd_per_hour": bid})
        pool = pools[index % len(pools)] if pools else None
        offers.append(MarketOffer(on_demand=on_demand, spot=spot, pool=pool))
    return Market(offers)
