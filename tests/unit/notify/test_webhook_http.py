"""SSRF: where a webhook may be sent. Refused at order time when the URL alone says so, and at
delivery when the name resolves to an address we must not reach (the connection goes to the
checked address only); redirects are answers, never followed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from subconscious.notify.webhook_http import WebhookHttp, url_refusal


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/subconscious",
        "https://hooks.example.com:8443/x?y=1",
        "https://93.184.215.14/hook",  # a public IPv4 literal
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",  # a public IPv6 literal
    ],
)
def test_public_https_receivers_are_allowed(url: str) -> None:
    assert url_refusal(url, allow_http=False, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://[::1/x", "not a URL"),
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("hooks.example.com/x", "https"),
        ("https://", "host"),
        ("https://user:pass@hooks.example.com/x", "user or password"),
        ("https://93.184.215.14@10.0.0.1/x", "user or password"),
        ("https://localhost/x", "localhost"),
        ("https://api.localhost/x", "localhost"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://10.1.2.3/x", "private"),
        ("https://172.16.0.1/x", "private"),
        ("https://192.168.1.1/x", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),  # the metadata service
        ("https://[fd00:ec2::254]/x", "link-local"),  # its IPv6 address
        ("https://[::1]/x", "loopback"),
        ("https://[fc00::1]/x", "private"),  # unique-local
        ("https://[fe80::1]/x", "link-local"),
        ("https://[::ffff:10.0.0.1]/x", "private"),  # IPv4-mapped
        ("https://[::ffff:169.254.169.254]/x", "link-local"),
        ("https://224.0.0.1/x", "multicast"),
        ("https://240.0.0.1/x", "reserved"),
        ("https://0.0.0.0/x", "unspecified"),
        ("https://100.64.0.1/x", "not global"),  # carrier-grade NAT
    ],
)
def test_unsafe_receivers_are_refused_with_the_reason(url: str, why: str) -> None:
    refusal = url_refusal(url, allow_http=False, allow_private=False)
    assert refusal is not None and why in refusal


def test_the_local_stacks_settings_allow_http_and_loopback_but_never_the_metadata_service() -> None:
    local = {"allow_http": True, "allow_private": True}
    assert url_refusal("http://127.0.0.1:8000/hook", **local) is None
    assert url_refusal("http://localhost:8000/hook", **local) is None
    assert url_refusal("https://10.0.0.5/hook", **local) is None
    assert "link-local" in (url_refusal("http://169.254.169.254/", **local) or "")
    assert "multicast" in (url_refusal("http://224.0.0.1/", **local) or "")


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A loopback receiver: /redirect answers 302 to /target, anything else 204."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            paths.append(self.path)
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/target")
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", paths
    httpd.shutdown()
    httpd.server_close()


def test_a_name_that_resolves_to_loopback_is_refused_at_delivery_and_nothing_is_sent(
    server: tuple[str, list[str]],
) -> None:
    base, paths = server
    port = base.rsplit(":", 1)[1]
    # "localhost" passes no literal check here: it is refused once resolved, on connect
    attempt = WebhookHttp(allow_private=False).post(f"http://localhost:{port}/hook", {}, "{}")
    assert attempt.status_code is None
    assert (attempt.error or "").startswith("refused") and "loopback" in (attempt.error or "")
    assert paths == []


def test_redirects_are_recorded_not_followed(server: tuple[str, list[str]]) -> None:
    base, paths = server
    attempt = WebhookHttp(allow_private=True).post(f"{base}/redirect", {}, "{}")
    assert attempt.status_code == 302 and attempt.error is None
    assert paths == ["/redirect"]


def test_a_delivery_sends_the_body_and_headers_and_times_itself() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sender = WebhookHttp(
        allow_private=False, client=httpx.Client(transport=httpx.MockTransport(answer))
    )
    attempt = sender.post("https://hooks.example.com/x", {"webhook-id": "msg_1"}, '{"a":1}')
    assert (attempt.status_code, attempt.error) == (200, None)
    assert attempt.duration_ms >= 0 and attempt.at.tzinfo is not None
    (request,) = seen
    assert request.content == b'{"a":1}'
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "transport error: ConnectError"),
    ],
)
def test_a_receiver_that_does_not_answer_is_an_attempt_with_an_error(
    raised: Exception, error: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    sender = WebhookHttp(
        allow_private=False, client=httpx.Client(transport=httpx.MockTransport(fail))
    )
    attempt = sender.post("https://hooks.example.com/x", {}, "{}")
    assert (attempt.status_code, attempt.error) == (None, error)
