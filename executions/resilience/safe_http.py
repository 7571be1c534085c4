"""SSRF-safe outbound HTTP on httpx.

The guard sits where the socket is opened, not in front of the URL parser:
a custom httpcore network backend resolves the host name once, refuses the
call if any resolved address is private / loopback / link-local / multicast /
CGNAT / reserved / metadata (IPv4 and IPv6, mapped and tunnelled forms), and
connects to that very address. httpcore then speaks TLS with the original
name as SNI and sends the original Host header, so there is no second DNS
lookup an attacker could rebind between check and connect. Redirects are
followed here, one hop at a time, and every hop goes through the same check.

Obfuscated numeric hosts (``http://2130706433/``, ``http://0177.0.0.1/``,
``http://0x7f.1/``) are refused outright: they have no legitimate use and
resolvers disagree on what they mean.

Allow-list (``settings.ZYRA_HTTP_ALLOWLIST``): host names (exact,
case-insensitive), IP addresses or CIDR networks exempt from the address check.

All failures are ``NodeError`` with codes ``ssrf_blocked`` (never retried),
``timeout``, ``connection``, ``response_too_large``, ``config`` (malformed URL);
``classify_status`` maps a status to ``http_5xx`` / ``http_429`` / ``auth`` /
``http_4xx``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import os
import re
import socket
import threading
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from django.conf import settings

from executions.nodes.base import NodeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
USER_AGENT = "Zyra/1.0 (+workflow engine)"


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# (networks, reason). Checked in order; the first match names the refusal.
_V4_RULES: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32"), "cloud metadata address"),
    (_nets("0.0.0.0/8"), "unspecified/this-network address"),
    (_nets("127.0.0.0/8"), "loopback address"),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "private address"),
    (_nets("100.64.0.0/10"), "carrier-grade NAT address"),
    (_nets("169.254.0.0/16"), "link-local address"),
    (_nets("224.0.0.0/4"), "multicast address"),
    (_nets("255.255.255.255/32"), "broadcast address"),
    (
        _nets("192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"),
        "reserved address",
    ),
)
_V6_RULES: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("fd00:ec2::254/128"), "cloud metadata address"),
    (_nets("::/128"), "unspecified address"),
    (_nets("::1/128"), "loopback address"),
    (_nets("::ffff:0:0/96", "::ffff:0:0:0/96"), "IPv4-mapped IPv6 address"),
    (_nets("::/96"), "IPv4-compatible IPv6 address"),
    (_nets("fc00::/7"), "unique-local (private) address"),
    (_nets("fe80::/10"), "link-local address"),
    (_nets("fec0::/10"), "site-local address"),
    (_nets("ff00::/8"), "multicast address"),
    (_nets("64:ff9b::/96", "64:ff9b:1::/48"), "NAT64 address"),
    (_nets("2002::/16"), "6to4 address"),
    (_nets("2001::/32"), "Teredo address"),
    (_nets("100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16"), "reserved address"),
)


def ip_block_reason(ip: IPAddress) -> str | None:
    """Why connecting to ``ip`` is refused, or None when it is a public unicast address."""
    rules = _V4_RULES if ip.version == 4 else _V6_RULES
    for networks, reason in rules:
        if any(ip in net for net in networks):
            return reason
    if not ip.is_global:
        # Catch-all for special-purpose ranges the table above does not name.
        return "non-global address"
    return None


_NUMERIC_PART = r"(?:0[xX][0-9a-fA-F]*|[0-9]+)"
_NUMERIC_HOST = re.compile(rf"^{_NUMERIC_PART}(?:\.{_NUMERIC_PART}){{0,3}}\.?$")


def parse_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's reading of a numeric host (``2130706433``, ``0177.1``, ``0x7f.0.0.1``), or None."""
    if not _NUMERIC_HOST.match(host):
        return None
    parts = host.rstrip(".").split(".")
    values: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


@dataclass(frozen=True)
class Policy:
    """What the guard lets through; built from settings at call time."""

    hosts: frozenset[str]  # allow-listed host names (lower case, no trailing dot)
    networks: tuple[IPNetwork, ...]  # allow-listed addresses / networks

    @classmethod
    def from_allowlist(cls, entries: Iterable[str]) -> Policy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().strip("[]").lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def ip_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


_policies: dict[tuple[str, ...], Policy] = {}


def current_policy() -> Policy:
    """The policy of the allow-list in the settings now (built once per distinct list)."""
    entries = tuple(getattr(settings, "ZYRA_HTTP_ALLOWLIST", []) or [])
    policy = _policies.get(entries)
    if policy is None:
        if len(_policies) > 64:
            _policies.clear()
        policy = _policies[entries] = Policy.from_allowlist(entries)
    return policy


