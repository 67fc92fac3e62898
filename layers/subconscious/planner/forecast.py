"""What the market history says about interruptible capacity: the quote's forecast. Pure.

A quote for a window days away is priced on interruptible machines where the window leaves
slack, on the assumption that such capacity will be there when the dispatch wants it. Today's
listing cannot tell whether that is so; the history can: how often, when a card was listed
at all, it was listed interruptible. The quote then counts an interruptible plan at its
expected cost, ``share × interruptible + (1 − share) × on-demand``. A card the history never
listed keeps today's view (share 1), and so does a quote with no history at all.

The dispatch reads two more figures from the same snapshots: a card's typical lowest bid while
it takes bids, and how long its interruptible capacity typically stays gone once it goes (timed
by the snapshots' own times: the history reads today's all while it has few): whether waiting
for a cheaper card's capacity is worth it, and whether the promises can wait that long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from subconscious.catalogue import canonical
from subconscious.models import Offer
from subconscious.models.spot import SpotOutlook
from subconscious.planner.costs import micros_per_hour


class Tally:
    """The outlook's counts, one snapshot at a time, oldest first (the price refresh adds a
    week's at once; the simulator one an hour as its market runs)."""

    def __init__(self) -> None:
        self.count = 0
        self.listed: Counter[str] = Counter()
        self.bids: Counter[str] = Counter()
        self.bid_micros: Counter[str] = Counter()
        self.gone_since: dict[str, datetime | None] = {}  # cards without bids (None: unknown)
        self.gone_s: dict[str, float] = {}  # seconds of the spells without bids that ended
        self.spells: Counter[str] = Counter()

    def add(self, at: datetime, snapshot: Sequence[Offer]) -> None:
        self.count += 1
        cards = {canonical(o.gpu) for o in snapshot}
        lowest: dict[str, int] = {}
        for o in snapshot:
            if o.min_bid_usd_per_hour is not None:
                gpu, bid = canonical(o.gpu), micros_per_hour(o.min_bid_usd_per_hour)
                lowest[gpu] = min(bid, lowest.get(gpu, bid))
        for gpu in cards - lowest.keys():
            self.gone_since.setdefault(gpu, at if gpu in self.listed else None)
        for gpu in lowest.keys() & self.gone_since.keys():
            since = self.gone_since.pop(gpu)
            if since is not None:
                self.gone_s[gpu] = self.gone_s.get(gpu, 0.0) + (at - since).total_seconds()
                self.spells[gpu] += 1
        self.listed.update(cards)
        self.bids.update(lowest.keys())
        self.bid_micros.update(lowest)

    def outlook(self, computed_at: datetime | None = None) -> SpotOutlook:
        shares = {gpu: self.bids[gpu] / seen for gpu, seen in self.listed.items()}
        typical = {gpu: self.bid_micros[gpu] // n for gpu, n in self.bids.items()}
        gaps = {gpu: self.gone_s[gpu] / n for gpu, n in self.spells.items()}
        return SpotOutlook(shares, self.count, computed_at, typical, gaps)


def outlook(
    snapshots: Iterable[tuple[datetime, Sequence[Offer]]], computed_at: datetime | None = None
) -> SpotOutlook:
    """From snapshots, oldest first, each with when it was taken: per GPU, the share of the
    snapshots listing it in which some offer of it took bids, its lowest bid averaged over
    those snapshots, and the mean length of its spells without bids that ended within the
    history (from the first snapshot without bids to the next with them; a spell already
    running when the card was first seen is not counted, as its start is not known)."""
    tally = Tally()
    for at, snapshot in snapshots:
        tally.add(at, snapshot)
    return tally.outlook(computed_at)
