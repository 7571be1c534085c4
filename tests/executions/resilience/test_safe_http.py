"""Safe HTTP: SSRF refusals (the target server must see nothing), redirects, size cap, timeouts."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from django.test import override_settings

from executions.engine.retry import is_retryable
from executions.nodes.base import NodeError
from executions.resilience import safe_http
from tests.support.servers import LocalServer


def refused(url: str, **kwargs: Any) -> NodeError:
    kwargs.setdefault("timeout_s", 3)
    with pytest.raises(NodeError) as info:
        safe_http.fetch("GET", url, **kwargs)
    return info.value


@pytest.fixture
def no_allowlist() -> Iterator[None]:
    with override_settings(ZYRA_HTTP_ALLOWLIST=[]):
        yield


# ----------------------------------------------------------------- address rules


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.7", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("192.0.2.10", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("64:ff9b::a9fe:a9fe", "NAT64"),
        ("2002:7f00:1::", "6to4"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_every_blocked_range_is_named(address: str, reason: str) -> None:
    got = safe_http.ip_block_reason(ipaddress.ip_address(address))
    assert got is not None and reason.lower() in got.lower(), (address, got)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2001:4860:4860::8888"])
def test_public_addresses_pass(address: str) -> None:
    assert safe_http.ip_block_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("3232235777", "192.168.1.1"),
    ],
)
def test_numeric_ipv4_forms_read_like_inet_aton(host: str, expected: str) -> None:
    assert safe_http.parse_numeric_ipv4(host) == ipaddress.IPv4Address(expected)


def test_names_are_not_numeric_forms() -> None:
    assert safe_http.parse_numeric_ipv4("example.com") is None
    assert safe_http.parse_numeric_ipv4("1.2.3.4.5") is None
    assert safe_http.parse_numeric_ipv4("4294967296") is None  # out of range


# ----------------------------------------------------------------- refusals against a live target


@pytest.mark.usefixtures("no_allowlist")
@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",  # a host NAME that resolves to 127.0.0.1: refused at connect
        "http://LocalHost:{port}/secret",
        "http://2130706433:{port}/secret",  # decimal
        "http://0177.0.0.1:{port}/secret",  # octal
        "http://0x7f.1:{port}/secret",  # hex, short form
        "http://127.1:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",  # IPv4-mapped IPv6
        "http://[::ffff:7f00:1]:{port}/secret",
        "http://[::1]:{port}/secret",
        "http://user:pw@127.0.0.1:{port}/secret",
    ],
)
def test_loopback_in_every_spelling_is_refused_and_the_server_sees_nothing(server: LocalServer, template: str) -> None:
    err = refused(template.format(port=server.port))
    assert err.code == "ssrf_blocked", err.message
    assert not is_retryable(err.code)
    time.sleep(0.05)
    assert server.requests == []


@pytest.mark.usefixtures("no_allowlist")
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::]/",
    ],
)
def test_private_metadata_and_special_ranges_are_refused(url: str) -> None:
    start = time.monotonic()
    assert refused(url).code == "ssrf_blocked"
    assert time.monotonic() - start < 1.0  # refused before any connection attempt


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:70/", "dict://x/"])
def test_only_http_and_https(url: str) -> None:
    assert refused(url).code == "ssrf_blocked"


def test_a_name_resolving_to_loopback_is_checked_on_the_resolved_address(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve once, check, connect to that very address, keep the Host header of the name."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        if host == "internal.example.test":
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    # DNS for a made-up name cannot be produced otherwise on this box.
    monkeypatch.setattr(safe_http.socket, "getaddrinfo", resolver)
    url = f"http://internal.example.test:{server.port}/x"
    with override_settings(ZYRA_HTTP_ALLOWLIST=[]):
        assert refused(url).code == "ssrf_blocked"
    assert server.requests == []
    calls.clear()
    # Allow-listing the ADDRESS lets the name through; it is resolved exactly once.
    with override_settings(ZYRA_HTTP_ALLOWLIST=["127.0.0.1"]):
        result = safe_http.fetch("GET", url, timeout_s=3)
    assert result.status == 200
    # One DNS lookup of the name; the socket is then opened on the checked literal address.
    assert calls.count("internal.example.test") == 1
    assert all(c == "internal.example.test" or ipaddress.ip_address(c) for c in calls)
    assert server.requests[0].headers["host"] == f"internal.example.test:{server.port}"


def test_redirect_to_a_private_address_is_refused(server: LocalServer) -> None:
    target = LocalServer()
    try:
        server.route("/go", lambda req: (302, {"Location": f"http://127.0.0.1:{target.port}/secret"}, b""))
        server.route("/go-meta", lambda req: (307, {"Location": "http://169.254.169.254/latest/"}, b""))
        server.route("/go-v6", lambda req: (301, {"Location": f"http://[::ffff:127.0.0.1]:{target.port}/secret"}, b""))
        # The first hop is allowed by NAME only; the redirect target's address is not allow-listed.
        with override_settings(ZYRA_HTTP_ALLOWLIST=["localhost"]):
            for path in ("/go", "/go-meta", "/go-v6"):
                err = refused(f"http://localhost:{server.port}{path}")
                assert err.code == "ssrf_blocked", (path, err.message)
        assert server.count("/go") == 1
        assert target.requests == []
    finally:
        target.close()


def test_redirects_are_followed_and_capped(server: LocalServer) -> None:
    server.route("/a", lambda req: (302, {"Location": "/b"}, b""))
    server.route("/b", lambda req: (303, {"Location": "/c"}, b""))
    result = safe_http.fetch("POST", server.url("/a"), json={"x": 1}, timeout_s=3)
    assert result.status == 200 and result.redirects == 2
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/a"), ("GET", "/b"), ("GET", "/c")]

    server.route("/loop", lambda req: (302, {"Location": "/loop"}, b""))
    err = refused(server.url("/loop"))
    assert err.code == "too_many_redirects"
    assert server.count("/loop") == 6  # the first call and 5 redirects

    err = refused(server.url("/loop"), max_redirects=1)
    assert err.code == "too_many_redirects"


def test_credentials_do_not_follow_a_cross_origin_redirect(server: LocalServer) -> None:
    other = LocalServer()
    try:
        server.route("/a", lambda req: (302, {"Location": f"{other.base}/b"}, b""))
        safe_http.fetch("GET", server.url("/a"), headers={"Authorization": "Bearer s3cret", "X-Keep": "1"}, timeout_s=3)
        assert server.requests[0].headers["authorization"] == "Bearer s3cret"
        assert "authorization" not in other.requests[0].headers
        assert other.requests[0].headers["x-keep"] == "1"
    finally:
        other.close()


# ----------------------------------------------------------------- size cap and timeouts


def test_declared_oversized_response_is_refused(server: LocalServer) -> None:
    server.route("/big", lambda req: (200, {"Content-Type": "text/plain"}, b"x" * 5000))
    err = refused(server.url("/big"), max_bytes=1000)
    assert err.code == "response_too_large"
    with override_settings(ZYRA_HTTP_MAX_RESPONSE_BYTES=4999):
        assert refused(server.url("/big")).code == "response_too_large"
    assert safe_http.fetch("GET", server.url("/big"), max_bytes=5000).content == b"x" * 5000


@pytest.fixture
def streaming_server() -> Iterator[int]:
    """Answers without Content-Length and streams 64 KiB chunks until the client hangs up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                    for _ in range(1000):
                        conn.sendall(b"y" * 65536)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    sock.close()


