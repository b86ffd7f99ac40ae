"""SSRF guard for every URL a user gives us (input images, webhooks) and vendor result links.

The guard has two layers, because a check made before the request cannot stop a host
whose DNS answer changes between the check and the connection (DNS rebinding):

1. ``check_url`` validates a URL up front: http(s) scheme, a host, no userinfo, and every
   address the host resolves to must be public or allowed: inside an allowed CIDR, or an
   exact allowed ``host:port`` (``EDITQUEUE_ALLOW_PRIVATE_URLS``; the worker's download
   client allows the configured vendor endpoints instead). Callers get a clear error
   before any socket opens.
2. ``GuardedTransport`` repeats the check when it connects, which is the authoritative
   check. Its httpcore network backend resolves the host itself and refuses the connection
   if any address is not allowed. It then opens the socket to one of the verified IP
   literals, so no second DNS lookup can swap the address, and checks the connected peer
   again with ``getpeername()``. TLS and HTTP stay correct: httpcore still starts TLS with
   the URL's hostname (SNI and certificate verification), and the Host header comes from
   the URL, not from the socket. Keep-alive connections reuse sockets that were checked
   when they were opened.

httpx is never allowed to follow redirects by itself here. ``open_following_redirects``
follows them by hand and checks every hop again. Proxies from the environment are
ignored: through a proxy, the address we check would be the proxy's, not the target's.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Endpoint:
    """One exact ``host:port`` that may be reached: a host name or an IP literal."""

    host: str  # lower-case name, or an address in its canonical text form
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# An allowance entry: a whole network, or one endpoint (never wider than asked for).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network | Endpoint

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# NAT64 (RFC 6052) carries an IPv4 address in its low 32 bits; a translator would route
# 64:ff9b::7f00:1 to 127.0.0.1, so such an address is judged by the address it embeds.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeURL(ValueError):
    """A URL the service refuses to fetch; the message says why and is safe to show users."""


class UnresolvableHost(UnsafeURL):
    """The host has no address; ``temporary`` is True when DNS failed in a way worth retrying."""

    def __init__(self, host: str, *, temporary: bool) -> None:
        super().__init__(f"cannot resolve host {host!r}")
        self.host = host
        self.temporary = temporary


# -- allowances -----------------------------------------------------------------------

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?\.?$")


def _endpoint(host: str, port_text: str) -> Endpoint:
    """An Endpoint from its parts; ValueError if either is malformed."""
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    literal = _as_ip(host)
    if literal is not None:
        return Endpoint(str(literal), int(port_text))
    if not _HOST_NAME.match(host.lower()):
        raise ValueError(f"bad host {host!r}")
    return Endpoint(host.lower().rstrip("."), int(port_text))


def parse_allowance(text: str) -> tuple[Network, ...]:
    """Parse ``"10.0.0.0/8, 127.0.0.1:9000, [::1]:9000, sandbox:9100"``; ValueError if bad.

    A CIDR (or a bare address) allows a whole range; ``host:port`` allows one endpoint.
    """
    entries: list[Network] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "/" in item or _as_ip(item) is not None:
            entries.append(ipaddress.ip_network(item, strict=False))
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{item!r} is neither a CIDR nor host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        entries.append(_endpoint(host, port))
    return tuple(entries)


def endpoint_of(url: str) -> Endpoint:
    """The ``host:port`` that ``url`` connects to (its scheme's default port when none)."""
    parsed = httpx.URL(url)
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 443)
    return _endpoint(parsed.raw_host.decode("ascii"), str(port))


def _allows_name(allowed: Iterable[Network], host: str, port: int) -> bool:
    """Whether ``host:port`` is an allowed endpoint by name (any address it resolves to)."""
    return Endpoint(host.lower().rstrip("."), port) in allowed


# -- addresses ------------------------------------------------------------------------


