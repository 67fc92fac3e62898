"""The quote's forecast of interruptible capacity, as the planner reads it and the price store
keeps it (``planner/forecast.py`` computes it, ``dal/prices.py`` stores it): a model here so
neither layer imports the other."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from subconscious.catalogue import canonical


@dataclass(frozen=True)
class SpotOutlook:
    # canonical GPU -> share of the snapshots listing it in which it was interruptible;
    # a share, not money, so a float
    shares: Mapping[str, float] = field(default_factory=dict)
    snapshots: int = 0
    computed_at: datetime | None = None
    # canonical GPU -> its lowest bid (micro-dollars an hour), averaged over the snapshots in
    # which it took bids: what waiting for its interruptible capacity is expected to cost
    bids: Mapping[str, int] = field(default_factory=dict)
    # canonical GPU -> how long its interruptible capacity stayed gone once it went, on
    # average (seconds; a duration, so a float)
    gaps: Mapping[str, float] = field(default_factory=dict)

    def share(self, gpu: str) -> float:
        return self.shares.get(canonical(gpu), 1.0)

    def to_json(self) -> str:
        return json.dumps(
            {
                "shares": dict(sorted(self.shares.items())),
                "snapshots": self.snapshots,
                "computed_at": self.computed_at.isoformat() if self.computed_at else None,
                "bids": dict(sorted(self.bids.items())),
                "gaps": dict(sorted(self.gaps.items())),
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
            # an outlook stored before bids were kept has none: the policy then rents what is
            # listed, as it did
            bids={str(k): int(v) for k, v in doc.get("bids", {}).items()},
            gaps={str(k): float(v) for k, v in doc.get("gaps", {}).items()},
        )
