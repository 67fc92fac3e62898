"""The label on every machine we rent: ``subc-<run id>``.

Teardown terminates every machine with its run's label; the reaper reads the run id back out of
a label to judge whether a live run still owns the machine. The adapters (market/) write and
filter by it and the pure reaper (planner/) parses it, so it lives here, below both.
"""

from __future__ import annotations

LABEL_PREFIX = "subc-"


def run_label(run_id: str) -> str:
    """The label of the machine rented for run ``run_id``."""
    return f"{LABEL_PREFIX}{run_id}"


def run_id_of(label: str) -> str | None:
    """The run id a label names; None for a label that is not ours (never touched)."""
    if not label.startswith(LABEL_PREFIX):
        return None
    return label[len(LABEL_PREFIX) :]
