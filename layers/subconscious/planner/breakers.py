"""Breakers: a failure is held off where it happened, never everywhere (invariant 9).

Pure: failed runs in, what not to rent out. Two levels, from what a failed run tells:
- **host**: an offer whose machine failed (would not launch, never served, crashed, failed a
  health check) is not rented again for ``host_holdoff_s``. A marketplace offer is one host (a
  Vast.ai ask, a RunPod GPU type in one cloud, a TensorDock location), so one bad host costs one
  machine, not the market.
- **provider**: a provider with ``failures_to_pause`` machines that failed *before serving*
  (launch refused, never ready) within ``pause_s`` is paused until the oldest of those leaves the
  window: its API or its images are broken, and every launch there would bill and fail alike.
  A machine that failed after it served (a crash mid-batch, a poison task) says nothing about
  the provider and never pauses it.

A run that failed through no fault of its host (``errors.NOT_THE_HOSTS_FAULT``: preempted, a
task that had already crashed another machine, its spend cap reached while booting) is not
counted at all; nor are servers the operator runs by hand (the ``static`` provider: there is no
other host to go to).

Tasks carry their own blame (``RenderTask.attempts``, settled in ``logic/lifecycle.py``): a
task that crashes machines is given up after its attempts, and no tenant's order waits on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from subconscious.models import Offer


@dataclass(frozen=True)
class FailedRun:
    provider: str
    offer_id: str
    ended_at: datetime
    served: bool  # it rendered (passed WaitReady) before it failed
    hosts_fault: bool = True  # False: preempted, killed by a task that kills machines, ...


@dataclass(frozen=True)
class BreakerLimits:
    host_holdoff_s: int = 3600
    failures_to_pause: int = 3
    pause_s: int = 900


@dataclass(frozen=True)
class HeldOff:
    hosts: frozenset[tuple[str, str]] = frozenset()  # (provider, offer id)
    providers: frozenset[str] = frozenset()
    reasons: tuple[str, ...] = field(default=())

    def allows(self, offer: Offer) -> bool:
        return (
            offer.provider not in self.providers
            and (offer.provider, offer.offer_id) not in self.hosts
        )


def held_off(failed: Iterable[FailedRun], now: datetime, limits: BreakerLimits) -> HeldOff:
    host_since = now - timedelta(seconds=limits.host_holdoff_s)
    pause_since = now - timedelta(seconds=limits.pause_s)
    hosts: set[tuple[str, str]] = set()
    unserved: dict[str, int] = defaultdict(int)
    for run in failed:
        if not run.hosts_fault:
            continue
        if run.ended_at >= host_since:
            hosts.add((run.provider, run.offer_id))
        if not run.served and run.ended_at >= pause_since:
            unserved[run.provider] += 1
    paused = {p for p, n in unserved.items() if n >= limits.failures_to_pause}
    reasons = [f"{p} paused: {unserved[p]} machines failed before serving" for p in sorted(paused)]
    if hosts:
        reasons.append(f"{len(hosts)} host(s) held off after a failure")
    return HeldOff(frozenset(hosts), frozenset(paused), tuple(reasons))
