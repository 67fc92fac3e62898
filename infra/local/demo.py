"""``make demo``: the founding document's example, played by a customer over HTTP.

"I want 1000 images using these 10 blurbs marketing gave me, by the end of the day, for less
than 3 cents an image." The demo starts the local stack, asks for a quote, accepts it, watches
progress, downloads every image through its presigned link, stops everything it started, and
prints one JSON line. It renders 12 images per prompt by default (120 in all, well under three
minutes); ``make demo DEMO_ARGS="--per-prompt 100"`` runs the full 1000.

Then the market tightens, as GPU markets do: the marketplace the first order rented runs dry
and a second customer in a hurry renders elsewhere; then every marketplace runs dry and a
third customer renders on AWS EC2 (moto's EC2, through the real EC2 adapter), at AWS prices.
``machines_by_provider`` in the JSON line names the adapters that rented.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from infra.local.emulated_market import MachineFaults
from infra.local.stack import running
from subconscious.render.png import png_size
from subconscious_cli.client import Client
from subconscious_cli.models import OrderOut

PROMPTS = [
    "a lighthouse at dawn, oil painting",
    "a lighthouse in a storm, watercolour",
    "a red fox in fresh snow, photograph",
    "a cup of coffee on a wooden table, morning light",
    "a city skyline at night, neon, rain",
    "a mountain lake with a wooden boat, autumn",
    "a vintage bicycle against a yellow wall",
    "a bowl of ramen, studio lighting, top view",
    "a small robot watering plants, children's book style",
    "a desert road at sunset, wide angle",
]


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def end_of_day(now: datetime) -> datetime:
    """The end of today (UTC); tomorrow's if today has under two hours left."""
    end = now.replace(hour=23, minute=59, second=0, microsecond=0)
    return end if end - now >= timedelta(hours=2) else end + timedelta(days=1)


def _order(client: Client, who: str, job: dict[str, Any], constraints: dict[str, Any]) -> Any:
    """Quote, show every option, accept the first that meets the terms (else the first)."""
    quote = client.quote(job, constraints)
    for option in quote["options"]:
        say(
            f"{who}: option {option['label']}: ${option['price_per_image_usd']}/image, "
            f"total ${option['total_usd']}, on {option['machines']}× {option['gpu']} "
            f"({option['provider']}), done by {option['completes_at']} "
            f"(expected {option.get('expected_completion_at', '-')})"
        )
    option = next(
        (o for o in quote["options"] if o["meets_deadline"] and o["meets_budget"]),
        quote["options"][0],
    )
    outside = not (option["meets_deadline"] and option["meets_budget"])
    if outside:  # the customer confirms it, as the CLI asks: the API wants it said
        say(f"{who}: no option meets the terms; accepting {option['label']} explicitly")
    order = client.order(quote["quote_id"], option["option_id"], accept_outside_terms=outside)
    say(f"{who}: order {order['order_id']} {order['state']}: {order['images_total']} images")
    return order, option


