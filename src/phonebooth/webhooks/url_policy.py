"""Outbound URL policy (contract 4.3) and the HTTP client that enforces it on every send.

A customer-supplied URL is attacker-controlled input: without this policy a webhook or tool URL
could make the server read cloud metadata or internal services. So the host is resolved once,
every address is judged, and the connection goes to a judged address (no DNS rebinding between
check and connect). TLS and the `Host` header still use the URL's host name, so certificates
are verified as usual. No redirect is followed and no proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from phonebooth.core.errors import PhoneboothError

__all__ = [
    "DnsFailure",
    "FailureReason",
    "OutboundError",
    "PolicyTransport",
    "ResolvedTarget",
    "Resolver",
    "UrlNotAllowed",
    "UrlPolicy",
    "Verdict",
    "check_literal_url",
    "classify_address",
    "failure_reason",
    "make_client",
    "system_resolver",
]

Verdict = Literal["refused", "private", "global"]
FailureReason = Literal["url_not_allowed", "dns", "timeout", "tls", "connection"]
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = IPv4Address | IPv6Address

_METADATA = frozenset(
    ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254")
)
_SHARED = ip_network("100.64.0.0/10")
_NAT64 = ip_network("64:ff9b::/96")
_NAT64_LOCAL = ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ip_network("::/96")
_GLOBAL_UNICAST_V6 = ip_network("2000::/3")
_SEVERITY: dict[Verdict, int] = {"global": 0, "private": 1, "refused": 2}
_PRIVATE_OFF = "private addresses are not allowed (PHONEBOOTH_ALLOW_PRIVATE_URLS is off)"


class OutboundError(PhoneboothError):
    """A request to a customer URL that was not sent because of where it points."""


class UrlNotAllowed(OutboundError):
    """The URL, or an address its host resolves to, is refused by the policy."""


class DnsFailure(OutboundError):
    """The URL's host name could not be resolved."""


# -- judging one address (pure) ----------------------------------------------------------------


def _parse(ip: str | IPAddress) -> IPAddress:
    if isinstance(ip, str):
        return ip_address(ip.split("%", 1)[0])  # a zone index does not change the verdict
    return ip


def _wrapped_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address, Verdict] | None:
    """The IPv4 address an IPv6 form carries, what form it is, and the least verdict it gets."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped, "global"
    if ip in _NAT64 or ip in _NAT64_LOCAL:  # the /96 layout: IPv4 in the last 32 bits
        return "NAT64", IPv4Address(int(ip) & 0xFFFFFFFF), "global"
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour, "global"
    if ip in _IPV4_COMPATIBLE:  # deprecated ::a.b.c.d; never global, but never less than its IPv4
        return "IPv4-compatible", IPv4Address(int(ip) & 0xFFFFFFFF), "private"
    return None


def _assess(ip: IPAddress) -> tuple[Verdict, str]:
    """Verdict plus the reason, phrased to follow the address in a message."""
    if ip in _METADATA:
        return "refused", "is a cloud metadata address"
    if ip.is_unspecified:
        return "refused", "is unspecified"
    if ip.is_link_local:
        return "refused", "is link-local"
    if ip.is_multicast:
        return "refused", "is multicast"
    if ip.is_loopback:
        return "private", "is loopback"
    if isinstance(ip, IPv6Address):
        wrapped = _wrapped_ipv4(ip)
        if wrapped is not None:
            form, inner, floor = wrapped
            verdict, reason = _assess(inner)
            if _SEVERITY[floor] > _SEVERITY[verdict]:
                verdict, reason = floor, "is not a global address"
            return verdict, f"carries IPv4 {inner} ({form}), which {reason}"
        if ip.is_site_local or ip not in _GLOBAL_UNICAST_V6:
            return "private", "is not a global unicast address"
    if ip in _SHARED:
        return "private", "is in the shared address space 100.64.0.0/10"
    if ip.is_private:
        return "private", "is private"
    if not ip.is_global:
        return "private", "is not a global address"
    return "global", "is global"


def classify_address(ip: str | IPAddress) -> Verdict:
    """`refused` never, `private` only when private URLs are allowed, `global` always allowed.

    Raises ValueError when `ip` is not an IP address.
    """
    return _assess(_parse(ip))[0]


def _literal_ip(host: str) -> IPAddress | None:
    """The address a host names literally, including legacy IPv4 forms (`127.1`, `0x7f.1`)."""
    try:
        return _parse(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # the resolver would accept these too; judge them as the address they are
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _refusal(ip: IPAddress, allow_private: bool) -> str | None:
    verdict, reason = _assess(ip)
    if verdict == "refused":
        return f"{ip} {reason}"
    if verdict == "private" and not allow_private:
        return f"{ip} {reason}; {_PRIVATE_OFF}"
    return None


def check_literal_url(url: str, *, allow_private: bool) -> str | None:
    """Why the REST API must not store `url`, or None. Host names pass: they are judged at send."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for an out-of-range or non-numeric port
    except ValueError as exc:
        return f"URL is malformed: {exc}"
    if parts.scheme.lower() not in {"http", "https"}:
        return "URL scheme must be http or https"
    if not parts.hostname:
        return "URL has no host"
    literal = _literal_ip(parts.hostname)
    if literal is None:
        return None
    refusal = _refusal(literal, allow_private)
    return None if refusal is None else f"URL host {refusal}"


