"""HTTP client for the ordering API: quote a job, accept an option, follow it, fetch the images.

Answers come back as the typed models of :mod:`subconscious_cli.models` (which also read like
the JSON objects they came from). Money is :class:`~decimal.Decimal` throughout: any JSON
number with a fraction is parsed as one, so no amount ever passes through a float.

:meth:`Client.run` is the whole flow in one call: quote, choose (and confirm an option outside
the stated terms), order, watch, download with a ``manifest.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from subconscious_cli.deadlines import parse_deadline
from subconscious_cli.models import (
    TERMINAL_STATES,
    ImageOut,
    ImagePage,
    MarketView,
    OrderOut,
    OrderPage,
    QuoteOption,
    QuoteOut,
    RunResult,
)
from subconscious_cli.version import __version__

API_URL_ENV = "SUBCONSCIOUS_API_URL"
API_KEY_ENV = "SUBCONSCIOUS_API_KEY"
DEFAULT_API_URL = "http://127.0.0.1:8600"
MANIFEST = "manifest.jsonl"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 429 is API Gateway throttling; 409 request_in_progress is the server telling us the first try
# of this very Idempotency-Key is still running, so asking again shortly is the documented answer.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ORDER_RETRY_CODES = frozenset({"request_in_progress"})
_MAX_RETRY_AFTER_S = 30.0
_USER_AGENT = f"subconscious-cli/{__version__}"
Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An error answer from the API, or no answer at all (``status`` is ``None`` then)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        *,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details: list[dict[str, str]] = list(details or [])
        # Named in the message only when the answer did not come from this API (no answer at
        # all, or a proxy's page): then the address is what the customer got wrong.
        self.url = url
        super().__init__(status, code, message, self.details)

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.details:
            fields = "; ".join(
                f"{d.get('field', '?')}: {d.get('message', '')}" for d in self.details
            )
            text += f" ({fields})"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        error = cls._from_body(response)
        if error.code.startswith("http_"):
            error.message += f" (from {response.request.method} {response.request.url})"
            error.url = str(response.request.url)
        return error

    @classmethod
    def _from_body(cls, response: httpx.Response) -> ApiError:
        status = response.status_code
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raw_details = error.get("details")
            details = [
                {"field": str(d.get("field", "")), "message": str(d.get("message", ""))}
                for d in (raw_details if isinstance(raw_details, list) else [])
                if isinstance(d, dict)
            ]
            return cls(
                status,
                str(error.get("code") or f"http_{status}"),
                str(error.get("message") or response.reason_phrase),
                details,
            )
        # API Gateway answers some failures itself (throttling, a missing route) as
        # {"message": "..."}, never in our envelope.
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return cls(status, f"http_{status}", body["message"])
        snippet = response.text[:200].strip() if body is None else ""
        return cls(status, f"http_{status}", snippet or response.reason_phrase or "no message")


def _encode(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes sent to the API must carry a timezone")
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _decode(response: httpx.Response) -> dict[str, Any]:
    where = f"{response.request.method} {response.request.url}"
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError as error:
        raise ApiError(
            response.status_code,
            "bad_response",
            f"{where} answered non-JSON: is this the API's URL?",
            url=str(response.request.url),
        ) from error
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "bad_response", f"{where} answered a non-object")
    return body


def _typed(model: type[Model], body: dict[str, Any], what: str) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            None, "bad_response", f"the API's {what} does not parse: {field}: {first['msg']}"
        ) from error


def _retry_after(response: httpx.Response | None) -> float:
    if response is None:
        return 0.0
    try:
        return min(max(float(response.headers.get("retry-after", "0")), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:  # an HTTP date; rare enough that our own backoff will do
        return 0.0


def _has_png_signature(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (or a rerun's skip check) must never see half an image, so the bytes land in a
    # hidden temp file in the same directory and appear under their name in one rename.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class WaitTimeout(TimeoutError):
    """The order was still open when the wait ran out; ``order`` is its last status."""

    def __init__(self, order: OrderOut, timeout_s: float) -> None:
        self.order = order
        super().__init__(
            f"order {order.order_id} still {order.state} "
            f"({order.images_done}/{order.images_total}) after {timeout_s:g} s"
        )


class OutsideTerms(Exception):
    """The option chosen misses the deadline or the budget the quote was asked for, and nobody
    agreed to that; nothing was ordered."""

    def __init__(self, quote: QuoteOut, option: QuoteOption) -> None:
        self.quote = quote
        self.option = option
        super().__init__(
            f"option {option.option_id} ({option.label}) {terms_missed(quote, option)}; "
            "nothing was ordered"
        )


def terms_missed(quote: QuoteOut, option: QuoteOption) -> str:
    """What an option fails of the quote's terms, in the customer's words."""
    missed = []
    cap = quote.constraints.max_price_per_image_usd
    if not option.meets_budget:
        over = f", over your ${cap}" if cap is not None else ""
        missed.append(f"costs ${option.price_per_image_usd}/image{over}")
    if not option.meets_deadline:
        by = quote.constraints.deadline
        after = f", after your deadline {by.astimezone():%Y-%m-%d %H:%M %Z}" if by else ""
        missed.append(f"completes {option.completes_at.astimezone():%Y-%m-%d %H:%M %Z}{after}")
    return " and ".join(missed) or "keeps your terms"


def choose_option(quote: QuoteOut, wanted: str | None = None) -> QuoteOption:
    """``wanted`` (an option id or a label), else the cheapest option within the quote's terms,
    else the API's first option (which then needs the customer's agreement)."""
    if not quote.options:
        raise ApiError(None, "no_options", f"quote {quote.quote_id} has no options")
    if wanted is not None:
        for option in quote.options:
            if wanted in (option.option_id, option.label):
                return option
        known = ", ".join(f"{o.option_id} ({o.label})" for o in quote.options)
        raise ApiError(
            None, "unknown_option", f"quote {quote.quote_id} has no option {wanted!r}: {known}"
        )
    within = [o for o in quote.options if o.within_terms]
    if within:
        return min(within, key=lambda o: (o.price_per_image_usd, o.completes_at))
    return quote.options[0]


def image_name(image: ImageOut) -> str:
    # int() so that a name can only ever be digits: the server's fields cannot steer the path.
    return f"{int(image.prompt_index):03d}-{int(image.seed)}.png"


def write_manifest(directory: Path, order_id: str, files: dict[Path, ImageOut]) -> Path:
    """Rewrite ``directory/manifest.jsonl`` with one line per file of this order, keeping the
    lines of other orders downloaded into the same directory."""
    path = directory / MANIFEST
    if not files and not path.exists():
        return path
    kept: list[str] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("order_id") != order_id:
                    kept.append(line)
            except (ValueError, AttributeError):
                continue
    ours = [
        json.dumps(
            {
                "file": file.name,
                "prompt": image.prompt,
                "prompt_index": image.prompt_index,
                "seed": image.seed,
                "order_id": order_id,
            },
            ensure_ascii=False,
        )
        for file, image in sorted(files.items())
    ]
    _write_atomically(path, "".join(f"{line}\n" for line in kept + ours).encode())
    return path


class _Collected:
    """A download's finished fetches: the files in place (with their images) and the errors."""

    def __init__(self, on_file: Callable[[int], None] | None) -> None:
        self.done: dict[Path, ImageOut] = {}
        self.errors: list[BaseException] = []
        self.pending: dict[Future[Path], ImageOut] = {}
        self._on_file = on_file

    def collect(self, finished: Iterable[Future[Path]]) -> None:
        for future in finished:
            image = self.pending.pop(future)
            error = future.exception()
            if error is not None:
                self.errors.append(error)
                continue
            self.done[future.result()] = image
            if self._on_file is not None:
                self._on_file(len(self.done))


