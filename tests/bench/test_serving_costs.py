"""bench.serving_costs: the page it generates is current, and its figures hold together."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bench import serving_costs
from subconscious.planner.costs import Rates
from subconscious.throughput_model import ThroughputModel

PAGE = Path(__file__).resolve().parents[2] / "docs" / "serving-costs.md"
START = "<!-- generated: python -m bench.serving_costs -->\n"
END = "<!-- end generated -->"


def test_the_page_shows_what_the_script_prints() -> None:
    text = PAGE.read_text()
    generated = text[text.index(START) + len(START) : text.index(END)]
    assert generated == serving_costs.report(), "run: python -m bench.serving_costs"


def test_a_dearer_card_makes_aws_a_smaller_share() -> None:
    rates = Rates(ThroughputModel())
    offers = serving_costs.market()
    for job in serving_costs.JOBS:
        shares = [
            serving_costs.rendering(job, card, offer, rates).aws_of_gpu
            for card, offer in sorted(offers.items(), key=lambda co: co[1].usd_per_hour)
        ]
        assert shares == sorted(shares, reverse=True), (job, shares)


def test_an_order_costs_more_per_image_than_rendering_alone() -> None:
    """An order pays the start-up and the machine's fixed AWS charges on top."""
    rates = Rates(ThroughputModel())
    offer = serving_costs.market()["RTX 3090"]
    job = "SD 1.5 512²"
    alone = serving_costs.rendering(job, "RTX 3090", offer, rates)
    order = serving_costs.an_order(job, "RTX 3090", offer, rates, 100)
    assert order.gpu_usd > alone.gpu_usd and order.aws_usd > alone.aws_usd
    parts = serving_costs.breakdown(job, offer, rates, 100)
    assert sum(parts.values()) == order.aws_usd
    assert max(parts, key=lambda k: parts[k]) == "data_out"  # the download dominates
    assert parts["data_out"] > Decimal(0)
