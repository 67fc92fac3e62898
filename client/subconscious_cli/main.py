"""``subconscious``: quote, order, watch, download and cancel text-to-image jobs.

Exit status: 0 on success, 1 when the API (or the network, or the disk) says no, 2 for a usage
error such as a missing API key.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from subconscious_cli.client import ApiError, Client
from subconscious_cli.formatting import Progress, format_order, format_quote, print_json

DEFAULT_API_URL = "http://127.0.0.1:8600"
API_URL_ENV = "SUBCONSCIOUS_API_URL"
API_KEY_ENV = "SUBCONSCIOUS_API_KEY"
_RELATIVE = re.compile(r"^\+(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """A mistake in the command line that argparse alone cannot see; exits 2."""


# -- argument types ---------------------------------------------------------------------------


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """``+6h``, ``+3d``, ``+90m``, ``+1d12h`` from now, or an ISO-8601 time with a timezone."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text.strip())
    if relative and any(relative.groupdict().values()):
        parts = {unit: int(value or 0) for unit, value in relative.groupdict().items()}
        delta = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"])
        if not delta:
            raise argparse.ArgumentTypeError("a relative deadline must lie ahead")
        return (now + delta).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither ISO-8601 (2025-06-01T18:00Z) nor relative (+6h, +3d, +90m)"
        ) from None
    # A naive time would be read as UTC by some and as local time by others: the difference is
    # a missed deadline, so make the customer say which.
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone; add Z or an offset such as +02:00"
        )
    return moment.astimezone(UTC)


def _price(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal amount") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative amount")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


