"""A customer's webhook endpoint for the tests: an http server on loopback that records every
POST and answers each event's first attempt 500, every later one 200 (so a test sees the
retry)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        """(headers, body) of every POST answered 200."""
        with self.lock:
            pairs = zip(self.received, self.answered, strict=True)
            return [request for request, status in pairs if status == 200]

    def record(self, headers: dict[str, str], body: bytes) -> int:
        """Keep the request; the status to answer it with."""
        with self.lock:
            event_id = headers.get("webhook-id")
            seen = sum(1 for h, _ in self.received if h.get("webhook-id") == event_id)
            status = 500 if seen == 0 else 200
            self.received.append((headers, body))
            self.answered.append(status)
        return status


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.record({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/subconscious"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
