"""What the market history says about interruptible capacity: the quote's forecast. Pure.

A quote for a window days away is priced on interruptible machines where the window leaves
slack, on the assumption that such capacity will be there when the dispatch wants it. Today's
listing cannot tell whether that is so; the history can: how often, when a card was listed
at all, it was listed interruptible. The quote then counts an interruptible plan at its
expected cost, ``share × interruptible + (1 − share) × on-demand``. A card the history never
listed keeps today's view (share 1), and so does a quote with no history at all.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from subconscious.catalogue import canonical
from subconscious.models import Offer


@dataclass(frozen=True)
class SpotOutlook:
    # canonical GPU -> share of the snapshots listing it in which it was interruptible;
    # a share, not money, so a float
    shares: Mapping[str, float] = field(default_factory=dict)
    snapshots: int = 0
    computed_at: datetime | None = None

    def share(self, gpu: str) -> float:
        return self.shares.get(canonical(gpu), 1.0)

    def to_json(self) -> str:
        return json.dumps(
            {
                "shares": dict(sorted(self.shares.items())),
                "snapshots": self.snapshots,
                "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SpotOutlook:
        doc = json.loads(text)
        at = doc.get("computed_at")
        return cls(
            shares={str(k): float(v) for k, v in doc["shares"].items()},
            snapshots=int(doc["snapshots"]),
            computed_at=datetime.fromisoformat(at) if at else None,
        )


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