# -- quote cache ------------------------------------------------------------------------------
# The API has no "GET quote", so `order QUOTE_ID` without an option can only pick the first
# option if this CLI remembers the quotes it printed.


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "subconscious" / "quotes.json"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_quote(quote: dict[str, Any]) -> None:
    path = _cache_path()
    now = datetime.now(UTC)
    cache = {}
    for quote_id, entry in _load_cache(path).items():
        try:
            if datetime.fromisoformat(entry["expires_at"]) > now:
                cache[quote_id] = entry
        except (KeyError, TypeError, ValueError):
            continue
    cache[str(quote["quote_id"])] = {
        "options": [str(o["option_id"]) for o in quote.get("options") or []],
        "expires_at": quote.get("expires_at") or (now + timedelta(days=1)).isoformat(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".quotes.", suffix=".part")
        with os.fdopen(fd, "w") as handle:
            json.dump(cache, handle)
        os.replace(temp, path)
    except OSError as error:  # the quote itself succeeded; only the shortcut is lost
        print(f"warning: could not remember the quote in {path}: {error}", file=sys.stderr)


def _first_option(quote_id: str) -> str | None:
    entry = _load_cache(_cache_path()).get(quote_id)
    options = entry.get("options") if isinstance(entry, dict) else None
    return str(options[0]) if isinstance(options, list) and options else None


# -- commands ---------------------------------------------------------------------------------


def _read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = [p.strip() for p in args.prompt or [] if p.strip()]
    if args.prompts_file:
        try:
            if args.prompts_file == "-":
                text = sys.stdin.read()
            else:
                text = Path(args.prompts_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read prompts file: {error}") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError("no prompts: give --prompt TEXT or --prompts-file FILE")
    return prompts


def build_quote_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``job`` and ``constraints`` of ``POST /v1/quotes`` from the ``quote`` flags."""
    job: dict[str, Any] = {
        "prompts": [{"text": text, "count": args.count} for text in _read_prompts(args)],
        "negative_prompt": args.negative,
        "model_family": args.family,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "cfg_scale": "7",
        "sampler": "Euler a",
        "seed": {"kind": "random"} if args.seed is None else {"kind": "fixed", "base": args.seed},
    }
    constraints: dict[str, Any] = {
        "deadline": args.deadline.isoformat(timespec="seconds") if args.deadline else None,
        "max_price_per_image_usd": str(args.max_price) if args.max_price is not None else None,
    }
    return job, constraints


def _cmd_quote(client: Client, args: argparse.Namespace) -> int:
    job, constraints = build_quote_request(args)
    quote = client.quote(job, constraints)
    _remember_quote(quote)
    if args.json:
        print_json(quote)
    else:
        print(format_quote(quote))
    return 0


def _cmd_order(client: Client, args: argparse.Namespace) -> int:
    option_id = args.option_id or _first_option(args.quote_id)
    if option_id is None:
        raise UsageError(
            f"quote {args.quote_id} was not quoted by this CLI here; give its OPTION_ID "
            "(the first column of `subconscious quote`)"
        )
    # Chosen here rather than inside the client so that it can be shown after a failure.
    key = args.idempotency_key or f"subc-{uuid.uuid4()}"
    try:
        order = client.order(args.quote_id, option_id, key)
    except ApiError as error:
        if error.status is None or error.status >= 500:
            print(
                f"note: the order may still have been placed; rerun with --idempotency-key {key} "
                "to get it without placing a second one",
                file=sys.stderr,
            )
        raise
    if args.json:
        print_json(order)
    else:
        print(format_order(order))
        print(f"follow with: subconscious status {order.get('order_id')} --watch")
    return 0


def _cmd_status(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        progress = Progress(sys.stderr)
        try:
            order = client.wait(
                args.order_id,
                timeout_s=args.timeout if args.timeout is not None else math.inf,
                poll_s=args.poll,
                on_progress=progress,
            )
        finally:
            progress.finish()
    else:
        order = client.status(args.order_id)
    if args.json:
        print_json(order)
    else:
        print(format_order(order))
    return 0


def _cmd_download(client: Client, args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    paths = client.download(args.order_id, directory, workers=args.workers)
    print(f"{len(paths)} PNGs in {directory}")
    return 0


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    order = client.cancel(args.order_id)
    if args.json:
        print_json(order)
    else:
        print(format_order(order))
    return 0


# -- parser -----------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Repeated on every subcommand with SUPPRESS defaults so they work on either side of the
    # subcommand name without a subcommand's default overwriting a value given before it.
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--api-url",
        default=default,
        help=f"API base URL (env {API_URL_ENV}, else {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=default,
        help=f"API key (env {API_KEY_ENV}; prefer the variable, a flag shows up in ps)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subconscious", description="Order batches of text-to-image renders."
    )
    _connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _connection_options(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    quote = command("quote", _cmd_quote, "price a job: options by deadline and budget")
    quote.add_argument("--prompt", action="append", metavar="TEXT", help="repeatable")
    quote.add_argument("--prompts-file", metavar="FILE", help="one prompt per line; - for stdin")
    quote.add_argument(
        "--count", type=_int_at_least(1), required=True, metavar="N", help="images per prompt"
    )
    quote.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    quote.add_argument("--width", type=_int_at_least(1), default=512)
    quote.add_argument("--height", type=_int_at_least(1), default=512)
    quote.add_argument("--steps", type=_int_at_least(1), default=20)
    quote.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    quote.add_argument(
        "--seed", type=_int_at_least(0), metavar="N", help="fixed base seed (default: random)"
    )
    quote.add_argument(
        "--deadline", type=parse_deadline, help="ISO-8601 with timezone, or +6h, +3d, +90m"
    )
    quote.add_argument("--max-price", type=_price, metavar="USD", help="per image, e.g. 0.03")
    quote.add_argument("--json", action="store_true", help="print the API's JSON")

    order = command("order", _cmd_order, "accept an option of a quote")
    order.add_argument("quote_id", metavar="QUOTE_ID")
    order.add_argument("option_id", metavar="OPTION_ID", nargs="?", help="default: the first")
    order.add_argument("--idempotency-key", metavar="K", help="8..128 chars; default: a new one")
    order.add_argument("--json", action="store_true")

    status = command("status", _cmd_status, "an order's state, progress and spend")
    status.add_argument("order_id", metavar="ORDER_ID")
    status.add_argument("--watch", action="store_true", help="follow until the order ends")
    status.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds per poll")
    status.add_argument("--timeout", type=float, metavar="S", help="give up watching after S")
    status.add_argument("--json", action="store_true")

    download = command("download", _cmd_download, "save every image of an order as PNG")
    download.add_argument("order_id", metavar="ORDER_ID")
    download.add_argument("dir", metavar="DIR")
    download.add_argument("--workers", type=_int_at_least(1), default=8)

    cancel = command("cancel", _cmd_cancel, "cancel an order; finished images stay")
    cancel.add_argument("order_id", metavar="ORDER_ID")
    cancel.add_argument("--json", action="store_true")
    return parser


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and on bad flags; main() returns
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    api_url = args.api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        _error(f"no API key: set {API_KEY_ENV} or pass --api-key")
        return 2
    handler: Handler = args.handler
    try:
        with Client(api_url, api_key) as client:
            return handler(client, args)
    except ApiError as error:
        _error(f"{error.code}: {error.message}")
        for detail in error.details:
            print(f"  {detail.get('field', '?')}: {detail.get('message', '')}", file=sys.stderr)
        return 1
    except UsageError as error:
        _error(str(error))
        return 2
    except TimeoutError as error:  # before OSError, of which it is a subclass
        _error(f"timeout: {error}")
        return 1
    except OSError as error:
        _error(str(error))
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
