"""The plumbing the local servers share (emulated market, provider emulators, renderer)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


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
