"""Interruptible-capacity pools from spot-trace files.

A trace file is JSON ``{"metadata": {"gap_seconds": N}, "data": [v0, v1, ...]}`` (the format of
skypilot-org/spot-traces, the data of "Can't Be Late", NSDI 2024); value ``i`` holds from
``i * N`` to ``(i + 1) * N`` seconds after the simulation starts. Every ``*.json`` file under the
folder, at any depth, is one pool; its name is its path relative to the folder.

**Reading of the values: a value > 0 means the pool has interruptible capacity now; 0 means
it has none.** This is the reading the traces' own README gives ("each data point is the number
of available instances at a specific tick"). ``data/SOURCES.md`` notes that the paper's
simulator reads the *preemption* traces the other way round (0 = spot available). We take the
README's reading for every file, for three reasons: (1) the command accepts any folder in this
format and cannot tell an "availability" file from a "preemption" file except by its path, so
one reading must hold for all; (2) it is the documented meaning of the format; (3) the
availability traces bear it out: under this reading the 1-GPU instance types are available far
more often than the 8-GPU ones of the same zone (V100 us-west-2a: 79 % vs 48 %; K80: 89 % vs
33 %), as one expects of scarcer large instances. For the preemption traces the choice sets how
often capacity exists (31–79 % of the time by zone under this reading, 21–69 % under the
other); how often it flips, which is what preempts machines, is the same either way.

A trace shorter than the simulation is repeated from its start (the clock wraps).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path


class TraceError(ValueError):
    """A file under the trace folder is not in the spot-traces format."""


@dataclass(frozen=True)
class Pool:
    name: str
    gap_s: float
    available: tuple[bool, ...]
    # prefix sums of available ticks, for available_seconds
    _prefix: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # indices i where tick i-1 is available and tick i is not (including the wrap at 0)
    _drops: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.available:
            raise TraceError(f"{self.name}: no data")
        if self.gap_s <= 0:
            raise TraceError(f"{self.name}: gap_seconds must be > 0")
        object.__setattr__(self, "_prefix", (0, *accumulate(int(a) for a in self.available)))
        n = len(self.available)
        drops = tuple(i for i in range(n) if self.available[i - 1] and not self.available[i])
        object.__setattr__(self, "_drops", drops)

    @property
    def period_s(self) -> float:
        return self.gap_s * len(self.available)

    @property
    def available_share(self) -> float:
        return self._prefix[-1] / len(self.available)

    def available_at(self, t: float) -> bool:
        """Whether the pool has capacity at ``t`` seconds after the start."""
        return self.available[int(t // self.gap_s) % len(self.available)]

    def next_drop(self, after: float) -> float | None:
        """The first time strictly after ``after`` at which capacity disappears."""
        if not self._drops:
            return None
        period = self.period_s
        cycle, offset = divmod(after, period)
        index = bisect.bisect_right(self._drops, offset / self.gap_s)
        if index < len(self._drops):
            return cycle * period + self._drops[index] * self.gap_s
        return (cycle + 1) * period + self._drops[0] * self.gap_s

    def drops_between(self, start: float, end: float) -> list[float]:
        """Every time in ``(start, end]`` at which capacity disappears."""
        out: list[float] = []
        t = self.next_drop(start)
        while t is not None and t <= end:
            out.append(t)
            t = self.next_drop(t)
        return out

    def available_seconds(self, start: float, end: float) -> float:
        """Seconds of ``[start, end)`` during which the pool has capacity."""
        if end <= start:
            return 0.0
        return self._cumulative(end) - self._cumulative(start)

    def _cumulative(self, t: float) -> float:
        n = len(self.available)
        ticks, rest = divmod(t, self.gap_s)
        cycles, index = divmod(int(ticks), n)
        whole = cycles * self._prefix[-1] + self._prefix[index]
        return (whole + (rest / self.gap_s if self.available[index] else 0.0)) * self.gap_s


def parse(name: str, text: str) -> Pool:
    try:
        body = json.loads(text)
        gap = float(body["metadata"]["gap_seconds"])
        data = body["data"]
    except (ValueError, KeyError, TypeError) as error:
        raise TraceError(f"{name}: not a spot-trace file ({error})") from error
    if not isinstance(data, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data
    ):
        raise TraceError(f"{name}: 'data' must be a list of numbers")
    return Pool(name=name, gap_s=gap, available=tuple(v > 0 for v in data))


def load_pools(directory: Path) -> list[Pool]:
    """Every ``*.json`` file under ``directory`` (recursively), sorted by relative path."""
    if not directory.is_dir():
        raise TraceError(f"{directory}: not a folder")
    paths = sorted(directory.rglob("*.json"))
    if not paths:
        raise TraceError(f"{directory}: no *.json trace files")
    return [
        parse(p.relative_to(directory).with_suffix("").as_posix(), p.read_text()) for p in paths
    ]