class SSRFBlocked(Exception):
    """Raised inside the transport; becomes NodeError("ssrf_blocked")."""

    def __init__(self, host: str, reason: str, ip: str | None = None) -> None:
        where = f"{host} ({ip})" if ip and ip != host else host
        super().__init__(f"refused to connect to {where}: {reason}")
        self.host = host
        self.reason = reason
        self.ip = ip


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_host(host: str, policy: Policy) -> None:
    """Refuse obviously forbidden hosts before any socket is opened (no DNS here)."""
    bare = host.strip("[]")
    if not bare:
        raise SSRFBlocked(host, "empty host")
    ip = _literal_ip(bare)
    if ip is None:
        numeric = parse_numeric_ipv4(bare)
        if numeric is not None:
            # Not a dotted quad but still an address: refuse the obfuscated form outright.
            raise SSRFBlocked(host, f"numeric host form of {numeric} is not accepted", str(numeric))
        if _NUMERIC_HOST.match(bare):
            raise SSRFBlocked(host, "ambiguous numeric host")
        return
    if policy.host_allowed(bare) or policy.ip_allowed(ip):
        return
    reason = ip_block_reason(ip)
    if reason:
        raise SSRFBlocked(host, reason, str(ip))


def resolve_checked(host: str, port: int, policy: Policy) -> list[str]:
    """Resolve once and check every address; returns the addresses to connect to."""
    check_host(host, policy)
    bare = host.strip("[]")
    literal = _literal_ip(bare)
    if literal is not None:
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(bare, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {bare}: {exc}") from exc
    addresses: list[str] = []
    name_allowed = policy.host_allowed(bare)
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if not name_allowed and not policy.ip_allowed(ip):
            reason = ip_block_reason(ip)
            if reason:
                # One bad address taints the name: a resolver answer mixing public
                # and private addresses is the classic rebinding setup.
                raise SSRFBlocked(bare, reason, str(ip))
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise httpcore.ConnectError(f"{bare} resolved to no address")
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, validates and connects to the validated IP (see module docstring)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port, self.policy)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise SSRFBlocked(path, "unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the pool rebuilt on the guarded network backend; never a proxy."""

    def __init__(self, policy: Policy, limits: httpx.Limits, ca_bundle: str = "") -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        if ca_bundle:
            # Extra trust anchors (an internal CA) on top of the public ones; never "verify=False".
            ssl_context.load_verify_locations(cafile=ca_bundle)
        # The same context for httpx's own pool (replaced below): building a context loads the CA
        # bundle, tens of milliseconds of CPU, and a second one was thrown away unused.
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


_clients: dict[tuple[int, Policy, str], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(policy: Policy) -> httpx.Client:
    # One pooled client per process and policy: a connection opened under a
    # laxer allow-list is never reused under a stricter one, and a forked
    # worker never shares its parent's sockets.
    ca_bundle = str(getattr(settings, "ZYRA_HTTP_CA_BUNDLE", "") or "")
    key = (os.getpid(), policy, ca_bundle)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0)
                client = httpx.Client(
                    transport=GuardedTransport(policy, limits, ca_bundle),
                    trust_env=False,
                    follow_redirects=False,
                    headers={"User-Agent": USER_AGENT},
                )
                _clients[key] = client
    return client


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content: bytes
    url: str  # final URL after redirects
    elapsed_ms: float
    redirects: int

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _validate_url(url: str, policy: Policy) -> tuple[str, str]:
    """Scheme + host pre-check on the raw string, before httpx normalises it."""
    if not isinstance(url, str) or not url.strip():
        raise NodeError("config", "URL is empty")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError as exc:
        raise NodeError("config", f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise NodeError(
            "ssrf_blocked",
            f"scheme {scheme or '(none)'!r} is not allowed (only http and https)",
            details={"host": host, "reason": "scheme"},
        )
    if not host:
        raise NodeError("config", "URL has no host")
    try:
        check_host(host, policy)
    except SSRFBlocked as exc:
        raise _ssrf_error(exc) from None
    return scheme, host


def warm_up() -> None:
    """Build this process's pooled client now (a worker at start) rather than in its first call."""
    _client(current_policy())


def precheck(url: str) -> None:
    """Scheme and literal-address check without DNS or I/O (fetch repeats it, and checks what it connects to).

    It also builds this process's pooled client if it does not exist yet (its TLS context alone
    takes tens of milliseconds), so that a caller who takes a rate-limit slot after the precheck
    sends within a millisecond or two of the grant: a first call that built the client after its
    grant reached the service up to 0.3 s late, bunched with the next calls' prompt sends, and the
    service saw 11 calls in one second under a limit of 10.
    """
    policy = current_policy()
    _validate_url(url, policy)
    _client(policy)


def _ssrf_error(exc: SSRFBlocked) -> NodeError:
    return NodeError("ssrf_blocked", str(exc), details={"host": exc.host, "ip": exc.ip, "reason": exc.reason})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def fetch(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
    max_bytes: int | None = None,
    max_redirects: int | None = None,
    follow_redirects: bool = True,
    has_json: bool | None = None,
) -> HttpResult:
    """One guarded call (following redirects itself). Raises NodeError on failure; any status is returned.

    ``has_json`` distinguishes "send JSON null" from "no JSON body"; by default
    a JSON body is sent when ``json`` is not None.
    """
    policy = current_policy()
    total = float(timeout_s if timeout_s is not None else settings.ZYRA_HTTP_TIMEOUT_S)
    connect_cap = float(connect_timeout_s if connect_timeout_s is not None else settings.ZYRA_HTTP_CONNECT_TIMEOUT_S)
    cap = int(max_bytes if max_bytes is not None else settings.ZYRA_HTTP_MAX_RESPONSE_BYTES)
    hops_left = int(max_redirects if max_redirects is not None else settings.ZYRA_HTTP_MAX_REDIRECTS)
    started = time.monotonic()
    deadline = started + total
    client = _client(policy)

    send_json = json is not None if has_json is None else has_json
    body: bytes | None
    req_headers = httpx.Headers(dict(headers or {}))
    if send_json:
        import json as jsonlib

        body = jsonlib.dumps(json, separators=(",", ":"), default=str).encode()
        req_headers.setdefault("Content-Type", "application/json")
    elif content is not None:
        body = content.encode() if isinstance(content, str) else bytes(content)
    else:
        body = None
    method = method.upper()
    current = url.strip() if isinstance(url, str) else url
    redirects = 0
    first = True

    while True:
        _validate_url(current, policy)
        try:
            request_url = httpx.URL(current, params=dict(params)) if (first and params) else httpx.URL(current)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise NodeError("config", f"malformed URL: {exc}") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NodeError("timeout", f"timed out after {total:g}s", details={"url_host": request_url.host})
        timeout = httpx.Timeout(connect=min(connect_cap, remaining), read=remaining, write=remaining, pool=remaining)
        request = client.build_request(method, request_url, headers=req_headers, content=body, timeout=timeout)
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except SSRFBlocked as exc:
            raise _ssrf_error(exc) from None
        except httpx.TimeoutException as exc:
            raise NodeError(
                "timeout", f"{type(exc).__name__} calling {request_url.host}: {exc or 'timed out'}", details={"host": request_url.host}
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise NodeError(
                "connection", f"{type(exc).__name__} calling {request_url.host}: {exc}", details={"host": request_url.host}
            ) from None
        try:
            location = response.headers.get("location")
            if follow_redirects and response.status_code in REDIRECT_STATUSES and location:
                if redirects >= hops_left:
                    raise NodeError("too_many_redirects", f"too many redirects (more than {hops_left})", details={"host": request_url.host})
                next_url = urljoin(str(request_url), location)
                redirects += 1
                first = False
                if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302) and method == "POST"):
                    method = "GET"
                    body = None
                    for name in ("content-type", "content-length", "transfer-encoding"):
                        req_headers.pop(name, None)
                try:
                    if _origin(httpx.URL(next_url)) != _origin(request_url):
                        for name in _CREDENTIAL_HEADERS:
                            req_headers.pop(name, None)
                except httpx.InvalidURL:
                    pass  # _validate_url reports it on the next hop
                current = next_url
                continue
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise NodeError("response_too_large", f"response of {declared} bytes exceeds the {cap}-byte cap", details={"limit": cap})
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise NodeError("response_too_large", f"response exceeds the {cap}-byte cap", details={"limit": cap})
                    if time.monotonic() > deadline:
                        raise NodeError("timeout", f"timed out after {total:g}s reading the response", details={"host": request_url.host})
                    chunks.append(chunk)
            except httpx.TimeoutException:
                raise NodeError("timeout", f"timed out after {total:g}s reading the response", details={"host": request_url.host}) from None
            except httpx.TransportError as exc:
                raise NodeError(
                    "connection", f"{type(exc).__name__} reading from {request_url.host}: {exc}", details={"host": request_url.host}
                ) from None
            return HttpResult(
                status=response.status_code,
                headers={k.lower(): v for k, v in response.headers.items()},
                content=b"".join(chunks),
                url=str(request_url),
                elapsed_ms=(time.monotonic() - started) * 1000.0,
                redirects=redirects,
            )
        finally:
            response.close()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_status(status: int, headers: Mapping[str, str] | None = None, *, host: str = "") -> NodeError | None:
    """The NodeError a non-2xx/3xx status means (5xx and 429 retryable, other 4xx not), or None."""
    where = f" from {host}" if host else ""
    if status >= 500:
        return NodeError("http_5xx", f"HTTP {status}{where}", details={"status": status})
    if status == 429:
        retry_after = parse_retry_after((headers or {}).get("retry-after"))
        return NodeError("http_429", f"HTTP 429 (rate limited){where}", details={"status": status}, retry_after_s=retry_after)
    if status in (401, 403):
        return NodeError("auth", f"HTTP {status} (not authorised){where}", details={"status": status})
    if status >= 400:
        return NodeError("http_4xx", f"HTTP {status}{where}", details={"status": status})
    return None
