"""What serving an image costs: the GPU beside AWS's charges, per image, on three cards.

``python -m bench.serving_costs`` prints the tables of ``docs/serving-costs.md`` (a test keeps
the page equal to this output). Cards and prices: the local stack's market
(``infra/local/data/gpu_prices.csv`` through ``infra.local.emulated_market.load_offers``), the
cheapest Vast.ai offer of each card, billed as Vast bills (by the second) and started in the
Vast adapter's estimate (``market/vast.py`` STARTUP_S). Rates: the planner's own
(``planner.costs.Rates`` on ``subconscious.throughput_model``, automatic1111). AWS:
``planner.serving`` with the start-up known and tasks of the size the order splits into.

Two views per card: *rendering*, the cost of one more image on a machine already running
(the GPU's price over its rate; AWS's per-image charges and the render step's seconds), and an
*order* of N images on one machine of its own, start-up and teardown included.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from decimal import Decimal

from infra.local.emulated_market import load_offers
from subconscious.logic.orders import task_batch
from subconscious.market.vast import STARTUP_S
from subconscious.models import JobSpec, ModelFamily, Offer
from subconscious.planner.costs import TEARDOWN_S, Rates, Speed, cost_for, micros_per_hour
from subconscious.planner.serving import (
    MACHINE_USD_PER_S,
    MACHINE_USD_PER_SLICE,
    PRICE_TABLE,
    RENDER_SLICE_S,
    ServingCost,
    images_usd,
    serving_breakdown,
)
from subconscious.throughput_model import ThroughputModel

CARDS = {  # the table's name -> the price file's names, cheapest first
    "RTX 3090": ("RTX 3090",),
    "RTX 4090": ("RTX 4090",),
    "A100 80GB": ("A100 80GB PCIe", "A100 80GB SXM"),
}
JOBS = {
    "SD 1.5 512²": {"model_family": ModelFamily.SD15, "width": 512, "height": 512},
    "SDXL 1024²": {"model_family": ModelFamily.SDXL, "width": 1024, "height": 1024},
}
ORDER_SIZES = (100, 1000)
_MICRO = Decimal("0.000001")


def market() -> dict[str, Offer]:
    """The cheapest Vast.ai offer of each card in the local market's price file."""
    found: dict[str, Offer] = {}
    rows = [r for r in load_offers() if r["provider_name"] == "Vast.ai"]
    for card, names in CARDS.items():
        row = min(
            (r for r in rows if r["gpu"] in names),
            key=lambda r: Decimal(str(r["usd_per_hour"])),
        )
        found[card] = Offer(
            provider="vast",
            offer_id=str(row["offer_id"]),
            gpu=str(row["gpu"]),
            gpu_memory_gb=int(str(row["gpu_memory_gb"])),
            usd_per_hour=Decimal(str(row["usd_per_hour"])),
            startup_s=STARTUP_S,
        )
    return found


def job(name: str, images: int = 1) -> JobSpec:
    return JobSpec.model_validate({"prompts": [{"text": "p", "count": images}], **JOBS[name]})


@dataclass(frozen=True)
class Row:
    job: str
    card: str
    usd_per_hour: Decimal
    images_per_s: float
    gpu_usd: Decimal  # per image
    aws_usd: Decimal  # per image

    @property
    def aws_of_gpu(self) -> Decimal:
        return self.aws_usd / self.gpu_usd

    @property
    def aws_of_total(self) -> Decimal:
        return self.aws_usd / (self.gpu_usd + self.aws_usd)


def rendering(name: str, card: str, offer: Offer, rates: Rates) -> Row:
    """One more image on a machine already rendering."""
    spec = job(name)
    speed = rates.speed(offer, spec)
    per_s = Decimal(str(speed.images_per_s))
    gpu = offer.usd_per_hour / 3600 / per_s
    held = (MACHINE_USD_PER_S + MACHINE_USD_PER_SLICE / RENDER_SLICE_S) / per_s
    aws = images_usd(1, spec.width, spec.height, task_batch(spec)) + held
    return Row(name, card, offer.usd_per_hour, speed.images_per_s, gpu, aws)


def _alone(name: str, offer: Offer, rates: Rates, images: int) -> tuple[float, Speed, ServingCost]:
    """``images`` on one machine of their own: how long it is held (start-up, rendering,
    teardown), its speed, and what AWS charges for serving them."""
    spec = job(name, images)
    speed = rates.speed(offer, spec)
    held = offer.startup_s + speed.seconds(images) + TEARDOWN_S
    cost = serving_breakdown(
        images=images,
        width=spec.width,
        height=spec.height,
        machine_seconds=held,
        machines=1,
        startup_seconds=offer.startup_s,
        images_per_task=task_batch(spec),
    )
    return held, speed, cost


def an_order(name: str, card: str, offer: Offer, rates: Rates, images: int) -> Row:
    """``images`` on one machine of their own: start-up, rendering, teardown."""
    held, speed, aws = _alone(name, offer, rates, images)
    gpu_micros = cost_for(offer.provider, micros_per_hour(offer.usd_per_hour), held)
    gpu = Decimal(gpu_micros) / 1_000_000
    return Row(
        name, card, offer.usd_per_hour, speed.images_per_s, gpu / images, aws.total_usd / images
    )


def breakdown(name: str, offer: Offer, rates: Rates, images: int) -> dict[str, Decimal]:
    _, _, cost = _alone(name, offer, rates, images)
    return {k: v / images for k, v in cost.as_dict().items()}


def _micro(usd: Decimal) -> str:
    return f"{usd * 1_000_000:.1f}"


def _percent(share: Decimal) -> str:
    return f"{share * 100:.0f} %"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| job | card | $/h | images/s | GPU µ$/image | AWS µ$/image | AWS ÷ GPU | AWS share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.job} | {r.card} | {r.usd_per_hour} | {r.images_per_s:.2f} | {_micro(r.gpu_usd)}"
        f" | {_micro(r.aws_usd)} | {_percent(r.aws_of_gpu)} | {_percent(r.aws_of_total)} |"
        for r in rows
    ]
    return lines


def report() -> str:
    rates = Rates(ThroughputModel())
    offers = market()
    out = ["### AWS list prices (us-east-1)", ""]
    out += ["| service | unit | USD | source |", "|---|---|---|---|"]
    out += [f"| {p.service} | {p.unit} | {p.usd.normalize():f} | {p.source} |" for p in PRICE_TABLE]
    out += ["", "### One more image on a machine already rendering", ""]
    out += table([rendering(j, c, o, rates) for j in JOBS for c, o in offers.items()])
    for images in ORDER_SIZES:
        out += ["", f"### An order of {images} images on one machine of its own", ""]
        out += table([an_order(j, c, o, rates, images) for j in JOBS for c, o in offers.items()])
    card = "RTX 3090"
    out += ["", f"### AWS per image by service, {ORDER_SIZES[-1]} images on one {card}", ""]
    parts = {j: breakdown(j, offers[card], rates, ORDER_SIZES[-1]) for j in JOBS}
    out += ["| service | " + " | ".join(f"{j} µ$/image" for j in JOBS) + " |"]
    out += ["|---|" + "---|" * len(JOBS)]
    for service in next(iter(parts.values())):
        out += [f"| {service} | " + " | ".join(_micro(parts[j][service]) for j in JOBS) + " |"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(report(), end="")


if __name__ == "__main__":
    main()