def _parse_ip(text: str) -> Address:
    """An address from a literal or a sockaddr string, without any IPv6 scope id."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _as_ip(host: str) -> Address | None:
    """The address if ``host`` is an IP literal, else None."""
    try:
        return _parse_ip(host)
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that packets to ``ip`` would reach (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _non_public_kind(ip: Address) -> str | None:
    """The kind of non-public address ``ip`` is ("loopback", "private", …), or None."""
    kinds = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),  # includes the 169.254.169.254 metadata service
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT),
        # Catch-all for special ranges the flags above miss (documentation, benchmarking…).
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in kinds if hit), None)


def _in_allowed(ip: Address, allowed: Iterable[Network], port: int | None) -> bool:
    """Whether ``ip`` (on ``port``, when known) is inside an allowed network or endpoint."""
    for entry in allowed:
        if isinstance(entry, Endpoint):
            if port == entry.port and _as_ip(entry.host) == ip:
                return True
        elif ip.version == entry.version and ip in entry:
            return True
    return False


def _refusal(ip: Address, allowed: Sequence[Network], port: int | None = None) -> str | None:
    """Why a connection to ``ip`` is refused (e.g. "loopback address"), or None if allowed.

    Endpoint entries count only when ``port`` is given.
    """
    if _in_allowed(ip, allowed, port):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            # Judge by the IPv4 address the packets really reach, so that the allow list
            # and the refusals apply equally to ::ffff:127.0.0.1 and 127.0.0.1.
            if _in_allowed(inner, allowed, port):
                return None
            kind = _non_public_kind(inner)
            return f"IPv6 form of {kind} address {inner}" if kind else None
    kind = _non_public_kind(ip)
    return f"{kind} address" if kind else None


def is_public_address(ip: Address | str, allowed: Sequence[Network] = ()) -> bool:
    """Whether the service may connect to ``ip``: publicly routable or inside ``allowed``."""
    address = ip if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) else _parse_ip(ip)
    return _refusal(address, allowed) is None


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as literal strings (scope ids kept for connecting)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvableHost(host, temporary=exc.errno == socket.EAI_AGAIN) from None
    except (UnicodeError, OSError):
        raise UnresolvableHost(host, temporary=False) from None
    found = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not found:
        raise UnresolvableHost(host, temporary=False)
    return list(dict.fromkeys(found))  # de-duplicate, keep the resolver's order


def _checked_addresses(host: str, port: int, allowed: Sequence[Network]) -> list[str]:
    """The addresses of ``host``; UnsafeURL if ANY is refused (an attacker controls the order)."""
    literal = _as_ip(host)
    candidates = [host] if literal is not None else _resolve(host, port)
    if literal is None and _allows_name(allowed, host, port):
        return candidates  # the operator trusts this name, whatever it resolves to
    for candidate in candidates:
        reason = _refusal(_parse_ip(candidate), allowed, port)
        if reason is not None:
            shown = candidate if literal is not None else f"{host} resolves to {candidate}, which"
            raise UnsafeURL(f"{shown} is not allowed ({reason})")
    return candidates


# -- URLs ----------------------------------------------------------------------------


def _check_parsed(
    url: httpx.URL, allowed: Sequence[Network], schemes: Sequence[str], resolve: bool
) -> None:
    """``check_url`` on an already parsed URL (the same parser httpx connects with)."""
    if url.scheme not in schemes:
        raise UnsafeURL(f"URL scheme must be {' or '.join(schemes)}")
    if not url.raw_host:
        raise UnsafeURL("URL has no host")
    if url.userinfo:
        raise UnsafeURL("URL must not contain a user name or password")
    # raw_host is the IDNA-encoded name httpcore will connect to, so we check exactly that.
    host = url.raw_host.decode("ascii")
    if not resolve and _as_ip(host) is None:
        return
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 443)
    _checked_addresses(host, port, allowed)


def check_url(
    url: str,
    allowed: Sequence[Network] = (),
    *,
    schemes: Sequence[str] = ("https", "http"),
    resolve: bool = True,
) -> None:
    """Raise UnsafeURL unless ``url`` is http(s) and every address of its host may be reached.

    With ``resolve=False`` no DNS lookup is made: IP literals are still checked, host names
    are left to the connect-time check of ``GuardedTransport``.
    """
    try:
        parsed = _parse_url(url)
    except (httpx.InvalidURL, TypeError):
        raise UnsafeURL("not a valid URL") from None
    _check_parsed(parsed, tuple(allowed), schemes, resolve)


@functools.lru_cache(maxsize=1024)
def _parse_url(url: str) -> httpx.URL:
    # Parsing is pure and httpx.URL immutable; a batch often sends one image URL with many
    # prompts, and httpx's parser is most of intake's time per job. Lookups stay uncached.
    return httpx.URL(url)


# -- connect-time guard ----------------------------------------------------------------


class _GuardedBackend(httpcore.NetworkBackend):
    """An httpcore backend that opens TCP connections only to addresses the guard accepts."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve ``host`` once, refuse unsafe addresses, connect to a verified IP literal."""
        last_error: Exception | None = None
        for address in _checked_addresses(host, port, self._allowed):
            try:
                # An IP literal needs no lookup, so the socket goes where we checked.
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc  # try the next address, as socket.create_connection does
                continue
            if not _allows_name(self._allowed, host, port):
                self._verify_peer(stream, port)
            return stream
        assert last_error is not None  # _checked_addresses never returns an empty list
        raise last_error

    def _verify_peer(self, stream: httpcore.NetworkStream, port: int) -> None:
        """Check the address the socket is really connected to; close it if refused."""
        sock = stream.get_extra_info("socket")
        try:
            peer = _parse_ip(str(sock.getpeername()[0]))
        except (AttributeError, OSError, ValueError):
            stream.close()
            raise UnsafeURL("cannot verify the connected address") from None
        reason = _refusal(peer, self._allowed, port)
        if reason is not None:
            stream.close()
            raise UnsafeURL(f"connected to {peer}, which is not allowed ({reason})")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Refuse: a user URL never reaches a local socket."""
        raise UnsafeURL("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        """Delegate the retry back-off sleep."""
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport that checks every request URL and every address it connects to."""

    def __init__(
        self,
        allowed: Sequence[Network] = (),
        *,
        verify: ssl.SSLContext | str | bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        retries: int = 0,
    ) -> None:
        # Built like httpx.HTTPTransport without proxy support. httpx has no public hook for
        # the network backend, so we build the httpcore pool that its methods delegate to.
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._allowed = tuple(allowed)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            retries=retries,
            network_backend=_GuardedBackend(self._allowed),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Check the URL's shape (and literal IPs) now; host names are checked at connect."""
        _check_parsed(request.url, self._allowed, ("https", "http"), resolve=False)
        return super().handle_request(request)


