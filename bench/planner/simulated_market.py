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

Generated markets (:mod:`bench.planner.market_family`) add two things per offer, both
optional: ``listed``, a trace of when the offer is listed at all (a delisted offer cannot be
rented; a host already rented stays rented), and ``price_cycle``, a daily rise of the
interruptible price above ``spot``'s bid (the bid at rent time is what the machine pays; the
hindsight bound prices each slot at the lowest bid since its pool's run of capacity began,
so it stays a lower bound).
"""

from __future__ import annotations

import csv
import math
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


DAY_S = 86_400.0
PRICE_STEP_S = 3_600.0  # a cycling bid changes once an hour


@dataclass(frozen=True)
class PriceCycle:
    """The interruptible bid at ``t`` is the trough bid × ``1 + amplitude·(1 + sin)/2``,
    one cycle a day from ``phase`` (a fraction of the day), constant within each hour."""

    amplitude: float
    phase: float

    def factor(self, t: float) -> float:
        hour = math.floor(t / PRICE_STEP_S) * PRICE_STEP_S
        return 1 + self.amplitude * (1 + math.sin(2 * math.pi * (hour / DAY_S + self.phase))) / 2


@dataclass(frozen=True)
class MarketOffer:
    on_demand: Offer  # min_bid_usd_per_hour is None
    spot: Offer  # the same offer with its minimum bid (the trough, with a price cycle)
    pool: Pool | None
    listed: Pool | None = None  # None: always listed
    price_cycle: PriceCycle | None = None

    def listed_at(self, t: float) -> bool:
        return self.listed is None or self.listed.available_at(t)


class Market:
    def __init__(self, offers: Sequence[MarketOffer]) -> None:
        self.offers = list(offers)
        self.by_id = {o.on_demand.offer_id: o for o in self.offers}
        if len(self.by_id) != len(self.offers):
            raise ValueError("offer ids must be unique")
        # a drop preempts the machines of the pool by that name, and the simulator schedules
        # one pool's drops per name: a second trace under the same name would never drop
        named: dict[str, Pool] = {}
        for o in self.offers:
            if o.pool is not None and named.setdefault(o.pool.name, o.pool) != o.pool:
                raise ValueError(f"two different pools named {o.pool.name!r}")
        self._bids: dict[tuple[str, int], Offer] = {}

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

    def listed_at(self, offer_id: str, t: float) -> bool:
        return self.by_id[offer_id].listed_at(t)

    def spot_at(self, listed: MarketOffer, t: float) -> Offer:
        """The offer's interruptible form at ``t`` (its bid then)."""
        cycle = listed.price_cycle
        if cycle is None:
            return listed.spot
        key = (listed.spot.offer_id, math.floor(t / PRICE_STEP_S))
        offer = self._bids.get(key)
        if offer is None:
            trough = listed.spot.min_bid_usd_per_hour
            assert trough is not None
            bid = (trough * Decimal(str(round(cycle.factor(t), 6)))).quantize(Decimal("0.0001"))
            bid = min(bid, listed.on_demand.usd_per_hour)
            offer = listed.spot.model_copy(update={"min_bid_usd_per_hour": bid})
            self._bids[key] = offer
        return offer

    def offer_at(self, offer_id: str, t: float, interruptible: bool) -> Offer:
        """The offer as rented at ``t`` in that mode (interruptible: with the bid then)."""
        listed = self.by_id[offer_id]
        return self.spot_at(listed, t) if interruptible else listed.on_demand

    def offers_at(self, t: float, taken: frozenset[str] | set[str] = frozenset()) -> list[Offer]:
        """What the market lists at ``t``: every listed offer not rented, with its bid if its
        pool has capacity."""
        return [
            (self.spot_at(o, t) if o.pool is not None and o.pool.available_at(t) else o.on_demand)
            for o in self.offers
            if o.on_demand.offer_id not in taken and o.listed_at(t)
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
