"""The fault suite's results: each scenario's figures, collected as JSON lines, and the table
``docs/reliability.md`` publishes.

Tests call :func:`record`; it appends one line to the file named by ``$SUBC_FAULT_RESULTS``
(nothing is written where it is unset, so ``make test`` leaves no file behind). Lines are
appended, so pytest-xdist workers share one file. ``make faults`` sets the variable, runs the
suite and prints the table:

    python -m tests.e2e.fault_report build/fault-results.jsonl [--update docs/reliability.md]

``--update`` replaces the table between the ``fault-table`` markers of that file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from pathlib import Path

RESULTS_ENV = "SUBC_FAULT_RESULTS"
TERMINAL_STATES = frozenset({"completed", "partially_completed", "failed", "cancelled", "expired"})
START_MARKER = "<!-- fault-table:start -->"
END_MARKER = "<!-- fault-table:end -->"


@dataclass(frozen=True)
class Figures:
    """What one order of one scenario ended with (money as decimal strings)."""

    scenario: str
    order: str  # which order of the scenario ("order", or a tenant's name)
    state: str  # the last state seen; an open state means it never ended within the bound
    end_reason: str | None
    images_total: int
    images_done: int
    images_failed: int
    images_released: int  # never rendered because the order ended first (expired, cancelled)
    images_listed: int  # distinct (prompt_index, seed) the API lists
    machines_left: int  # live machines once the runs ended
    processes_alive: int  # renderer processes still running then
    seconds_to_terminal: float | None  # ended_at - created_at, None if it never ended
    bound_s: float
    on_time: bool | None  # ended by its promised_at
    spend_usd: str
    total_usd: str
    charge_usd: str
    price_per_image_usd: str
    gpu_cost_usd: str  # every machine of the scenario, rented to its end (both tenants')
    machines_rented: int

    def broken(self) -> list[str]:
        """The figures that do not hold: (a) delivered once or partial, charged exactly;
        (b) no machine left; (c) terminal with a reason within the bound; (d) within quote."""
        broken = []
        charge_ok = self.charge_usd != "" and Decimal(self.charge_usd) == (
            Decimal(self.price_per_image_usd) * self.images_done
        )
        if not (
            self.images_listed == self.images_done
            and self.images_done + self.images_failed + self.images_released == self.images_total
            and (self.images_released == 0 or self.state in ("expired", "cancelled"))
            and charge_ok
        ):
            broken.append("a")
        if self.machines_left or self.processes_alive:
            broken.append("b")
        if (
            self.state not in TERMINAL_STATES
            or not self.end_reason
            or self.seconds_to_terminal is None
            or self.seconds_to_terminal > self.bound_s
        ):
            broken.append("c")
        if Decimal(self.spend_usd) > Decimal(self.total_usd):
            broken.append("d")
        return broken

    @property
    def spend_share(self) -> Decimal:
        total = Decimal(self.total_usd)
        return Decimal(self.spend_usd) / total if total else Decimal(0)

    @property
    def gpu_cost_share(self) -> Decimal:
        total = Decimal(self.total_usd)
        return Decimal(self.gpu_cost_usd) / total if total else Decimal(0)


def record(figures: Figures) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(figures), sort_keys=True) + "\n"
    # One write of one line in append mode: lines of parallel workers do not interleave.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


def load(path: Path) -> list[Figures]:
    names = {f.name for f in fields(Figures)}
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            rows.append(Figures(**{k: v for k, v in data.items() if k in names}))
    return sorted(rows, key=lambda f: (f.scenario, f.order))


def _percent(share: Decimal) -> str:
    return f"{share * 100:.1f} %"


def table(rows: list[Figures]) -> str:
    """The markdown table of scenarios → figures."""
    lines = [
        "| scenario | order | four figures | state (reason) | delivered / ordered "
        "| given up / released "
        "| machines left | s to terminal (bound) | on time | spend / quote | GPU cost / quote "
        "| machines rented |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        seconds = "never" if f.seconds_to_terminal is None else f"{f.seconds_to_terminal:.1f}"
        on_time = {None: "–", True: "yes", False: "no"}[f.on_time]
        broken = f.broken()
        verdict = "hold" if not broken else "**" + ", ".join(f"({b})" for b in broken) + " fail**"
        lines.append(
            f"| {f.scenario} | {f.order} | {verdict} | {f.state} ({f.end_reason or '–'}) "
            f"| {f.images_done} / {f.images_total} | {f.images_failed} / {f.images_released} "
            f"| {f.machines_left + f.processes_alive} | {seconds} ({f.bound_s:g}) | {on_time} "
            f"| {_percent(f.spend_share)} | {_percent(f.gpu_cost_share)} | {f.machines_rented} |"
        )
    return "\n".join(lines) + "\n"


def update(document: Path, rendered: str) -> None:
    text = document.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{document}: no {START_MARKER} ... {END_MARKER} section")
    replaced = pattern.sub(lambda _: f"{START_MARKER}\n{rendered}{END_MARKER}", text)
    document.write_text(replaced, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The fault suite's table of figures.")
    parser.add_argument("results", type=Path, help="the JSON lines the suite wrote")
    parser.add_argument("--update", type=Path, help="replace the table in this markdown file")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"{args.results}: no results (run the suite with {RESULTS_ENV} set)")
        return 1
    rendered = table(load(args.results))
    sys.stdout.write(rendered)
    if args.update is not None:
        update(args.update, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
