"""What AWS charges to serve the simulated orders, beside the GPU: the one place the
benchmark asks for it.

``subconscious.planner.serving.serving_cost_usd`` (the cost model: Lambda seconds while a
machine is held, Step Functions transitions, DynamoDB, S3, SQS, data out) prices it. The
simulator splits it as it splits GPU cost (:meth:`bench.planner.sim.Simulation._allocate`):
each machine's part (``images=0``, its held seconds, ``machines=1``) over the orders it
rendered, pro rata to render seconds; each order's images part (``machine_seconds=0``,
``machines=0``) to that order. The model is a sum of per-machine and per-image charges, so the
two parts add up to the charge for the whole run.
"""

from __future__ import annotations


def serving_micros(
    *, images: int, width: int, height: int, machine_seconds: float, machines: int
) -> int:
    """AWS's charge in micro-dollars; 0 until ``subconscious.planner.serving`` is on main."""
    del images, width, height, machine_seconds, machines
    return 0
