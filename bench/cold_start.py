"""Cold import time of each Lambda handler: what a cold start pays before the first line runs.

Each handler is imported in a fresh interpreter (warm .pyc, like a Lambda's second cold start),
``--repeat`` times; the median is printed beside ``import boto3`` measured in the same run, so
the ratio holds on a noisy machine. ``python -m bench.cold_start [--repeat 9]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from infra import definitions as d

ROOT = Path(__file__).resolve().parents[1]


def import_ms(module: str) -> float:
    probe = (
        "import time; t = time.perf_counter(); "
        f"import {module}; print((time.perf_counter() - t) * 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    modules = [*sorted({f.handler.rsplit(".", 1)[0] for f in d.FUNCTIONS}), "boto3"]
    for module in modules:  # warm the .pyc files once
        import_ms(module)
    medians = {m: statistics.median(import_ms(m) for _ in range(args.repeat)) for m in modules}
    baseline = medians["boto3"]
    print(f"{'module':<32} {'median ms':>10} {'x boto3':>8}")
    for module, ms in medians.items():
        print(f"{module:<32} {ms:>10.0f} {ms / baseline:>8.2f}")
    print(json.dumps({m: round(v) for m, v in medians.items()}))


if __name__ == "__main__":
    main()
