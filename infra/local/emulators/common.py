"""What the three provider emulators share: the HTTP server and handler that route a request to
one provider's backend, the server object tests and the stack hold, and the small parsers every
backend needs (JSON bodies, ids, Bearer headers, automatic1111's ``--api-auth``).

Names here are public because the sibling provider modules import them; the package's public
entry points are the ones :mod:`infra.local.emulators` re-exports.
"""

from __future__ import annotations

import hmac
import json
import logging
import shlex
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.local.emulated_market import EmulatedMarket, MachineNotFound
from infra.local.http_base import MethodHandler

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
A1111_PORT = 7860
# Shared because TensorDock's hosts are built from every provider's rows except Vast's.
VAST_PROVIDER_NAME = "Vast.ai"
MAX_BID = 1000.0  # $/h per GPU: anything above is a typo, and it keeps inf and nan out

Route = tuple[int, object]


class BadRequest(ValueError):
    """The request is not what the route needs."""


def json_number(value: object) -> float:
    """A Decimal-string price as a JSON number. float(Decimal(s)) is the nearest double, whose
    repr (what json writes) is the shortest string that round-trips: "0.309" stays 0.309 (any
    price of up to 15 significant digits comes back exact through ``Decimal(str(x))``)."""
    return float(Decimal(str(value)))


def api_auth_from_args(command_line: str) -> str:
    """The ``--api-auth`` value of an automatic1111 command line ("" when absent)."""
    try:
        words = shlex.split(command_line)
    except ValueError as error:
        raise BadRequest("COMMANDLINE_ARGS is not a valid shell word list") from error
    for index, word in enumerate(words):
        if word == "--api-auth" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--api-auth="):
            return word.partition("=")[2]
    return ""


def is_json_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_id(value: str) -> bool:
    return value.isascii() and value.isdigit()


def bearer_ok(header: str | None, expected: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


# --------------------------------------------------------------------------- HTTP plumbing


class Backend:
    """One provider's API: routes a request to (status, JSON payload)."""

    # Every machine of this provider taken: its search lists nothing and renting answers as
    # the provider does for an offer that is gone. A knob for the demo and tests.
    sold_out = False
    # Every launch refused with the provider's own server-error answer while its offers stay
    # listed (a provider whose launches all fail: its API is broken, or our account is).
    launches_fail = False

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        raise NotImplementedError

    def unauthorised(self, raw: bytes) -> Route:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Route:
        raise NotImplementedError

    def bad_request(self, message: str) -> Route:
        return HTTPStatus.BAD_REQUEST, {"error": message}


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        super().__init__(address, Handler)


class EmulatorServer:
    """A provider emulator answering on 127.0.0.1 from a daemon thread."""

    def __init__(
        self,
        httpd: EmulatorHTTPServer,
        thread: threading.Thread,
        url: str,
        market_machine_id: Callable[[str], str],
    ) -> None:
        self._httpd = httpd
        self._thread = thread
        self.url = url
        self._market_machine_id = market_machine_id

    def market_machine_id(self, provider_machine_id: str) -> str:
        """The EmulatedMarket machine behind a provider instance id (raises MachineNotFound)."""
        return self._market_machine_id(provider_machine_id)

    def sell_out(self, sold_out: bool = True) -> None:
        """Take every offer off this provider's market (or put them back)."""
        self._httpd.backend.sold_out = sold_out

    def fail_launches(self, failing: bool = True) -> None:
        """Refuse every launch with this provider's server error (or stop refusing); its
        offers stay listed, its machines already running are not touched."""
        self._httpd.backend.launches_fail = failing

    def close(self) -> None:
        """Stop answering; the machines keep running (shut the market down for that)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    backend: Backend, name: str, path_prefix: str, market_machine_id: Callable[[str], str]
) -> EmulatorServer:
    httpd = EmulatorHTTPServer(("127.0.0.1", 0), backend)
    port = int(httpd.server_address[1])
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"{name}-emulator:{port}",
        daemon=True,
    )
    thread.start()
    return EmulatorServer(httpd, thread, f"http://127.0.0.1:{port}{path_prefix}", market_machine_id)


class Handler(MethodHandler):
    server_version = "provider-emulator"

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        server = self.server
        assert isinstance(server, EmulatorHTTPServer)
        backend = server.backend
        status: int
        payload: object
        try:
            raw = self._read_body()
            if not backend.authorised(self.headers, query):
                status, payload = backend.unauthorised(raw)
            else:
                status, payload = backend.route(method, path, query, raw)
        except BadRequest as error:
            status, payload = backend.bad_request(str(error))
        except Exception:
            # Only the class reaches the log: a request body may hold a credential.
            log.exception("emulator %s %s failed", method, path)
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        self._reply_json(status, payload)
        log.debug(
            "emulator %s %s %d %.1fms", method, path, status, (time.monotonic() - started) * 1000
        )

    def _read_body(self) -> bytes:
        body = self._body_or_none(MAX_BODY_BYTES)
        if body is None:
            raise BadRequest("missing, invalid or oversized Content-Length")
        return body

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged by _handle without query strings or bodies.
        return


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest("the body is not valid JSON") from error
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def market_status(market: EmulatedMarket, market_id: str) -> str:
    """A market machine's status; "terminated" once the market no longer knows it."""
    try:
        return str(market.machine(market_id)["status"])
    except MachineNotFound:
        return "terminated"
