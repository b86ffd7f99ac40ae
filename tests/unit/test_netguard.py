"""SSRF guard: URL checks, the connect-time check, and redirects followed by hand.

Real sockets only on loopback; other addresses are refused before any connection, and
tests that need DNS answers replace ``socket.getaddrinfo`` (the resolver, not our code).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from typing import Any

import httpx
import pytest

from editqueue.infra.netguard import (
    Endpoint,
    GuardedTransport,
    UnresolvableHost,
    UnsafeURL,
    check_url,
    endpoint_of,
    guarded_client,
    is_public_address,
    open_following_redirects,
    parse_allowance,
)

LOOPBACK = [ip_network("127.0.0.0/8")]
TIMEOUT = httpx.Timeout(5.0)
_real_getaddrinfo = socket.getaddrinfo


class _Handler(BaseHTTPRequestHandler):
    """/ok answers 200; /to?<url> redirects to <url>; /loop redirects to itself."""

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._reply(200, b"hello", {"Content-Type": "text/plain"})
        elif self.path.startswith("/to?"):
            self._reply(302, b"", {"Location": self.path[len("/to?") :]})
        elif self.path == "/loop":
            self._reply(302, b"", {"Location": "/loop"})
        else:
            self._reply(404, b"not found", {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A loopback HTTP server; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A guarded client with the default (empty) allow list."""
    with guarded_client(timeout=TIMEOUT) as guarded:
        yield guarded


@pytest.fixture
def loopback_client() -> Iterator[httpx.Client]:
    """A guarded client that may reach 127.0.0.0/8."""
    with guarded_client(LOOPBACK, timeout=TIMEOUT) as guarded:
        yield guarded


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
    """Answer lookups of the given names from ``answers`` (one list per call, last repeats)."""

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        calls = answers[host]
        addresses = calls.pop(0) if len(calls) > 1 else calls[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# -- check_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://10.0.0.1/x.png",
        "http://192.168.1.20/x.png",
        "http://172.16.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://[::ffff:169.254.169.254]/x.png",
        "http://100.64.0.1/x.png",
        "http://localhost/x.png",
        "http://0.0.0.0/x.png",
        "http://2130706433/x.png",  # 127.0.0.1 in decimal; resolvers accept it
        "http://224.0.0.1/x.png",
        "http://[fe80::1]/x.png",
        "http://[fd12:3456::1]/x.png",
        "http://[64:ff9b::7f00:1]/x.png",  # NAT64 of 127.0.0.1
        "http://[2002:a00:1::]/x.png",  # 6to4 of 10.0.0.1
        "https://192.0.2.10/x.png",  # documentation range
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="not allowed"):
        check_url(url)


def test_the_message_names_the_kind_of_address() -> None:
    with pytest.raises(
        UnsafeURL, match=r"^169\.254\.169\.254 is not allowed \(link-local address\)$"
    ):
        check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(UnsafeURL, match=r"^localhost resolves to \S+, which is not allowed \(loop"):
        check_url("http://localhost:8080/")
    with pytest.raises(UnsafeURL, match=r"\(IPv6 form of loopback address 127\.0\.0\.1\)$"):
        check_url("http://[::ffff:127.0.0.1]/")


def test_public_literal_passes_without_any_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("a literal IP needs no DNS lookup")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    check_url("https://93.184.216.34/cat.png", resolve=True)
    check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/cat.png")


def test_allowed_networks_let_private_addresses_through() -> None:
    check_url("http://127.0.0.1:9000/x.png", LOOPBACK)
    check_url("http://[::ffff:127.0.0.1]/x.png", LOOPBACK)
    check_url("http://10.1.2.3/x.png", [ip_network("10.0.0.0/8")])
    with pytest.raises(UnsafeURL):
        check_url("http://10.1.2.3/x.png", LOOPBACK)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://93.184.216.34/x.png", "scheme must be https or http"),
        ("file:///etc/passwd", "scheme must be https or http"),
        ("93.184.216.34/x.png", "scheme must be https or http"),
        ("http:///x.png", "no host"),
        ("http://user:pw@93.184.216.34/x.png", "user name or password"),
        ("http://[::1/x.png", "not a valid URL"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeURL, match=message):
        check_url(url)