# -- resolving a URL ---------------------------------------------------------------------------


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class ResolvedTarget:
    """A URL's host and the addresses it resolved to, every one of them judged allowed."""

    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class UrlPolicy:
    """Which destinations outbound requests may reach; the resolver is injectable for tests."""

    allow_private: bool
    resolver: Resolver = field(default=system_resolver)

    async def resolve(
        self, url: str | httpx.URL, *, timeout: float | None = None
    ) -> ResolvedTarget:
        """Resolve the URL's host once and judge every address; raise if any is not allowed.

        Refusing when any address is bad (not just the first) keeps a host that answers with a
        mix of public and internal addresses from reaching the internal one on a retry.
        """
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        if parsed.scheme not in {"http", "https"}:
            raise UrlNotAllowed("URL scheme must be http or https")
        host = parsed.raw_host.decode("ascii")
        if not host:
            raise UrlNotAllowed("URL has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        literal = _literal_ip(host)
        addresses = [literal] if literal is not None else await self._lookup(host, port, timeout)
        for address in addresses:
            refusal = _refusal(address, self.allow_private)
            if refusal is not None:
                prefix = "" if literal is not None else f"{host} resolves to "
                raise UrlNotAllowed(f"URL not allowed: {prefix}{refusal}")
        return ResolvedTarget(host, port, tuple(str(a) for a in addresses))

    async def _lookup(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        try:
            async with asyncio.timeout(timeout):
                answers = await self.resolver(host, port)
            addresses = [_parse(answer) for answer in answers]
        except TimeoutError:
            raise DnsFailure(f"resolving {host} timed out") from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise DnsFailure(f"resolving {host} failed: {exc}") from exc
        if not addresses:
            raise DnsFailure(f"{host} has no addresses")
        return addresses


# -- the HTTP client that connects only to judged addresses ------------------------------------


@dataclass(frozen=True)
class _Pin:
    host: str
    addresses: tuple[str, ...]


# Set by PolicyTransport for the duration of one request; httpcore connects in the same task,
# so concurrent requests through one shared client each see only their own pin.
_PIN: ContextVar[_Pin | None] = ContextVar("phonebooth_outbound_pin", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the judged address instead of resolving the host name again."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host:
            raise httpcore.ConnectError(f"{host} was not resolved through the URL policy")
        last_error: httpcore.ConnectError | None = None
        for address in pin.addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # addresses is never empty
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PolicyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with resolve-and-judge before every request and no proxy support.

    It reuses httpx's request/response plumbing and exception mapping, and swaps in a
    connection pool whose network backend only connects to the addresses judged for this
    request. TLS server_hostname stays the URL's host, so SNI and certificates are unchanged.
    A kept-alive connection is reused only for the same scheme, host and port, and it leads to
    an address judged under this same policy.
    """

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self.policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(httpcore.AnyIOBackend()),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        target = await self.policy.resolve(request.url, timeout=timeouts.get("connect"))
        token = _PIN.set(_Pin(target.host, target.addresses))
        try:
            return await super().handle_async_request(request)
        finally:
            _PIN.reset(token)


def make_client(
    policy: UrlPolicy,
    *,
    timeout: float | httpx.Timeout,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The one client for webhooks and tools: policy-checked, no redirects, no env proxies.

    Safe to share between many concurrent requests to different hosts. Every send through it
    (including any redirect hop a caller opts into) is resolved, judged and pinned; it raises
    `UrlNotAllowed` or `DnsFailure` before anything is sent.
    """
    return httpx.AsyncClient(
        transport=PolicyTransport(policy, verify=verify),
        trust_env=False,
        follow_redirects=False,
        timeout=timeout,
    )


def _caused_by_tls(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def failure_reason(exc: BaseException) -> FailureReason:
    """Map an exception from a send to the failure category of contract 3.3."""
    if isinstance(exc, UrlNotAllowed):
        return "url_not_allowed"
    if isinstance(exc, DnsFailure):
        return "dns"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if _caused_by_tls(exc):
        return "tls"
    return "connection"
