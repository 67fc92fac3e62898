"""Render-loop efficiency on the local stack: images/s the pipeline delivers (rendered, checked,
stored in S3, counted) against the renderer's raw rate, measured in the same run.

``python -m bench.render_loop [--images 400] [--rate 50]``. The ratio is what our side of the
loop (SQS, PNG checks, S3 puts, DynamoDB transactions) costs a machine: 1.0 means the GPU never
waits for us. The emulated renderer sleeps to keep its rate, like a GPU would be busy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import datetime

from infra.local.emulated_market import MachineFaults
from infra.local.stack import running
from subconscious.services import services
from subconscious_cli.client import Client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0, help="renderer images/s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    faults = MachineFaults(startup_delay_s=0.5, images_per_s=args.rate)
    with (
        running(dispatch_every_s=0.5, default_faults=faults) as stack,
        Client(stack.api_url, stack.api_key) as client,
    ):
        per_prompt = args.images // 4
        job = {"prompts": [{"text": f"bench {i}", "count": per_prompt} for i in range(4)]}
        quote = client.quote(job)
        started = time.monotonic()
        order = client.order(quote["quote_id"], quote["options"][0]["option_id"])
        done = client.wait(order["order_id"], timeout_s=600, poll_s=0.2)
        wall = time.monotonic() - started
        stack.wait_for_runs(60)
        live_left = len(list(services().runs.live()))
        stored = sorted(_stored_at())
    images = done["images_done"]
    # steady state: from the first stored image to the last (boot and first batch excluded)
    window = (stored[-1] - stored[0]).total_seconds()
    in_render = (len(stored) - 8) / window if window > 0 else 0.0
    end_to_end = images / wall
    print(f"renderer raw rate         {args.rate:8.1f} images/s")
    print(
        f"delivered while rendering {in_render:8.1f} images/s  ({in_render / args.rate:.2f} of raw)"
    )
    print(
        f"order end to end          {end_to_end:8.1f} images/s  "
        f"({end_to_end / args.rate:.2f} of raw, incl. dispatch tick, boot and teardown)"
    )
    print(
        json.dumps(
            {
                "images": images,
                "raw": args.rate,
                "render_step": round(in_render, 1),
                "end_to_end": round(end_to_end, 1),
                "wall_s": round(wall, 1),
                "live_runs_left": live_left,
            }
        )
    )


def _stored_at() -> list[datetime]:
    import boto3

    from infra import definitions as d

    name = next(t.name for t in d.TABLES if t.settings_field == "images_table")
    table = boto3.resource("dynamodb").Table(name)
    items: list[dict[str, str]] = []
    kwargs: dict[str, object] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [datetime.fromisoformat(i["stored_at"]) for i in items]


if __name__ == "__main__":
    main()