class Client:
    """One API key against one API. Thread-safe for reads; use as a context manager."""

    retries = 3
    retry_backoff_s = 0.5
    download_retries = 2

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout_s: float = 30,
        http: httpx.Client | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        self._base = api_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout_s)

    def __repr__(self) -> str:
        return f"Client({self._base!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for ``$SUBCONSCIOUS_API_URL`` (default: the local stack) with the key in
        ``$SUBCONSCIOUS_API_KEY``."""
        key = os.environ.get(API_KEY_ENV)
        if not key:
            raise ValueError(f"no API key: set {API_KEY_ENV}")
        return cls(os.environ.get(API_URL_ENV) or DEFAULT_API_URL, key, **kwargs)

    # -- API calls ---------------------------------------------------------------------------

    def quote(self, job: dict[str, Any], constraints: dict[str, Any] | None = None) -> QuoteOut:
        """Price ``job``; the answer lists options, each with a price and a completion time."""
        body = {"job": job, "constraints": constraints or {}}
        return _typed(QuoteOut, self._call("POST", "/v1/quotes", body=body), "quote")

    def order(
        self,
        quote_id: str,
        option_id: str,
        idempotency_key: str | None = None,
        *,
        accept_outside_terms: bool = False,
    ) -> OrderOut:
        """Accept one option of a quote. Retried on transient failures under one idempotency
        key, so a retry after a lost answer returns the same order instead of a second one.

        The API refuses an option that misses the quote's deadline or budget (``422
        outside_terms``) unless ``accept_outside_terms``: pass it only once the customer has
        agreed to that option's terms."""
        key = idempotency_key or f"subc-{uuid.uuid4()}"
        body: dict[str, Any] = {"quote_id": quote_id, "option_id": option_id}
        if accept_outside_terms:
            body["accept_outside_terms"] = True
        answer = self._call(
            "POST",
            "/v1/orders",
            body=body,
            headers={"Idempotency-Key": key},
            retry=True,
            retry_codes=_ORDER_RETRY_CODES,
        )
        return _typed(OrderOut, answer, "order")

    def status(self, order_id: str) -> OrderOut:
        return _typed(OrderOut, self._call("GET", f"/v1/orders/{order_id}", retry=True), "order")

    def cancel(self, order_id: str) -> OrderOut:
        return _typed(OrderOut, self._call("DELETE", f"/v1/orders/{order_id}"), "order")

    def list_orders(
        self, *, state: str | None = None, limit: int = 20, next_token: str | None = None
    ) -> OrderPage:
        """One page of the caller's orders, newest first; ``next_token`` asks for the next."""
        params: dict[str, str | int] = {"limit": limit}
        if state:
            params["state"] = state
        if next_token:
            params["next_token"] = next_token
        page = self._call("GET", "/v1/orders", params=params, retry=True)
        return _typed(OrderPage, page, "order list")

    def market(self) -> MarketView:
        """Offers on the GPU markets now, grouped by GPU, with $/image for each model family."""
        return _typed(MarketView, self._call("GET", "/v1/market", retry=True), "market")

    def images(self, order_id: str, page_size: int = 100) -> Iterator[ImageOut]:
        """Every image rendered so far, page by page; a page is fetched only when needed, so
        its presigned links are fresh when the caller gets to them."""
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if token is not None:
                params["next_token"] = token
            body = self._call("GET", f"/v1/orders/{order_id}/images", params=params, retry=True)
            page = _typed(ImagePage, body, "image page")
            yield from page.images
            token = page.next_token
            if not token:
                return
            if token in seen:  # a server bug must not turn into an endless download
                raise ApiError(None, "bad_response", "the API repeated a next_token")
            seen.add(token)

    def wait(
        self,
        order_id: str,
        *,
        timeout_s: float,
        poll_s: float = 1.0,
        on_progress: Callable[[OrderOut], None] | None = None,
    ) -> OrderOut:
        """Poll until the order reaches a terminal state and return it; ``on_progress`` sees
        every poll. Raises :class:`WaitTimeout` (carrying the last status) when ``timeout_s``
        passes first."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = self.status(order_id)
            if on_progress is not None:
                on_progress(order)
            if order.state in TERMINAL_STATES:
                return order
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(order, timeout_s)
            time.sleep(min(poll_s, remaining))

    def download(
        self,
        order_id: str,
        directory: Path | str,
        *,
        workers: int = 8,
        on_file: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Fetch every image of the order into ``directory`` as ``<prompt>-<seed>.png`` and
        write ``manifest.jsonl`` there: one line per file (file, prompt, prompt_index, seed,
        order_id). ``on_file`` is called with the number of files in place after each one.

        Files already there with a PNG signature are kept, so a rerun resumes an interrupted
        download. On a failure the images that did arrive stay (and are in the manifest), and
        the first error is raised.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        got = _Collected(on_file)
        # A separate client with no default headers: presigned links carry their own
        # authorisation, and the API key must never travel to the storage host.
        try:
            with (
                self._storage_client(workers) as storage,
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool,
            ):
                for image in self.images(order_id):
                    if got.errors:
                        break
                    got.pending[pool.submit(self._fetch_image, storage, image, directory)] = image
                    # Bounded so pages are listed only as fast as images download, keeping
                    # links from expiring in a queue on a large order.
                    if len(got.pending) >= 2 * workers:
                        got.collect(wait(set(got.pending), return_when=FIRST_COMPLETED).done)
                got.collect(wait(set(got.pending)).done)
        finally:
            write_manifest(directory, order_id, got.done)
        if got.errors:
            raise got.errors[0]
        return sorted(got.done)

    def run(
        self,
        prompts: Iterable[str],
        *,
        count: int = 1,
        out_dir: Path | str,
        deadline: datetime | str | None = None,
        max_price: Decimal | str | None = None,
        option: str | None = None,
        job: dict[str, Any] | None = None,
        accept_outside_terms: bool = False,
        confirm: Callable[[QuoteOut, QuoteOption], bool] | None = None,
        timeout_s: float = math.inf,
        poll_s: float = 2.0,
        on_quote: Callable[[QuoteOut, QuoteOption], None] | None = None,
        on_order: Callable[[OrderOut], None] | None = None,
        on_progress: Callable[[OrderOut], None] | None = None,
        on_file: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Quote ``count`` images of each prompt, choose an option, order it, watch it to the
        end and download its images and manifest into ``out_dir``.

        ``deadline``: a datetime or any form :func:`~subconscious_cli.deadlines.parse_deadline`
        reads (``"eod"``, ``"tomorrow 09:00"``, ``"+6h"``). ``max_price``: USD per image.
        ``option``: an option id or label; by default the cheapest option that keeps both the
        deadline and the budget. ``job``: further job fields (``sampler``, ``cfg_scale``,
        ``steps``, ``model_family``, ...). An option outside those terms is ordered only if
        ``accept_outside_terms`` or ``confirm(quote, option)`` says yes; otherwise
        :class:`OutsideTerms` is raised and nothing is ordered.
        """
        when = parse_deadline(deadline) if isinstance(deadline, str) else deadline
        spec = {**(job or {}), "prompts": [{"text": p, "count": count} for p in prompts]}
        constraints = {
            "deadline": when,
            "max_price_per_image_usd": None if max_price is None else Decimal(str(max_price)),
        }
        quote = self.quote(spec, constraints)
        chosen = choose_option(quote, option)
        if on_quote is not None:
            on_quote(quote, chosen)
        outside = not chosen.within_terms
        if outside and not accept_outside_terms and not (confirm and confirm(quote, chosen)):
            raise OutsideTerms(quote, chosen)
        order = self.order(quote.quote_id, chosen.option_id, accept_outside_terms=outside)
        if on_order is not None:
            on_order(order)
        order = self.wait(
            order.order_id, timeout_s=timeout_s, poll_s=poll_s, on_progress=on_progress
        )
        files = self.download(order.order_id, out_dir, on_file=on_file) if order.images_done else []
        return RunResult(
            quote=quote,
            option=chosen,
            order=order,
            files=[str(f) for f in files],
            manifest=str(Path(out_dir) / MANIFEST) if files else None,
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _storage_client(self, workers: int) -> httpx.Client:
        return httpx.Client(
            timeout=self._timeout_s,
            follow_redirects=True,
            headers={"user-agent": _USER_AGENT},
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )

    def _fetch_image(self, storage: httpx.Client, image: ImageOut, directory: Path) -> Path:
        path = directory / image_name(image)
        if _has_png_signature(path):
            return path
        # Messages name the file, never the link: a presigned URL is a bearer credential.
        failure = ApiError(None, "download_failed", f"{path.name}: not attempted")
        for attempt in range(self.download_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt - 1))
            try:
                response = storage.get(image.url)
            except httpx.TransportError as error:
                failure = ApiError(None, "download_failed", f"{path.name}: {type(error).__name__}")
                continue
            if response.status_code != 200:
                failure = ApiError(
                    response.status_code,
                    "download_failed",
                    f"{path.name}: storage answered HTTP {response.status_code}",
                )
                continue
            data = response.content
            if not data.startswith(PNG_SIGNATURE):
                raise ApiError(200, "bad_image", f"{path.name}: the bytes are not a PNG")
            _write_atomically(path, data)
            return path
        raise failure

    def _backoff(self, attempt: int) -> float:
        base = self.retry_backoff_s * (1 << attempt)
        return base + random.uniform(0, base / 2)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
        retry_codes: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        all_headers = {"x-api-key": self._api_key, "accept": "application/json"}
        all_headers["user-agent"] = _USER_AGENT
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, default=_encode).encode()
            all_headers["content-type"] = "application/json"
        all_headers.update(headers or {})
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.request(
                    method,
                    self._base + path,
                    content=content,
                    params=params,
                    headers=all_headers,
                    timeout=self._timeout_s,
                )
            except httpx.TransportError as error:
                if last:
                    url = self._base + path
                    raise ApiError(
                        None,
                        "connection_error",
                        f"no answer from {url} ({type(error).__name__}: {error}); "
                        "is the API URL right?",
                        url=url,
                    ) from error
                time.sleep(self._backoff(attempt))
                continue
            if response.is_success:
                return _decode(response)
            api_error = ApiError.from_response(response)
            transient = response.status_code in _RETRY_STATUSES or api_error.code in retry_codes
            if last or not transient:
                raise api_error
            time.sleep(max(self._backoff(attempt), _retry_after(response)))
        raise AssertionError("unreachable: the last attempt returns or raises")
