"""``subconscious``: quote, order, watch, download and cancel text-to-image jobs, or all of it
at once with ``subconscious run``.

Exit status: 0 on success, 1 when the API (or the network, or the disk) says no, 2 for a usage
error such as a missing API key or an option outside your terms without ``--yes``, 3 when a
download finds its order still open (what is there so far was saved).
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
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from subconscious_cli.client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    MANIFEST,
    ApiError,
    Client,
    OutsideTerms,
    WaitTimeout,
    choose_option,
    terms_missed,
)
from subconscious_cli.deadlines import FORMS, DeadlineError, describe, parse_deadline
from subconscious_cli.formatting import (
    Progress,
    format_market,
    format_order,
    format_orders,
    format_quote,
    gpu_label,
    print_json,
)
from subconscious_cli.models import OrderOut, QuoteOption, QuoteOut
from subconscious_cli.version import __version__

EXIT_UNFINISHED = 3
SAMPLERS = (
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DDIM",
    "UniPC",
)
STATES = (
    "quoted",
    "accepted",
    "rendering",
    "completed",
    "partially_completed",
    "failed",
    "cancelled",
    "expired",
)
_ORDER_IN_MESSAGE = re.compile(r"\border (o-[0-9A-Za-z_-]+)")

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """A mistake in the command line that argparse alone cannot see; exits 2."""


# -- argument types ---------------------------------------------------------------------------


def _deadline(text: str) -> datetime:
    try:
        return parse_deadline(text)
    except DeadlineError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
# The API has no "GET quote", so `order QUOTE_ID` without an option, and the check of an option
# against the quote's terms before ordering it, need this CLI to remember the quotes it printed.


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "subconscious" / "quotes.json"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_quote(quote: QuoteOut) -> None:
    path = _cache_path()
    now = datetime.now(UTC)
    cache = {}
    for quote_id, entry in _load_cache(path).items():
        try:
            if datetime.fromisoformat(entry["expires_at"]) > now:
                cache[quote_id] = entry
        except (KeyError, TypeError, ValueError):
            continue
    cache[quote.quote_id] = quote.to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".quotes.", suffix=".part")
        with os.fdopen(fd, "w") as handle:
            json.dump(cache, handle)
        os.replace(temp, path)
    except OSError as error:  # the quote itself succeeded; only the shortcut is lost
        print(f"warning: could not remember the quote in {path}: {error}", file=sys.stderr)


def _remembered(quote_id: str) -> QuoteOut | None:
    entry = _load_cache(_cache_path()).get(quote_id)
    try:
        return QuoteOut.model_validate(entry) if isinstance(entry, dict) else None
    except ValidationError:  # written by an older version of this CLI
        return None


# -- confirmation -----------------------------------------------------------------------------


def _agreed(args: argparse.Namespace, what: str) -> bool:
    """``--yes``, or the customer's ``y`` on a terminal; never a guess on a pipe."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        return False
    print(f"{what}. Order it anyway? [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in {"y", "yes"}


def _refused(what: str) -> UsageError:
    return UsageError(f"{what}; nothing was ordered. Rerun with --yes to order it anyway")


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


def _job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job's fields other than its prompts, from the flags."""
    return {
        "negative_prompt": args.negative,
        "model_family": args.family,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "cfg_scale": str(args.cfg),
        "sampler": args.sampler,
        "seed": {"kind": "random"} if args.seed is None else {"kind": "fixed", "base": args.seed},
    }


def build_quote_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``job`` and ``constraints`` of ``POST /v1/quotes`` from the ``quote`` flags."""
    job: dict[str, Any] = {
        "prompts": [{"text": text, "count": args.count} for text in _read_prompts(args)],
        **_job_fields(args),
    }
    constraints: dict[str, Any] = {
        "deadline": args.deadline.isoformat(timespec="seconds") if args.deadline else None,
        "max_price_per_image_usd": str(args.max_price) if args.max_price is not None else None,
    }
    return job, constraints


def _echo_deadline(args: argparse.Namespace) -> None:
    if args.deadline is not None:
        print(f"deadline {describe(args.deadline)}", file=sys.stderr)


def _cmd_quote(client: Client, args: argparse.Namespace) -> int:
    job, constraints = build_quote_request(args)
    _echo_deadline(args)
    quote = client.quote(job, constraints)
    _remember_quote(quote)
    if args.json:
        print_json(quote)
    else:
        print(format_quote(quote))
    return 0


def _probe_quote(client: Client, quote_id: str) -> None:
    """For a quote this CLI did not print: ask the API about it with an option no quote has,
    so a mistyped id is named as such (404), an accepted or expired quote says so, and only a
    quote that exists asks for its OPTION_ID. Nothing can be ordered by it."""
    try:
        client.order(quote_id, "-")
    except ApiError as error:
        if error.status == 422 and any(d.get("field") == "option_id" for d in error.details):
            raise UsageError(
                f"quote {quote_id} was not quoted by this CLI here; give its OPTION_ID "
                "(the first column of `subconscious quote`)"
            ) from None
        raise
    raise ApiError(None, "bad_response", "the API accepted option '-'")  # pragma: no cover


def _choose(client: Client, args: argparse.Namespace) -> tuple[str, bool]:
    """The option to order, and whether the customer agreed to its being outside the terms."""
    quote = _remembered(args.quote_id)
    if quote is None:
        if args.option_id is None:
            _probe_quote(client, args.quote_id)
        return args.option_id, False
    option = quote.option(args.option_id) if args.option_id else choose_option(quote)
    if option is None:  # not an option of that quote: the API says so
        return args.option_id, False
    if option.within_terms:
        return option.option_id, False
    what = f"option {option.option_id} ({option.label}) {terms_missed(quote, option)}"
    if not _agreed(args, what):
        raise _refused(what)
    return option.option_id, True


def _place(client: Client, args: argparse.Namespace, option_id: str, agreed: bool) -> OrderOut:
    try:
        return client.order(
            args.quote_id, option_id, args.idempotency_key, accept_outside_terms=agreed
        )
    except ApiError as error:
        # The API knows the terms even when this CLI does not (a quote made elsewhere).
        if error.code != "outside_terms" or agreed:
            raise
        if not _agreed(args, error.message):
            raise _refused(error.message) from None
        return client.order(args.quote_id, option_id, accept_outside_terms=True)


def _cmd_order(client: Client, args: argparse.Namespace) -> int:
    # Chosen here rather than inside the client so that it can be shown after a failure.
    args.idempotency_key = args.idempotency_key or f"subc-{uuid.uuid4()}"
    try:
        option_id, agreed = _choose(client, args)
        order = _place(client, args, option_id, agreed)
    except ApiError as error:
        _explain_order_error(error, args)
        raise
    if args.json:
        print_json(order)
    else:
        print(format_order(order))
        print(f"follow with: subconscious status {order.order_id} --watch")
    return 0


def _explain_order_error(error: ApiError, args: argparse.Namespace) -> None:
    if error.status == 404:
        error.code = "unknown_quote"
        error.message = (
            f"no quote {args.quote_id} for this API key: check the id `subconscious quote` "
            f"printed ({error.message})"
        )
    elif error.status == 409 and (won := _ORDER_IN_MESSAGE.search(error.message)):
        error.message += f"; follow it with: subconscious status {won.group(1)} --watch"
    elif error.status is None or error.status >= 500:
        print(
            "note: the order may still have been placed; rerun with --idempotency-key "
            f"{args.idempotency_key} to get it without placing a second one",
            file=sys.stderr,
        )


def _watch(client: Client, order_id: str, args: argparse.Namespace) -> OrderOut:
    progress = Progress(sys.stderr)
    try:
        return client.wait(
            order_id,
            timeout_s=args.timeout if args.timeout is not None else math.inf,
            poll_s=args.poll,
            on_progress=progress,
        )
    finally:
        progress.finish()


def _cmd_status(client: Client, args: argparse.Namespace) -> int:
    try:
        order = _watch(client, args.order_id, args) if args.watch else client.status(args.order_id)
    except WaitTimeout as timeout:
        # what was seen last is still the answer a script wants, beside the exit status
        _show_order(timeout.order, args.json)
        raise
    _show_order(order, args.json)
    return 0


def _show_order(order: OrderOut, as_json: bool) -> None:
    if as_json:
        print_json(order)
    else:
        print(format_order(order))


def _download(client: Client, order: OrderOut, directory: Path, workers: int) -> list[Path]:
    progress = Progress(sys.stderr)
    total = order.images_done
    step = max(1, total // 10)

    def on_file(count: int) -> None:
        # every file on a terminal (redrawn in place), every tenth of the order on a log
        if progress.tty or count % step == 0 or count == total:
            progress.show(f"downloading {count}/{total} PNGs into {directory}")

    try:
        return client.download(order.order_id, directory, workers=workers, on_file=on_file)
    finally:
        progress.finish()


def _report_download(order: OrderOut, paths: list[Path], directory: Path) -> int:
    """Exit 0 only when the order has ended and every image it delivered is here."""
    listed = f", listed in {directory / MANIFEST}" if paths else ""
    print(f"{len(paths)} PNGs in {directory}{listed}")
    if order.ended and not order.images_done:
        _error(f"order {order.order_id} ended {order.state} ({order.end_reason}) with no images")
        return 1
    if not order.ended:
        _error(
            f"order {order.order_id} is still {order.state} "
            f"({order.images_done}/{order.images_total} rendered): this download is "
            f"incomplete; run it again once the order ends "
            f"(subconscious status {order.order_id} --watch)"
        )
        return EXIT_UNFINISHED
    if len(paths) < order.images_done:  # pragma: no cover - the API listed fewer than it counted
        _error(f"the API listed {len(paths)} images of {order.images_done} delivered")
        return 1
    if order.images_done < order.images_total:
        print(
            f"note: order {order.order_id} ended {order.state} ({order.end_reason}): "
            f"{order.images_done} of {order.images_total} images, charged "
            f"${order.charge_usd}",
            file=sys.stderr,
        )
    return 0


def _cmd_download(client: Client, args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    order = client.status(args.order_id)
    paths = _download(client, order, directory, args.workers)
    return _report_download(order, paths, directory)


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    _show_order(client.cancel(args.order_id), args.json)
    return 0


def _cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.list_orders(state=args.state, limit=args.limit, next_token=args.next_token)
    if args.json:
        print_json(page)
    else:
        print(format_orders(page))
    return 0


def _cmd_market(client: Client, args: argparse.Namespace) -> int:
    market = client.market()
    if args.json:
        print_json(market)
    else:
        print(format_market(market))
    return 0


def _cmd_run(client: Client, args: argparse.Namespace) -> int:
    """quote -> confirm -> order -> watch -> download, in one command."""
    prompts = _read_prompts(args)
    _echo_deadline(args)

    def show_quote(quote: QuoteOut, option: QuoteOption) -> None:
        _remember_quote(quote)
        print(format_quote(quote, hint=False), file=sys.stderr)
        print(
            f"chosen: {option.option_id} ({option.label}) {gpu_label(option)}, "
            f"${option.price_per_image_usd}/image, ${option.total_usd} in all, "
            f"completes by {describe(option.completes_at)}",
            file=sys.stderr,
        )

    def confirm(quote: QuoteOut, option: QuoteOption) -> bool:
        return _agreed(
            args, f"option {option.option_id} ({option.label}) {terms_missed(quote, option)}"
        )

    def on_order(order: OrderOut) -> None:
        print(f"ordered {order.order_id}", file=sys.stderr)

    progress = Progress(sys.stderr)
    try:
        result = client.run(
            prompts,
            count=args.count,
            out_dir=args.out,
            deadline=args.deadline,
            max_price=args.max_price,
            option=args.option,
            job=_job_fields(args),
            confirm=confirm,
            timeout_s=args.timeout if args.timeout is not None else math.inf,
            poll_s=args.poll,
            on_quote=show_quote,
            on_order=on_order,
            on_progress=progress,
        )
    except OutsideTerms as refused:
        raise _refused(str(refused).removesuffix("; nothing was ordered")) from None
    finally:
        progress.finish()
    if args.json:
        print_json(result.order)
    else:
        print(format_order(result.order))
    return _report_download(result.order, [Path(f) for f in result.files], Path(args.out))


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


def _job_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--prompt", action="append", metavar="TEXT", help="repeatable")
    sub.add_argument("--prompts-file", metavar="FILE", help="one prompt per line; - for stdin")
    sub.add_argument(
        "--count", type=_int_at_least(1), required=True, metavar="N", help="images per prompt"
    )
    sub.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    sub.add_argument("--width", type=_int_at_least(1), default=512)
    sub.add_argument("--height", type=_int_at_least(1), default=512)
    sub.add_argument("--steps", type=_int_at_least(1), default=20)
    sub.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="Euler a",
        metavar="NAME",
        help=f"one of: {', '.join(SAMPLERS)} (default: Euler a)",
    )
    sub.add_argument(
        "--cfg",
        type=_price,
        default=Decimal("7"),
        metavar="SCALE",
        help="classifier-free guidance scale (default 7)",
    )
    sub.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    sub.add_argument(
        "--seed", type=_int_at_least(0), metavar="N", help="fixed base seed (default: random)"
    )
    sub.add_argument("--deadline", type=_deadline, help=FORMS + "; local times in this zone")
    sub.add_argument("--max-price", type=_price, metavar="USD", help="per image, e.g. 0.03")


def _watch_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds per poll")
    sub.add_argument("--timeout", type=float, metavar="S", help="give up watching after S")


def _yes_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="order an option outside your deadline or budget without asking",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subconscious", description="Order batches of text-to-image renders."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _connection_options(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", _cmd_run, "quote, order, watch and download in one go")
    _job_options(run)
    run.add_argument("--out", required=True, metavar="DIR", help="where the PNGs go")
    run.add_argument("--option", metavar="ID|LABEL", help="default: cheapest within your terms")
    _yes_option(run)
    _watch_options(run)
    run.add_argument("--json", action="store_true", help="print the final order's JSON")

    quote = command("quote", _cmd_quote, "price a job: options by deadline and budget")
    _job_options(quote)
    quote.add_argument("--json", action="store_true", help="print the API's JSON")

    order = command("order", _cmd_order, "accept an option of a quote")
    order.add_argument("quote_id", metavar="QUOTE_ID")
    order.add_argument(
        "option_id", metavar="OPTION_ID", nargs="?", help="default: cheapest within your terms"
    )
    order.add_argument("--idempotency-key", metavar="K", help="8..128 chars; default: a new one")
    _yes_option(order)
    order.add_argument("--json", action="store_true")

    status = command("status", _cmd_status, "an order's state, progress and charge")
    status.add_argument("order_id", metavar="ORDER_ID")
    status.add_argument("--watch", action="store_true", help="follow until the order ends")
    _watch_options(status)
    status.add_argument("--json", action="store_true")

    listing = command("list", _cmd_list, "your orders, newest first")
    listing.add_argument("--state", choices=STATES, help="only orders in this state")
    listing.add_argument("--limit", type=_int_at_least(1), default=20, metavar="N")
    listing.add_argument("--next-token", metavar="T", help="the next page (printed below one)")
    listing.add_argument("--json", action="store_true")

    download = command("download", _cmd_download, "save every image of an order as PNG")
    download.add_argument("order_id", metavar="ORDER_ID")
    download.add_argument("dir", metavar="DIR")
    download.add_argument("--workers", type=_int_at_least(1), default=8)

    cancel = command("cancel", _cmd_cancel, "cancel an order; finished images stay")
    cancel.add_argument("order_id", metavar="ORDER_ID")
    cancel.add_argument("--json", action="store_true")

    market = command("market", _cmd_market, "GPU offers now: $/hour and $/image by GPU")
    market.add_argument("--json", action="store_true")
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
