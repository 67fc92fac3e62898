"""The plumbing the local servers share (emulated market, provider emulators, renderer)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class MethodHandler(BaseHTTPRequestHandler):
    """Routes every HTTP method to ``_handle(method)``; keep-alive like the real servers, so a
    crash mid-request shows up to pooled clients as it would."""

    protocol_version = "HTTP/1.1"

    def _handle(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _reply_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(int(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body_or_none(self, max_bytes: int) -> bytes | None:
        """The request body, or None when its length is missing, invalid or too large (the
        body that follows cannot be skipped reliably, so the connection is closed)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= max_bytes:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""