def test_https_only_when_asked() -> None:
    with pytest.raises(UnsafeURL, match="scheme must be https"):
        check_url("http://93.184.216.34/", schemes=("https",))


def test_any_private_answer_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"mixed.test": [["93.184.216.34", "10.0.0.5"]]})
    with pytest.raises(UnsafeURL, match=r"mixed\.test resolves to 10\.0\.0\.5"):
        check_url("https://mixed.test/x.png")


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"nowhere.test": [[]]})
    with pytest.raises(UnresolvableHost, match=r"cannot resolve host 'nowhere\.test'") as info:
        check_url("https://nowhere.test/x.png")
    assert info.value.temporary is False


def test_resolve_false_checks_literals_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"private.test": [["10.0.0.5"]]})
    check_url("https://private.test/x.png", resolve=False)
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.1/", resolve=False)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("::ffff:93.184.216.34", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("100.100.100.100", False),
        ("255.255.255.255", False),
        (ip_address("10.0.0.1"), False),
    ],
)
def test_is_public_address(ip: str, expected: bool) -> None:
    assert is_public_address(ip) is expected


def test_is_public_address_honours_allowed() -> None:
    assert is_public_address("127.0.0.1", LOOPBACK)
    assert not is_public_address("::1", LOOPBACK)  # an IPv4 network never admits IPv6
    assert is_public_address("::1", [ip_network("::1/128")])


# -- guarded client (connect-time check) -------------------------------------------------


def test_guarded_client_refuses_loopback_by_default(server: str, client: httpx.Client) -> None:
    with pytest.raises(UnsafeURL):
        client.get(f"{server}/ok")


def test_guarded_client_checks_host_names_when_connecting(
    server: str, client: httpx.Client
) -> None:
    # No check_url here: the name is resolved and refused by the transport itself.
    port = server.rsplit(":", 1)[1]
    with pytest.raises(UnsafeURL, match="localhost resolves to"):
        client.get(f"http://localhost:{port}/ok")


def test_guarded_client_allows_listed_networks(server: str, loopback_client: httpx.Client) -> None:
    assert loopback_client.get(f"{server}/ok").text == "hello"


