"""What AWS charges to serve the simulated orders, beside the GPU: the one place the
benchmark asks for it.

``subconscious.planner.serving.serving_cost_usd`` (the cost model: Lambda seconds while a
machine is held, Step Functions transitions, DynamoDB, S3, SQS, data out) prices it. The
simulator splits it as it splits GPU cost (:meth:`bench.planner.sim.Simulation._allocate`):
each machine's part (``images=0``, its held seconds, ``machines=1``, its start-up as the time
WaitReady polls) over the orders it rendered, pro rata to render seconds; each order's images
part (``machine_seconds=0``, ``machines=0``) to that order. The model is a sum of per-machine
and per-image charges, so the parts add up to the charge for the whole run
(``tests/bench/test_distribution.py`` checks it). Rounded up to the micro-dollar.
"""

from __future__ import annotations

from decimal import ROUND_CEILING

from subconscious.money import MICROS_PER_USD
from subconscious.planner.serving import serving_cost_usd


def serving_micros(
    *,
    images: int,
    width: int,
    height: int,
    machine_seconds: float,
    machines: int,
    startup_seconds: float | None = None,
) -> int:
    """AWS's charge in micro-dollars (``serving_cost_usd``, rounded up)."""
    usd = serving_cost_usd(
        images=images,
        width=width,
        height=height,
        machine_seconds=machine_seconds,
        machines=machines,
        startup_seconds=startup_seconds,
    )
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_CEILING))