def play(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    faults = MachineFaults(startup_delay_s=args.startup_s, images_per_s=args.images_per_s)
    machine_logs = Path(args.out) / "machine-logs"  # each machine's renderer output, kept
    with running(dispatch_every_s=1.0, default_faults=faults, machine_logs=machine_logs) as stack:
        say(
            f"local stack up: API {stack.api_url}, market with {len(stack.market.offers())} "
            f"offers, machine logs into {machine_logs}"
        )
        with Client(stack.api_url, stack.api_key) as client:
            size = {"model_family": "sd15", "width": args.size, "height": args.size, "steps": 20}
            job = {"prompts": [{"text": p, "count": args.per_prompt} for p in PROMPTS], **size}
            now = datetime.now(UTC)
            deadline = end_of_day(now)
            say(
                f"customer: {len(PROMPTS) * args.per_prompt} images from {len(PROMPTS)} prompts, "
                f"by {deadline:%Y-%m-%d %H:%MZ}, under $0.03 an image"
            )
            placed = [
                _order(
                    client,
                    "customer",
                    job,
                    {"deadline": deadline.isoformat(), "max_price_per_image_usd": "0.03"},
                )
            ]
            valid: list[Path] = []
            finished = []
            seen: list[str] = []
            for index in range(3 if args.rush else 1):
                if index == 1:
                    # The marketplace the first order rented on runs dry (every machine
                    # taken). A second customer in a hurry: more work than one GPU renders in
                    # the window. The next price refresh drops that market's offers and the
                    # dispatch rents elsewhere, several machines at once.
                    seen = _cached_providers(stack.providers)
                    used = sorted(_market_summary(stack.providers, stack.executions())[1])
                    for name in used:
                        stack.sell_out(name)
                    refreshed = stack.fire("subc-prices")
                    say(f"{', '.join(used)} sold out; prices refreshed: {refreshed.get('offers')}")
                    rush_job = {
                        "prompts": [{"text": p, "count": 100} for p in PROMPTS[:4]],
                        **size,
                    }
                    rush_by = datetime.now(UTC) + timedelta(minutes=6)
                    say(f"rush customer: 400 images from 4 prompts by {rush_by:%H:%M:%SZ}")
                    placed.append(
                        _order(client, "rush", rush_job, {"deadline": rush_by.isoformat()})
                    )
                if index == 2:
                    # A GPU crunch: every marketplace is sold out. AWS still has capacity, at
                    # AWS prices; the next price refresh leaves EC2 as the only market.
                    dry = [name for name in stack.providers if name != "ec2"]
                    for name in dry:
                        stack.sell_out(name)
                    refreshed = stack.fire("subc-prices")
                    say(f"{', '.join(dry)} sold out; prices refreshed: {refreshed.get('offers')}")
                    crunch_job = {
                        "prompts": [{"text": p, "count": 20} for p in PROMPTS[4:8]],
                        **size,
                    }
                    crunch_by = datetime.now(UTC) + timedelta(minutes=10)
                    say(f"third customer: 80 images from 4 prompts by {crunch_by:%H:%M:%SZ}")
                    placed.append(
                        _order(client, "third", crunch_job, {"deadline": crunch_by.isoformat()})
                    )
                order = placed[index][0]
                last = [-1]

                def progress(o: OrderOut, last: list[int] = last) -> None:
                    if o["images_done"] != last[0]:
                        last[0] = o["images_done"]
                        say(
                            f"  {o['order_id'][:12]} {o['state']:<10} "
                            f"{o['images_done']:>5}/{o['images_total']} images, "
                            f"charge ${o['charge_usd']}"
                        )

                done = client.wait(
                    order["order_id"], timeout_s=args.timeout_s, on_progress=progress
                )
                finished.append(done)
                directory = Path(args.out) / done["order_id"]
                paths = client.download(done["order_id"], directory)
                good = [p for p in paths if png_size(p.read_bytes()) == (args.size, args.size)]
                say(f"downloaded {len(good)} valid {args.size}x{args.size} PNGs into {directory}")
                valid.extend(good)
        runs = stack.executions()
        market_providers, machines_by_provider = _market_summary(stack.providers, runs)
        market_providers = [p for p in stack.providers if p in {*seen, *market_providers}]
        # our GPU cost, from the stack's own records (the customer's view never shows it)
        spent = [stack.gpu_spend_usd(o["order_id"]) for o in finished]
    return {
        "images": len(valid),
        "dir": str(Path(args.out).resolve()),
        "orders": len(finished),
        "state": ",".join(sorted({o["state"] for o in finished})),
        "charge_usd": str(sum(Decimal(o["charge_usd"]) for o in finished)),
        "spend_usd": str(sum(spent, Decimal(0))),
        "quoted_usd": str(sum(Decimal(option["total_usd"]) for _, option in placed)),
        "over_quote": sum(
            cost > Decimal(option["total_usd"])
            for cost, (_, option) in zip(spent, placed, strict=True)
        ),
        "render_runs": len(runs),
        "market_providers": market_providers,
        "machines_by_provider": machines_by_provider,
        "wall_s": round(time.monotonic() - started, 1),
    }


def _cached_providers(providers: tuple[str, ...]) -> list[str]:
    from subconscious.services import services

    return [name for name in providers if services().prices.read(name)[1]]


def _market_summary(
    providers: tuple[str, ...], executions: list[dict[str, Any]]
) -> tuple[list[str], dict[str, int]]:
    """Providers whose offers were in the price cache, and the machines rented from each."""
    from subconscious.services import services

    svc = services()
    cached = _cached_providers(providers)
    rented: dict[str, int] = {}
    for execution in executions:
        run = svc.runs.get(execution["name"])
        if run is not None and run.machine_id:
            rented[run.offer.provider] = rented.get(run.offer.provider, 0) + 1
    return cached, rented


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--per-prompt",
        type=int,
        default=12,
        help="images per prompt (10 prompts); below about 5, the order is too small to pay a "
        "machine's start-up and waits for other work (the dispatch batches orders)",
    )
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--images-per-s", type=float, default=40.0, help="emulated GPU speed")
    parser.add_argument("--startup-s", type=float, default=2.0, help="emulated machine boot time")
    parser.add_argument("--out", default="demo-output", help="where images are downloaded")
    parser.add_argument("--timeout-s", type=float, default=170.0)
    parser.add_argument(
        "--no-rush",
        dest="rush",
        action="store_false",
        help="leave out the second, hurried customer (400 images within 6 minutes) and the "
        "third, who renders on EC2 when every marketplace is sold out (80 images)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = play(args)
    print(json.dumps(result))
    expected = len(PROMPTS) * args.per_prompt + (400 + 80 if args.rush else 0)
    return 0 if result["images"] == expected and not result["over_quote"] else 1


if __name__ == "__main__":
    sys.exit(main())
