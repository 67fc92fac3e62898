"""What the market history says about interruptible capacity: the quote's forecast. Pure.

A quote for a window days away is priced on interruptible machines where the window leaves
slack, on the assumption that such capacity will be there when the dispatch wants it. Today's
listing cannot tell whether that is so; the history can: how often, when a card was listed
at all, it was listed interruptible. The quote then counts an interruptible plan at its
expected cost, ``share × interruptible + (1 − share) × on-demand``. A card the history never
listed keeps today's view (share 1), and so does a quote with no history at all.

The dispatch reads two more figures from the same snapshots: a card's typical lowest bid while
it takes bids, and how long its interruptible capacity typically stays gone once it goes
(``spacing_s`` apart, the spells' mean): whether waiting for a cheaper card's capacity is worth
it, and whether the promises can wait that long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from subconscious.catalogue import canonical
from subconscious.models import Offer
from subconscious.models.spot import SpotOutlook
from subconscious.planner.costs import micros_per_hour


def outlook(
    snapshots: Iterable[Sequence[Offer]],
    computed_at: datetime | None = None,
    spacing_s: float | None = None,
) -> SpotOutlook:
    """Per GPU, the share of the snapshots listing it in which some offer of it took bids, its
    lowest bid averaged over those snapshots and, given the snapshots' spacing (oldest first),
    the mean length of its spells without bids that ended within the history."""
    listed: Counter[str] = Counter()
    bids: Counter[str] = Counter()
    bid_micros: Counter[str] = Counter()
    gone_since: dict[str, int] = {}  # cards without bids: since which snapshot
    gone: Counter[str] = Counter()  # snapshots in the spells without bids that ended
    spells: Counter[str] = Counter()
    count = 0
    for index, snapshot in enumerate(snapshots):
        count += 1
        cards = {canonical(o.gpu) for o in snapshot}
        listed.update(cards)
        lowest: dict[str, int] = {}
        for o in snapshot:
            if o.min_bid_usd_per_hour is not None:
                gpu, bid = canonical(o.gpu), micros_per_hour(o.min_bid_usd_per_hour)
                lowest[gpu] = min(bid, lowest.get(gpu, bid))
        bids.update(lowest.keys())
        bid_micros.update(lowest)
        for gpu in lowest.keys() & gone_since.keys():
            gone[gpu] += index - gone_since.pop(gpu)
            spells[gpu] += 1
        for gpu in cards - lowest.keys():
            gone_since.setdefault(gpu, index)
    shares = {gpu: bids[gpu] / seen for gpu, seen in listed.items()}
    typical = {gpu: bid_micros[gpu] // n for gpu, n in bids.items()}
    gaps = {gpu: gone[gpu] / n * spacing_s for gpu, n in spells.items()} if spacing_s else {}
    return SpotOutlook(shares, count, computed_at, typical, gaps)
