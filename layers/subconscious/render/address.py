"""Which machine addresses the render step may connect to.

A rented machine's URL is built from what the provider reports (Vast.ai's ``public_ipaddr``,
TensorDock's ``ipAddress``, a RunPod proxy name): a hostile host or a hostile provider answer
could point the render step at our VPC, the metadata service (169.254.169.254) or loopback.
So a machine must be on a public address, checked twice:

- :func:`check_machine_url` when the client is made: http(s), a host, no userinfo, and a host
  written as an IP address must be public (refused before anything is sent);
- :class:`PublicOnlyBackend` on every connection: the name is resolved once, every address it
  resolves to must be public, and the socket connects to those checked addresses, never to a
  second resolution of the name (so DNS rebinding cannot swap in a private address). TLS still
  verifies the certificate against the name.

``allow_private`` is for the local stack (its machines are loopback processes) and for the
operator's own ``static`` servers (possibly in its private network). Even then link-local
addresses (the metadata service), multicast, unspecified and reserved ones are refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

from subconscious.errors import UnsafeMachineAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the low 32 bits
# The instance metadata service's IPv6 address (Nitro); its IPv4 one is link-local.
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the render step may not connect to ``address``, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return refusal(address.ipv4_mapped, allow_private=allow_private)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded, allow_private=allow_private)
            if inner is not None:
                return f"{inner} (embedded {embedded})"
            if address in _NAT64:
                return None  # 64:ff9b::/96 sits inside ::/8, which ipaddress calls reserved
    return _kind_refusal(address, allow_private=allow_private)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one routes to, where it embeds one."""
    if address.sixtofour is not None:  # 2002:AABB:CCDD:: routes to a.b.c.d
        return address.sixtofour
    if address in _NAT64:  # a NAT64 gateway (a VPC's) forwards to a.b.c.d
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """The address's own kind, refused even where private addresses are allowed. The order
    matters: ::1 is loopback and also inside ::/8, which ipaddress calls reserved."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local or address in _METADATA:
        return "link-local"
    if address.is_loopback:
        return None if allow_private else "loopback"
    if address.is_reserved:
        return "reserved"
    if allow_private:
        return None
    return _public_refusal(address)


def _public_refusal(address: IPAddress) -> str | None:
    """Where only public addresses are allowed: private and not-global ones refused."""
    if address.is_private or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "private"
    if not address.is_global:  # 100.64.0.0/10 (carrier-grade NAT) is neither private nor global
        return "not global"
    return None


def check_address(address: str, *, allow_private: bool) -> IPAddress:
    """The parsed address; :class:`UnsafeMachineAddress` if the render step may not reach it."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError as error:
        raise UnsafeMachineAddress(f"not an IP address: {address!r}") from error
    why = refusal(parsed, allow_private=allow_private)
    if why is not None:
        raise UnsafeMachineAddress(f"machine address {parsed} is {why}")
    return parsed


def check_machine_url(url: str, *, allow_private: bool) -> httpx.URL:
    """What can be checked without resolving a name: http(s), a host, no credential in the
    URL, and a host written as an IP address must be allowed. A name is checked where it is
    resolved, on every connection (:class:`PublicOnlyBackend`)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise UnsafeMachineAddress(f"machine URL does not parse: {error}") from error
    if parsed.scheme not in ("http", "https"):
        raise UnsafeMachineAddress(f"machine URL scheme {parsed.scheme!r} is not http(s)")
    if not parsed.host:
        raise UnsafeMachineAddress("machine URL has no host")
    if parsed.userinfo:  # "http://1.2.3.4@10.0.0.1" is a credential and a private host
        raise UnsafeMachineAddress("machine URL carries a user or password")
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        return parsed  # a name: checked once resolved
    check_address(str(literal), allow_private=allow_private)
    return parsed


def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to, each one checked; refused if any one is not allowed
    (a name that answers one public and one private address is a rebinding trick).
    ``httpcore.ConnectError`` if the name does not resolve (the machine is unreachable)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from error
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise UnsafeMachineAddress(f"{host!r} resolves to a non-IP address")
        text = str(sockaddr[0])
        check_address(text, allow_private=allow_private)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise httpcore.ConnectError(f"{host!r} resolves to no address")
    return addresses


class PublicOnlyBackend(httpcore.NetworkBackend):
    """httpcore's network backend that connects only to checked addresses (see module doc)."""

    def __init__(self, *, allow_private: bool, inner: httpcore.NetworkBackend | None = None):
        self._allow_private = allow_private
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_allowed(host, port, allow_private=self._allow_private)
        for address in addresses[:-1]:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next address of the name, as socket.create_connection does
        return self._inner.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeMachineAddress("a machine is never reached through a local socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(*, allow_private: bool, retries: int = 1) -> httpx.HTTPTransport:
    """httpx's own transport (TLS, pooling, connect retries) on a :class:`PublicOnlyBackend`.
    httpx takes no network backend, so it is set on the pool it builds before any connection
    exists; ``tests/unit/render/test_address.py`` fails if an httpx upgrade stops honouring it."""
    transport = httpx.HTTPTransport(retries=retries)
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool):  # pragma: no cover - no proxy is given
        raise TypeError(f"unexpected httpx pool {type(pool).__name__}")
    pool._network_backend = PublicOnlyBackend(allow_private=allow_private)
    return transport
