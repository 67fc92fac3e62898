"""Spot capacity for the emulated market, replayed from recorded availability traces.

A *pool* is one trace (``{"metadata": {"gap_seconds": N}, "data": [int, ...]}``, the format of
skypilot-org/spot-traces). Every offer of a marketplace that sells interruptible machines
(:data:`SPOT_PROVIDERS`) belongs to one pool, chosen by a stable hash of its offer id, and can
be rented interruptible at a bid of at least its minimum while its pool has capacity. When the
pool's trace says the capacity is gone, the market preempts every interruptible machine in it.

How the values are read: **a value is the number of instances available at that tick** (the
traces' README), so a pool has capacity while its value is above 0. The paper's simulator reads
the *preemption* traces the other way round (0 = available); we ship only *availability* traces
(``infra/local/data/spot-traces/``, see ``docs/data.md``), for which the README and the
simulator agree, so the reading is not a guess. The 1-node traces hold 0 or 1 (one probed
instance), so a value says whether capacity exists, not how much: a drop to 0 preempts every
interruptible machine in the pool, whatever their number.

Time: trace tick = ``start_tick + floor(elapsed wall seconds / tick_s)``, wrapping around at
the end of the trace. ``tick_s`` is how many wall seconds one trace tick lasts (the traces'
own ``gap_seconds`` is 600: ``tick_s=30`` replays them 20 times faster than they happened).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

TRACES_DIR = Path(__file__).resolve().parent / "data" / "spot-traces"
# The marketplaces of the price file that sell interruptible machines (TensorDock does not);
# "AWS" is the EC2 instance types of the local stack's moto (``infra/local/ec2.py``), whose
# traces these are.
SPOT_PROVIDERS = ("Vast.ai", "RunPod Community Cloud", "RunPod Secure Cloud", "AWS")
# The lowest bid, as a share of the on-demand price. The price file's spot/on-demand ratios,
# for the providers that publish both (AWS, Azure, GCP, CoreWeave, Hyperstack, DataCrunch;
# RunPod's feed is left out: its spot figures equal on-demand, an artefact), have a median of
# about 0.5, and DataCrunch's single-GPU cards are exactly 0.5.
MIN_BID_FRACTION = Decimal("0.5")
DEFAULT_TICK_S = 1.0
_CENT_HUNDREDTHS = Decimal("0.0001")


class TraceError(ValueError):
    """A spot-trace document is not what the format says."""


@dataclass(frozen=True)
class SpotTrace:
    name: str
    gap_seconds: float
    values: tuple[int, ...]

    @classmethod
    def parse(cls, name: str, document: Any) -> SpotTrace:
        metadata = document.get("metadata") if isinstance(document, dict) else None
        gap = metadata.get("gap_seconds") if isinstance(metadata, dict) else None
        if not (isinstance(gap, int | float) and not isinstance(gap, bool) and gap > 0):
            raise TraceError(f"{name}: metadata.gap_seconds must be a number above 0")
        data = document.get("data")
        if not isinstance(data, list) or not data:
            raise TraceError(f"{name}: data must be a non-empty list")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data):
            raise TraceError(f"{name}: every value must be an integer >= 0")
        return cls(name=name, gap_seconds=float(gap), values=tuple(data))

    @classmethod
    def load(cls, path: Path) -> SpotTrace:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TraceError(f"{path.name}: not JSON") from error
        return cls.parse(path.stem, document)

    def available(self, tick: int) -> bool:
        """Whether the pool has capacity at ``tick`` (values above 0: see the module doc)."""
        return self.values[tick % len(self.values)] > 0


def load_traces(directory: Path = TRACES_DIR) -> list[SpotTrace]:
    """Every ``*.json`` trace in ``directory``, by file name."""
    traces = [SpotTrace.load(path) for path in sorted(directory.glob("*.json"))]
    if not traces:
        raise TraceError(f"no spot traces in {directory}")
    return traces


def calm_start(traces: Iterable[SpotTrace]) -> int:
    """The first tick of the longest stretch in which every trace has capacity (0 if none):
    where a short session (a demo) starts, so that it is not preempted unless it runs long."""
    traces = list(traces)
    length = min(len(t.values) for t in traces)
    best_start, best_length, start = 0, 0, None
    for tick in range(length + 1):
        up = tick < length and all(t.values[tick] > 0 for t in traces)
        if up and start is None:
            start = tick
        elif not up and start is not None:
            if tick - start > best_length:
                best_start, best_length = start, tick - start
            start = None
    return best_start


class SpotMarket:
    """Spot pools replayed against a clock; the clock is injectable for tests."""

    def __init__(
        self,
        traces: Sequence[SpotTrace],
        *,
        tick_s: float = DEFAULT_TICK_S,
        start_tick: int = 0,
        min_bid_fraction: Decimal = MIN_BID_FRACTION,
        providers: Iterable[str] = SPOT_PROVIDERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not traces:
            raise ValueError("a spot market needs at least one trace")
        names = [t.name for t in traces]
        if len(set(names)) != len(names):
            raise ValueError("trace names must be unique")
        if not tick_s > 0:
            raise ValueError("tick_s must be > 0")
        if start_tick < 0:
            raise ValueError("start_tick must be >= 0")
        if not 0 < min_bid_fraction <= 1:
            raise ValueError("min_bid_fraction must be in (0, 1]")
        self._traces = {t.name: t for t in traces}
        self._names = names
        self.tick_s = float(tick_s)
        self.start_tick = start_tick
        self.min_bid_fraction = min_bid_fraction
        self.providers = frozenset(providers)
        self._clock = clock
        self._started = clock()

    @classmethod
    def from_directory(
        cls, directory: Path = TRACES_DIR, *, tick_s: float = DEFAULT_TICK_S, calm: bool = True
    ) -> SpotMarket:
        """The shipped traces, starting (with ``calm``) where every pool has capacity."""
        traces = load_traces(directory)
        return cls(traces, tick_s=tick_s, start_tick=calm_start(traces) if calm else 0)

    @property
    def pools(self) -> list[str]:
        return list(self._names)

    def tick(self) -> int:
        return self.start_tick + math.floor((self._clock() - self._started) / self.tick_s)

    def available(self, pool: str) -> bool:
        return self._traces[pool].available(self.tick())

    def pool_for(self, offer: dict[str, object]) -> str | None:
        """The pool of an offer, or None where its provider sells no interruptible machines."""
        if offer.get("provider_name") not in self.providers:
            return None
        digest = zlib.crc32(str(offer["offer_id"]).encode())
        return self._names[digest % len(self._names)]

    def min_bid(self, usd_per_hour: object) -> Decimal:
        """The lowest bid for an on-demand price, rounded up to a hundredth of a cent."""
        price = Decimal(str(usd_per_hour)) * self.min_bid_fraction
        return price.quantize(_CENT_HUNDREDTHS, rounding=ROUND_UP)
