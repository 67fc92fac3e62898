"""HTTP client for the ordering API: quote a job, accept an option, follow it, fetch the images.

Responses come back as plain ``dict`` objects shaped like the API's JSON. Money stays in the
decimal strings the API sends; any JSON number with a fraction is parsed as
:class:`~decimal.Decimal`, so no amount ever passes through a float.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

TERMINAL_STATES = frozenset({"completed", "partially_completed", "failed", "cancelled", "expired"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 429 is API Gateway throttling; 409 request_in_progress is the server telling us the first try
# of this very Idempotency-Key is still running, so asking again shortly is the documented answer.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ORDER_RETRY_CODES = frozenset({"request_in_progress"})
_MAX_RETRY_AFTER_S = 30.0
_USER_AGENT = "subconscious-cli/0.1"


class ApiError(Exception):
    """An error answer from the API, or no answer at all (``status`` is ``None`` then)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details: list[dict[str, str]] = list(details or [])
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
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError as error:
        raise ApiError(response.status_code, "bad_response", "the API answered non-JSON") from error
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "bad_response", "the API answered a non-object")
    return body


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

    # -- API calls ---------------------------------------------------------------------------

    def quote(
        self, job: dict[str, Any], constraints: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Price ``job``; the answer lists options, each with a price and a completion time."""
        body = {"job": job, "constraints": constraints or {}}
        return self._call("POST", "/v1/quotes", body=body)

    def order(
        self,
        quote_id: str,
        option_id: str,
        idempotency_key: str | None = None,
        *,
        accept_outside_terms: bool = False,
    ) -> dict[str, Any]:
        """Accept one option of a quote. Retried on transient failures under one idempotency
        key, so a retry after a lost answer returns the same order instead of a second one.
        An option that misses the quote's deadline or price cap needs ``accept_outside_terms``."""
        key = idempotency_key or f"subc-{uuid.uuid4()}"
        body: dict[str, Any] = {"quote_id": quote_id, "option_id": option_id}
        if accept_outside_terms:
            body["accept_outside_terms"] = True
        return self._call(
            "POST",
            "/v1/orders",
            body=body,
            headers={"Idempotency-Key": key},
            retry=True,
            retry_codes=_ORDER_RETRY_CODES,
        )

    def status(self, order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/orders/{order_id}", retry=True)

    def cancel(self, order_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/orders/{order_id}")

    def images(self, order_id: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
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
            page = self._call("GET", f"/v1/orders/{order_id}/images", params=params, retry=True)
            yield from page.get("images") or []
            token = page.get("next_token")
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
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the order reaches a terminal state and return it; ``on_progress`` sees
        every poll. Raises :class:`TimeoutError` when ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = self.status(order_id)
            if on_progress is not None:
                on_progress(order)
            if order.get("state") in TERMINAL_STATES:
                return order
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"order {order_id} still {order.get('state')} after {timeout_s:g} s"
                )
            time.sleep(min(poll_s, remaining))

    def download(self, order_id: str, directory: Path, *, workers: int = 8) -> list[Path]:
        """Fetch every image of the order into ``directory`` as ``<prompt>-<seed>.png``.

        Files already there with a PNG signature are kept, so a rerun resumes an interrupted
        download. On a failure the images that did arrive stay, and the first error is raised.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths: set[Path] = set()
        errors: list[BaseException] = []
        pending: set[Future[Path]] = set()

        def collect(done: set[Future[Path]]) -> None:
            for future in done:
                error = future.exception()
                if error is None:
                    paths.add(future.result())
                else:
                    errors.append(error)

        # A separate client with no default headers: presigned links carry their own
        # authorisation, and the API key must never travel to the storage host.
        with (
            httpx.Client(
                timeout=self._timeout_s,
                follow_redirects=True,
                headers={"user-agent": _USER_AGENT},
                limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
            ) as storage,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool,
        ):
            for image in self.images(order_id):
                if errors:
                    break
                pending.add(pool.submit(self._fetch_image, storage, image, directory))
                # Bounded so pages are listed only as fast as images download, keeping links
                # from expiring in a queue on a large order.
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
            done, _ = wait(pending)
            collect(done)
        if errors:
            raise errors[0]
        return sorted(paths)

    # -- plumbing ----------------------------------------------------------------------------

    def _fetch_image(self, storage: httpx.Client, image: dict[str, Any], directory: Path) -> Path:
        # int() so that a name can only ever be digits: the server's fields cannot steer the path.
        path = directory / f"{int(image['prompt_index']):03d}-{int(image['seed'])}.png"
        if _has_png_signature(path):
            return path
        # Messages name the file, never the link: a presigned URL is a bearer credential.
        failure = ApiError(None, "download_failed", f"{path.name}: not attempted")
        for attempt in range(self.download_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt - 1))
            try:
                response = storage.get(str(image["url"]))
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
                    raise ApiError(
                        None,
                        "connection_error",
                        f"{method} {path}: {type(error).__name__}: {error}",
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
