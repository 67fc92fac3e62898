"""A machine's URL must name a public address: checked when the client is made and on every
connection (the socket goes to the checked address, never to a second resolution)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpcore
import pytest
from pydantic import SecretStr

from subconscious.errors import RendererUnavailable, UnsafeMachineAddress
from subconscious.logic import render_run
from subconscious.market.fake import FakeProvider
from subconscious.market.static import StaticProvider
from subconscious.models import Machine, MachineStatus, RenderRun
from subconscious.models.servers import StaticServer
from subconscious.render import address
from subconscious.render.a1111 import A1111Client
from subconscious.services import build
from subconscious.settings import Settings
from tests.conftest import offer

REFUSED = [
    "127.0.0.1",  # loopback
    "127.1.2.3",
    "10.0.0.1",  # RFC 1918
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 - unspecified (reaches this host on Linux)
    "224.0.0.1",  # multicast
    "255.255.255.255",
    "240.0.0.1",  # reserved
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",  # unique local
    "fd00:ec2::254",  # the metadata service over IPv6
    "fec0::1",  # site-local (deprecated, is_global says True)
    "ff0e::1",  # global-scope multicast (is_global says True)
    "2001:db8::1",
    "::7f00:1",  # IPv4-compatible (deprecated)
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 around 127.0.0.1 (is_global says True)
    "2002:a9fe:a9fe::",
    "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
    "64:ff9b::a9fe:a9fe",
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "104.16.1.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::",
]
# Allowed with allow_private (the local stack, static servers)...
PRIVATE_OK = ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.1", "100.64.0.1", "fc00::1"]
# ...but never these.
NEVER = [
    "169.254.169.254",
    "fe80::1",
    "fd00:ec2::254",
    "0.0.0.0",  # noqa: S104
    "::",
    "224.0.0.1",
    "240.0.0.1",
    "::7f00:1",
    "::ffff:169.254.169.254",
    "2002:a9fe:a9fe::",
    "64:ff9b::a9fe:a9fe",
]


@pytest.mark.parametrize("ip", REFUSED)
def test_non_public_addresses_are_refused(ip: str) -> None:
    assert address.refusal(ipaddress.ip_address(ip), allow_private=False) is not None
    with pytest.raises(UnsafeMachineAddress, match="machine address"):
        address.check_address(ip, allow_private=False)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip: str) -> None:
    assert address.refusal(ipaddress.ip_address(ip), allow_private=False) is None
    assert address.check_address(ip, allow_private=False) == ipaddress.ip_address(ip)


@pytest.mark.parametrize("ip", PRIVATE_OK)
def test_allow_private_lets_private_and_loopback_through(ip: str) -> None:
    assert address.refusal(ipaddress.ip_address(ip), allow_private=True) is None


@pytest.mark.parametrize("ip", NEVER)
def test_allow_private_still_refuses_link_local_multicast_and_reserved(ip: str) -> None:
    assert address.refusal(ipaddress.ip_address(ip), allow_private=True) is not None


def test_the_refusal_names_the_embedded_address() -> None:
    why = address.refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), allow_private=False)
    assert why == "link-local (embedded 169.254.169.254)"


def test_an_unparsable_address_is_refused() -> None:
    with pytest.raises(UnsafeMachineAddress, match="not an IP address"):
        address.check_address("localhost", allow_private=True)


# --- the URL ---
@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://8.8.8.8/", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http:///sdapi", "no host"),
        ("http://1.2.3.4@10.0.0.1:7860", "user or password"),
        ("http://u:p@8.8.8.8:7860", "user or password"),
        ("http://[::1", "does not parse"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:7f00:1]:7860", "loopback"),
        ("http://10.1.2.3:40123", "private"),
    ],
)
def test_bad_machine_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(UnsafeMachineAddress, match=match):
        address.check_machine_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8:40123",
        "http://[2606:4700::1111]:7860",
        "https://abc123-7860.proxy.runpod.net",  # a name: checked once resolved
    ],
)
def test_good_machine_urls_pass(url: str) -> None:
    assert str(address.check_machine_url(url, allow_private=False)).startswith(url)


def test_the_client_refuses_an_unsafe_url_before_any_request() -> None:
    with pytest.raises(UnsafeMachineAddress):
        A1111Client("http://169.254.169.254:80", auth=None, timeout_s=1.0)
    with pytest.raises(UnsafeMachineAddress):
        A1111Client("http://127.0.0.1:7860", auth=None, timeout_s=1.0)
    A1111Client("http://127.0.0.1:7860", auth=None, timeout_s=1.0, allow_private=True).close()


# --- resolution ---
def _answers(*ips: str, family: int | None = None) -> Any:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        rows = []
        for ip in ips:
            fam = family or (socket.AF_INET6 if ":" in ip else socket.AF_INET)
            sockaddr = (ip, port, 0, 0) if fam == socket.AF_INET6 else (ip, port)
            rows.append((fam, socket.SOCK_STREAM, 6, "", sockaddr))
        return rows

    return getaddrinfo


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _answers("8.8.8.8", "8.8.8.8", "2606:4700::1"))
    assert address.resolve_allowed("m.test", 80, allow_private=False) == [
        "8.8.8.8",
        "2606:4700::1",
    ]
    # one private answer among public ones is a rebinding trick: refused
    monkeypatch.setattr(socket, "getaddrinfo", _answers("8.8.8.8", "169.254.169.254"))
    with pytest.raises(UnsafeMachineAddress, match=r"169\.254\.169\.254 is link-local"):
        address.resolve_allowed("m.test", 80, allow_private=False)


def test_a_name_that_does_not_resolve_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fails)
    with pytest.raises(httpcore.ConnectError, match="cannot resolve"):
        address.resolve_allowed("nowhere.test", 80, allow_private=False)
    monkeypatch.setattr(socket, "getaddrinfo", _answers())
    with pytest.raises(httpcore.ConnectError, match="no address"):
        address.resolve_allowed("nowhere.test", 80, allow_private=False)


def test_a_non_ip_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _answers("/tmp/sock", family=socket.AF_UNIX))
    with pytest.raises(UnsafeMachineAddress, match="non-IP"):
        address.resolve_allowed("m.test", 80, allow_private=False)


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "127.1"])
def test_names_and_odd_spellings_of_loopback_are_refused_once_resolved(host: str) -> None:
    # getaddrinfo reads these without DNS (hosts file, inet_aton); check_machine_url lets them
    # through as names, and the connection refuses them.
    address.check_machine_url(f"http://{host}:7860", allow_private=False)
    with pytest.raises(UnsafeMachineAddress, match="loopback"):
        address.resolve_allowed(host, 7860, allow_private=False)


# --- the connection ---
class _Recorder(httpcore.NetworkBackend):
    def __init__(self, failing: Iterable[str] = ()) -> None:
        self.connected: list[tuple[str, int]] = []
        self.slept: list[float] = []
        self._failing = set(failing)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.connected.append((host, port))
        if host in self._failing:
            raise httpcore.ConnectError("refused")
        return httpcore.MockStream([])

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_the_backend_connects_to_the_checked_addresses_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _answers("8.8.8.8", "8.8.4.4", "1.1.1.1"))
    inner = _Recorder(failing={"8.8.8.8"})
    backend = address.PublicOnlyBackend(allow_private=False, inner=inner)
    backend.connect_tcp("m.test", 7860)
    assert inner.connected == [("8.8.8.8", 7860), ("8.8.4.4", 7860)]  # never the name
    inner = _Recorder(failing={"8.8.8.8", "8.8.4.4", "1.1.1.1"})
    backend = address.PublicOnlyBackend(allow_private=False, inner=inner)
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("m.test", 7860)
    assert len(inner.connected) == 3
    backend.sleep(0.5)
    assert inner.slept == [0.5]


def test_the_backend_refuses_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _answers("10.0.0.7"))
    inner = _Recorder()
    backend = address.PublicOnlyBackend(allow_private=False, inner=inner)
    with pytest.raises(UnsafeMachineAddress, match="private"):
        backend.connect_tcp("m.test", 7860)
    with pytest.raises(UnsafeMachineAddress, match="local socket"):
        backend.connect_unix_socket("/var/run/docker.sock")
    assert inner.connected == []


# --- against a real server on loopback ---
class _Models(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Models.hosts.append(self.headers.get("Host", ""))
        body = b'[{"title": "sd15"}]'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def loopback_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Models.hosts = []
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_name_resolving_to_loopback_is_refused_on_connect(loopback_server: int) -> None:
    # httpx's transport honours the backend: no request reaches the server
    client = A1111Client(f"http://localhost:{loopback_server}", auth=None, timeout_s=5.0)
    try:
        with pytest.raises(UnsafeMachineAddress, match="loopback"):
            client.models()
        with pytest.raises(UnsafeMachineAddress):  # not "not ready yet": the run ends
            client.is_ready()
    finally:
        client.close()
    assert _Models.hosts == []


def test_the_checked_address_is_used_and_the_name_kept(
    loopback_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _answers("127.0.0.1"))
    client = A1111Client(
        f"http://machine.test:{loopback_server}", auth=None, timeout_s=5.0, allow_private=True
    )
    try:
        assert client.models() == [{"title": "sd15"}]
    finally:
        client.close()
    assert _Models.hosts == [f"machine.test:{loopback_server}"]


def test_a_name_that_does_not_resolve_is_an_unavailable_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fails)
    monkeypatch.setattr(httpcore.SyncBackend, "sleep", lambda self, seconds: None)
    client = A1111Client("http://gone.test:7860", auth=None, timeout_s=1.0)
    try:
        with pytest.raises(RendererUnavailable, match="ConnectError") as excinfo:
            client.models()
        assert type(excinfo.value) is RendererUnavailable
        assert client.is_ready() is False  # may still come up: polled again
    finally:
        client.close()


# --- which machines the render step allows ---
def _run_and_machine(provider: str, url: str) -> tuple[RenderRun, Machine]:
    run = RenderRun(
        run_id="r-address",
        offer=offer().model_copy(update={"provider": provider, "offer_id": "static-0"}),
        spend_cap_micros=10**6,
        started_at=datetime.now(UTC),
    )
    machine = Machine(
        provider=provider,
        machine_id="static-0",
        offer_id="static-0",
        label="",
        status=MachineStatus.RUNNING,
        url=url,
        usd_per_hour=Decimal(0),
    )
    return run, machine


def test_a_rented_machine_on_a_private_address_is_refused() -> None:
    fake = {"fake": FakeProvider([offer()])}
    services = build(Settings(allow_private_machine_addresses=False), providers=fake)
    run, machine = _run_and_machine("fake", "http://10.0.0.5:7860")
    with pytest.raises(UnsafeMachineAddress):
        render_run._client(services, run, machine)
    # the local stack's setting lets its loopback machines through
    services = build(Settings(allow_private_machine_addresses=True), providers=fake)
    render_run._client(services, run, machine).close()


def test_the_operators_static_servers_may_be_private_never_link_local() -> None:
    servers = [
        StaticServer(url="http://10.0.0.5:7860", gpu="RTX 3090", api_auth=SecretStr("me:pw")),
        StaticServer(url="http://169.254.169.254", gpu="RTX 3090"),
    ]
    static = {"static": StaticProvider(servers)}
    services = build(Settings(allow_private_machine_addresses=False), providers=static)
    run, machine = _run_and_machine("static", "http://10.0.0.5:7860")
    render_run._client(services, run, machine).close()
    run, machine = _run_and_machine("static", "http://169.254.169.254")
    with pytest.raises(UnsafeMachineAddress, match="link-local"):
        render_run._client(services, run, machine)


def test_the_setting_defaults_to_refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBC_ALLOW_PRIVATE_MACHINE_ADDRESSES")
    assert Settings().allow_private_machine_addresses is False
