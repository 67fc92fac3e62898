"""What the market history says about interruptible capacity: the quote's forecast. Pure.

A quote for a window days away is priced on interruptible machines where the window leaves
slack, on the assumption that such capacity will be there when the dispatch wants it. Today's
listing cannot tell whether that is so; the history can: how often, when a card was listed
at all, it was listed interruptible. The quote then counts an interruptible plan at its
expected cost, ``share × interruptible + (1 − share) × on-demand``. A card the history never
listed keeps today's view (share 1), and so does a quote with no history at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from subconscious.catalogue import canonical
from subconscious.models import Offer
from subconscious.models.spot import SpotOutlook


def outlook(
    snapshots: Iterable[Sequence[Offer]], computed_at: datetime | None = None
) -> SpotOutlook:
    """Per GPU, the share of the snapshots listing it in which some offer of it took bids."""
    listed: Counter[str] = Counter()
    bids: Counter[str] = Counter()
    count = 0
    for snapshot in snapshots:
        count += 1
        listed.update({canonical(o.gpu) for o in snapshot})
        bids.update({canonical(o.gpu) for o in snapshot if o.min_bid_usd_per_hour is not None})
    shares = {gpu: bids[gpu] / seen for gpu, seen in listed.items()}
    return SpotOutlook(shares, count, computed_at)