def test_dns_rebinding_is_caught_at_connect_time(
    server: str, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first answer (seen by check_url) is public, the next (seen when connecting)
    # points at loopback: the classic rebinding attack.
    _fake_dns(monkeypatch, {"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    port = server.rsplit(":", 1)[1]
    url = f"http://rebind.test:{port}/ok"
    check_url(url)
    with pytest.raises(UnsafeURL, match=r"rebind\.test resolves to 127\.0\.0\.1"):
        client.get(url)


def test_guarded_client_connects_to_the_checked_address(
    server: str, loopback_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name resolves once per connection; the request keeps its own Host header.
    _fake_dns(monkeypatch, {"images.test": [["127.0.0.1"]]})
    port = server.rsplit(":", 1)[1]
    response = loopback_client.get(f"http://images.test:{port}/ok")
    assert response.status_code == 200
    assert response.request.headers["host"] == f"images.test:{port}"


def test_guarded_client_refuses_options_that_bypass_the_guard() -> None:
    with pytest.raises(TypeError, match="bypass"):
        guarded_client(timeout=TIMEOUT, transport=httpx.HTTPTransport())
    with pytest.raises(TypeError, match="bypass"):
        guarded_client(timeout=TIMEOUT, proxy="http://127.0.0.1:3128")


def test_guarded_transport_refuses_userinfo() -> None:
    client = httpx.Client(transport=GuardedTransport())
    with client, pytest.raises(UnsafeURL, match="user name"):
        client.get("http://user:secret@93.184.216.34/")


# -- redirects ---------------------------------------------------------------------------


def test_redirect_to_a_disallowed_address_is_refused_at_the_hop(
    server: str, loopback_client: httpx.Client
) -> None:
    url = f"{server}/to?http://10.0.0.1/x"
    with (
        pytest.raises(UnsafeURL, match=r"10\.0\.0\.1"),
        open_following_redirects(loopback_client, url, LOOPBACK),
    ):
        pass


def test_redirects_to_allowed_addresses_are_followed(
    server: str, loopback_client: httpx.Client
) -> None:
    start = f"{server}/to?{server}/to?/ok"  # two hops, the second one relative
    with open_following_redirects(loopback_client, start, LOOPBACK) as response:
        assert response.status_code == 200
        assert response.read() == b"hello"


def test_too_many_redirects(server: str, loopback_client: httpx.Client) -> None:
    with (
        pytest.raises(httpx.TooManyRedirects),
        open_following_redirects(loopback_client, f"{server}/loop", LOOPBACK),
    ):
        pass


def test_the_first_url_is_checked_before_sending(loopback_client: httpx.Client) -> None:
    with (
        pytest.raises(UnsafeURL, match="scheme"),
        open_following_redirects(loopback_client, "ftp://127.0.0.1/x", LOOPBACK),
    ):
        pass


# -- host:port allowances ----------------------------------------------------------------


def test_parse_allowance_reads_cidrs_addresses_and_endpoints() -> None:
    parsed = parse_allowance(" 10.0.0.0/8, 127.0.0.1:9000,[::1]:8443 , Sandbox:9100, ::1 ,")
    assert parsed == (
        ip_network("10.0.0.0/8"),
        Endpoint("127.0.0.1", 9000),
        Endpoint("::1", 8443),
        Endpoint("sandbox", 9100),
        ip_network("::1/128"),
    )
    assert parse_allowance("") == ()


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:70000", "host:", ":80", "a b:80", "x"])
def test_parse_allowance_refuses_malformed_entries(text: str) -> None:
    with pytest.raises(ValueError):
        parse_allowance(text)


def test_endpoint_of_uses_the_default_port() -> None:
    assert endpoint_of("https://API.kie.ai/v1") == Endpoint("api.kie.ai", 443)
    assert endpoint_of("http://127.0.0.1:9100/ark") == Endpoint("127.0.0.1", 9100)


def test_an_endpoint_allows_only_its_own_port(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    allowed = parse_allowance(f"127.0.0.1:{port}")
    with guarded_client(allowed, timeout=TIMEOUT) as guarded:
        assert guarded.get(f"{server}/ok").text == "hello"
        # The same address spelled in decimal reaches the same endpoint.
        assert guarded.get(f"http://2130706433:{port}/ok").text == "hello"
    check_url(f"http://127.0.0.1:{port}/x", allowed)
    for url in (f"http://127.0.0.1:{port + 1}/x", f"http://127.0.0.2:{port}/x"):
        with pytest.raises(UnsafeURL, match="loopback"):
            check_url(url, allowed)
    # Without a port (is_public_address) an endpoint allows nothing.
    assert not is_public_address("127.0.0.1", allowed)


def test_an_endpoint_by_name_allows_whatever_the_name_resolves_to(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(server.rsplit(":", 1)[1])
    _fake_dns(monkeypatch, {"sandbox.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    allowed = parse_allowance(f"sandbox.test:{port}")
    with guarded_client(allowed, timeout=TIMEOUT) as guarded:
        assert guarded.get(f"http://sandbox.test:{port}/ok").text == "hello"
        with pytest.raises(UnsafeURL, match=r"other\.test resolves to"):
            guarded.get(f"http://other.test:{port}/ok")


def test_a_redirect_away_from_an_allowed_endpoint_is_refused(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    allowed = parse_allowance(f"127.0.0.1:{port}")
    # The worker's download client follows redirects itself; each hop is still checked.
    with guarded_client(allowed, timeout=TIMEOUT, follow_redirects=True) as guarded:
        assert guarded.get(f"{server}/to?{server}/ok").text == "hello"
        with pytest.raises(UnsafeURL, match="link-local"):
            guarded.get(f"{server}/to?http://169.254.169.254/latest/")
        with pytest.raises(UnsafeURL, match="loopback"):
            guarded.get(f"{server}/to?http://127.0.0.1:{port + 1}/ok")