_BYPASSING_OPTIONS = ("transport", "mounts", "proxy", "proxies", "trust_env")


def guarded_client(
    allowed: Sequence[Network] = (),
    *,
    timeout: httpx.Timeout,
    follow_redirects: bool = False,
    **kw: Any,
) -> httpx.Client:
    """An httpx.Client whose connections all pass the SSRF guard (no env proxies).

    Keep ``follow_redirects`` False for user URLs and use ``open_following_redirects``;
    even when True, every hop's connection is still checked by the transport.
    """
    bypassing = [name for name in _BYPASSING_OPTIONS if name in kw]
    if bypassing:
        raise TypeError(f"guarded_client does not accept {bypassing}: it would bypass the guard")
    transport = GuardedTransport(
        allowed,
        verify=kw.pop("verify", True),
        http2=kw.pop("http2", False),
        limits=kw.pop("limits", None),
    )
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=follow_redirects,
        trust_env=False,
        **kw,
    )


@contextmanager
def open_following_redirects(
    client: httpx.Client,
    url: str,
    allowed: Sequence[Network] = (),
    *,
    max_hops: int = 3,
    headers: Mapping[str, str] | None = None,
) -> Iterator[httpx.Response]:
    """GET ``url``, following at most ``max_hops`` redirects by hand with every hop checked.

    Yields the final response unread (streamed) and closes it on exit. Raises UnsafeURL
    for a refused hop and httpx.TooManyRedirects past ``max_hops``.
    """
    check_url(url, allowed)
    request = client.build_request("GET", url, headers=headers)
    hops = 0
    while True:
        response = client.send(request, stream=True, follow_redirects=False)
        # httpx prepares the next request (method change, credential stripping) for us.
        next_request = response.next_request
        if next_request is None:
            break
        response.close()
        hops += 1
        if hops > max_hops:
            raise httpx.TooManyRedirects(f"more than {max_hops} redirects", request=request)
        check_url(str(next_request.url), allowed)
        request = next_request
    try:
        yield response
    finally:
        response.close()