def test_streamed_response_is_cut_at_the_cap(streaming_server: int) -> None:
    start = time.monotonic()
    err = refused(f"http://127.0.0.1:{streaming_server}/stream", max_bytes=200_000)
    assert err.code == "response_too_large"
    assert time.monotonic() - start < 3


def test_read_timeout(server: LocalServer) -> None:
    server.hang("/hang", 3)
    start = time.monotonic()
    err = refused(server.url("/hang"), timeout_s=0.5)
    assert err.code == "timeout" and is_retryable("timeout")
    assert time.monotonic() - start < 2.0


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = refused(f"http://127.0.0.1:{port}/")
    assert err.code == "connection"


def test_malformed_url_is_a_config_error() -> None:
    assert refused("http://[::1/").code == "config"
    assert refused("").code == "config"


# ----------------------------------------------------------------- status and Retry-After


def test_classify_status() -> None:
    assert safe_http.classify_status(200) is None
    assert safe_http.classify_status(503).code == "http_5xx"  # type: ignore[union-attr]
    e429 = safe_http.classify_status(429, {"retry-after": "7"})
    assert e429 is not None and e429.code == "http_429" and e429.retry_after_s == 7.0
    assert safe_http.classify_status(401).code == "auth"  # type: ignore[union-attr]
    assert safe_http.classify_status(403).code == "auth"  # type: ignore[union-attr]
    assert safe_http.classify_status(404).code == "http_4xx"  # type: ignore[union-attr]


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    assert safe_http.parse_retry_after("2") == 2.0
    assert safe_http.parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert safe_http.parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert safe_http.parse_retry_after("soon") is None
    assert safe_http.parse_retry_after(None) is None


# ----------------------------------------------------------------- TLS: SNI and Host of the name, socket to the checked IP


@pytest.fixture
def tls_server(tmp_path: Any) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for "localhost" only."""
    import datetime as dt
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    seen: dict[str, Any] = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen["requests"] += 1
            seen["host"] = self.headers["Host"]
            body = b'{"tls": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda sock, server_name, ctx: seen.__setitem__("sni", server_name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], str(cert_path), seen
    httpd.shutdown()
    httpd.server_close()


def test_https_speaks_tls_to_the_name_while_connecting_to_the_checked_address(
    tls_server: tuple[int, str, dict[str, Any]],
) -> None:
    port, ca, seen = tls_server
    with override_settings(ZYRA_HTTP_ALLOWLIST=["localhost"], ZYRA_HTTP_CA_BUNDLE=ca):
        result = safe_http.fetch("GET", f"https://localhost:{port}/x", timeout_s=5)
        assert result.status == 200 and result.content == b'{"tls": true}'
        assert seen["sni"] == "localhost" and seen["host"] == f"localhost:{port}"
        # The certificate is checked against the NAME: the bare address does not match it.
        with override_settings(ZYRA_HTTP_ALLOWLIST=["127.0.0.1"]):
            err = refused(f"https://127.0.0.1:{port}/x")
        assert err.code == "connection" and "certificate" in err.message.lower()
    with override_settings(ZYRA_HTTP_ALLOWLIST=[], ZYRA_HTTP_CA_BUNDLE=ca):
        assert refused(f"https://localhost:{port}/x").code == "ssrf_blocked"
    assert seen["requests"] == 1
