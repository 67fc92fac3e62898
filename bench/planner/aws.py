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

from subconscious.money import MICROS_PER_USD, to_micros_up
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
    return to_micros_up(usd)


SHARE_CARDS = ("V100 16GB", "RTX 3090", "RTX 4090", "H100 SXM")
SHARE_IMAGES = 1000


def share_rows(images: int = SHARE_IMAGES) -> list[dict[str, object]]:
    """AWS's share of the cost per image, SD 1.5 and SDXL, on the cheapest offer of a few cards:
    ``images`` images rendered by one on-demand machine alone (start-up, rendering, teardown;
    GPU billed by the provider's increment), as the simulator charges it."""
    import random

    from bench.planner.simulated_market import load_market
    from bench.planner.workloads import make_job
    from subconscious.planner.costs import TEARDOWN_S, Rates, cost_for, price_micros_per_hour
    from subconscious.throughput_model import ThroughputModel

    rates = Rates(ThroughputModel())
    listed = [o.on_demand for o in load_market([]).offers]
    rows: list[dict[str, object]] = []
    for gpu in SHARE_CARDS:
        offer = min((o for o in listed if o.gpu == gpu), key=lambda o: o.usd_per_hour)
        for sdxl in (False, True):
            job = make_job(random.Random(0), images, sdxl=sdxl)
            held = offer.startup_s + rates.speed(offer, job).seconds(images) + TEARDOWN_S
            gpu_micros = cost_for(offer.provider, price_micros_per_hour(offer, False), held)
            dims = {"width": job.width, "height": job.height}
            aws = serving_micros(images=0, machine_seconds=held, machines=1,
                                 startup_seconds=float(offer.startup_s), **dims)  # fmt: skip
            aws += serving_micros(images=images, machine_seconds=0.0, machines=0, **dims)
            rows.append({
                "gpu": gpu,
                "provider": offer.provider,
                "usd_per_hour": str(offer.usd_per_hour),
                "model": job.model_family.value,
                "gpu_usd_per_image": round(gpu_micros / MICROS_PER_USD / images, 8),
                "aws_usd_per_image": round(aws / MICROS_PER_USD / images, 8),
                "aws_share": round(aws / (aws + gpu_micros), 3),
            })  # fmt: skip
    return rows


if __name__ == "__main__":  # pragma: no cover
    import json

    hour = serving_micros(images=0, width=512, height=512, machine_seconds=3600.0, machines=1,
                          startup_seconds=300.0)  # fmt: skip
    print(json.dumps({"aws_usd_per_machine_hour": hour / MICROS_PER_USD}))
    for line in share_rows():
        print(json.dumps(line))
