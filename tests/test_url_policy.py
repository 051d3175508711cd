"""URL policy: address tables, literal URL checks, and real HTTP through the pinned client."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from phonebooth.webhooks.url_policy import (
    DnsFailure,
    OutboundError,
    UrlNotAllowed,
    UrlPolicy,
    check_literal_url,
    classify_address,
    failure_reason,
    make_client,
)

# -- classify_address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "verdict"),
    [
        # always refused: metadata, link-local, multicast, unspecified, in any wrapping
        ("169.254.169.254", "refused"),
        ("::ffff:169.254.169.254", "refused"),
        ("fd00:ec2::254", "refused"),
        ("100.100.100.200", "refused"),
        ("::ffff:100.100.100.200", "refused"),
        ("64:ff9b::a9fe:a9fe", "refused"),
        ("64:ff9b:1::a9fe:a9fe", "refused"),
        ("2002:a9fe:a9fe::1", "refused"),
        ("::a9fe:a9fe", "refused"),
        ("169.254.1.1", "refused"),
        ("fe80::1", "refused"),
        ("fe80::1%eth0", "refused"),
        ("224.0.0.1", "refused"),
        ("239.255.255.250", "refused"),
        ("ff02::1", "refused"),
        ("0.0.0.0", "refused"),
        ("::", "refused"),
        ("::ffff:0.0.0.0", "refused"),
        # private: allowed only with PHONEBOOTH_ALLOW_PRIVATE_URLS
        ("127.0.0.1", "private"),
        ("127.3.2.1", "private"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("100.127.255.254", "private"),
        ("198.18.0.1", "private"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("::1", "private"),
        ("fc00::1", "private"),
        ("fd00::1", "private"),
        ("fec0::1", "private"),
        ("2001:db8::1", "private"),
        ("::ffff:127.0.0.1", "private"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b::7f00:1", "private"),
        ("::808:808", "private"),  # deprecated IPv4-compatible form is never global
        # global
        ("8.8.8.8", "global"),
        ("1.1.1.1", "global"),
        ("100.128.0.1", "global"),
        ("2606:4700::1111", "global"),
        ("::ffff:8.8.8.8", "global"),
        ("64:ff9b::808:808", "global"),
        ("2002:808:808::1", "global"),
    ],
)
def test_classify_address(address: str, verdict: str) -> None:
    assert classify_address(address) == verdict


def test_classify_address_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        classify_address("example.com")


# -- check_literal_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "when_private_off", "when_private_on"),
    [
        ("https://api.example.com/x?y=1", None, None),
        ("HTTPS://8.8.8.8/x", None, None),
        ("http://internal.example/", None, None),  # names are judged at send time
        ("ftp://example.com/", "scheme", "scheme"),
        ("javascript:alert(1)", "scheme", "scheme"),
        ("example.com/path", "scheme", "scheme"),
        ("http:///path", "no host", "no host"),
        ("http://example.com:99999/", "malformed", "malformed"),
        ("http://[::1/", "malformed", "malformed"),
        ("http://169.254.169.254/latest/meta-data", "metadata", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata", "metadata"),
        ("http://100.100.100.200/", "metadata", "metadata"),
        ("http://0.0.0.0:8000/", "unspecified", "unspecified"),
        ("http://[fe80::1%25eth0]/", "link-local", "link-local"),
        ("http://127.0.0.1:8080/hook", "loopback", None),
        ("http://[::1]:8080/hook", "loopback", None),
        ("http://10.0.0.7/hook", "private", None),
        ("http://100.64.0.1/hook", "shared", None),
        ("http://127.1/", "loopback", None),  # legacy forms the resolver would accept
        ("http://2130706433/", "loopback", None),
        ("http://0x7f.0.0.1/", "loopback", None),
        ("http://0xa9fea9fe/", "metadata", "metadata"),
    ],
)
def test_check_literal_url(
    url: str, when_private_off: str | None, when_private_on: str | None
) -> None:
    for allow_private, expected in ((False, when_private_off), (True, when_private_on)):
        message = check_literal_url(url, allow_private=allow_private)
        if expected is None:
            assert message is None
        else:
            assert message is not None and expected in message, message


# -- a real HTTP server on 127.0.0.1 -----------------------------------------------------------


@dataclass
class Seen:
    """One request as the server received it."""

    target: str
    headers: dict[str, str]


@dataclass
class Server:
    port: int
    host: str = "127.0.0.1"
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


async def _handle(
    server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
    }
    await reader.readexactly(int(headers.get("content-length", "0")))
    server.seen.append(Seen(target, headers))
    if target.startswith("/redirect"):
        status, extra, body = "302 Found", "Location: http://169.254.169.254/latest\r\n", b""
    else:
        status, extra, body = "200 OK", "", f"hello from {server.host}".encode()
    writer.write(
        f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    writer.close()


async def start_server(
    host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> tuple[Server, asyncio.Server]:
    state = Server(port=0, host=host)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(state, reader, writer)

    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: state.sni.append(name)
    server = await asyncio.start_server(handle, host, port, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    return state, server


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state, srv = await start_server()
    async with srv:
        yield state


def fixed_resolver(
    table: dict[str, list[str]], calls: list[tuple[str, int]] | None = None
) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        await asyncio.sleep(0)  # let concurrent requests interleave
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


async def test_private_literal_allowed_when_private_urls_are_on(server: Server) -> None:
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/hook?x=1")
    assert response.status_code == 200
    assert [s.target for s in server.seen] == ["/hook?x=1"]


async def test_private_literal_refused_when_private_urls_are_off(server: Server) -> None:
    async with make_client(UrlPolicy(allow_private=False), timeout=5) as client:
        with pytest.raises(UrlNotAllowed, match=r"127\.0\.0\.1 is loopback") as info:
            await client.get(f"http://127.0.0.1:{server.port}/hook")
    assert failure_reason(info.value) == "url_not_allowed"
    assert isinstance(info.value, OutboundError)
    assert server.seen == []


async def test_name_resolving_to_private_is_refused(server: Server) -> None:
    policy = UrlPolicy(
        allow_private=False, resolver=fixed_resolver({"internal.example": ["127.0.0.1"]})
    )
    async with make_client(policy, timeout=5) as client:
        with pytest.raises(UrlNotAllowed, match=r"internal\.example resolves to 127\.0\.0\.1"):
            await client.get(f"http://internal.example:{server.port}/")
    assert server.seen == []


async def test_name_resolving_to_private_reaches_the_checked_address(server: Server) -> None:
    calls: list[tuple[str, int]] = []
    resolver = fixed_resolver({"internal.example": ["127.0.0.1"]}, calls)
    async with make_client(UrlPolicy(allow_private=True, resolver=resolver), timeout=5) as client:
        response = await client.post(f"http://internal.example:{server.port}/hook", content=b"{}")
    assert response.status_code == 200 and response.text == "hello from 127.0.0.1"
    assert calls == [("internal.example", server.port)]
    assert server.seen[0].headers["host"] == f"internal.example:{server.port}"


async def test_any_bad_address_refuses_the_whole_name(server: Server) -> None:
    table = {"mixed.example": ["8.8.8.8", "10.0.0.1"], "meta.example": ["169.254.169.254"]}
    strict = UrlPolicy(allow_private=False, resolver=fixed_resolver(table))
    with pytest.raises(UrlNotAllowed, match=r"10\.0\.0\.1 is private"):
        await strict.resolve("https://mixed.example/")
    lenient = UrlPolicy(allow_private=True, resolver=fixed_resolver(table))
    with pytest.raises(UrlNotAllowed, match="cloud metadata"):
        await lenient.resolve("https://meta.example/")
    target = await lenient.resolve("https://mixed.example/x")
    assert (target.host, target.port, target.addresses) == (
        "mixed.example",
        443,
        ("8.8.8.8", "10.0.0.1"),
    )


async def test_resolve_refuses_other_schemes() -> None:
    with pytest.raises(UrlNotAllowed, match="scheme"):
        await UrlPolicy(allow_private=True).resolve("ftp://127.0.0.1/")


async def test_redirect_is_not_followed(server: Server) -> None:
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "http://169.254.169.254/latest"
    assert len(server.seen) == 1


async def test_redirect_hop_is_policy_checked_even_if_a_caller_opts_in(server: Server) -> None:
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        request = client.build_request("GET", f"http://127.0.0.1:{server.port}/redirect")
        with pytest.raises(UrlNotAllowed, match=r"169\.254\.169\.254"):
            await client.send(request, follow_redirects=True)


async def test_environment_proxy_is_ignored(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens
    url = f"http://127.0.0.1:{server.port}/through"
    async with httpx.AsyncClient(timeout=5) as trusting:  # control: a default client obeys it
        with pytest.raises(httpx.HTTPError):
            await trusting.get(url)
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert [s.target for s in server.seen] == ["/through"]


async def test_dns_failure_and_timeout() -> None:
    policy = UrlPolicy(allow_private=True, resolver=fixed_resolver({}))
    async with make_client(policy, timeout=5) as client:
        with pytest.raises(DnsFailure, match=r"nowhere\.example") as info:
            await client.get("http://nowhere.example/")
    assert failure_reason(info.value) == "dns"

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["127.0.0.1"]

    async with make_client(UrlPolicy(allow_private=True, resolver=slow), timeout=0.05) as client:
        with pytest.raises(DnsFailure, match="timed out"):
            await client.get("http://slow.example/")


async def test_resolver_garbage_is_a_dns_failure() -> None:
    policy = UrlPolicy(allow_private=True, resolver=fixed_resolver({"odd.example": ["nonsense"]}))
    with pytest.raises(DnsFailure):
        await policy.resolve("http://odd.example/")
    empty = UrlPolicy(allow_private=True, resolver=fixed_resolver({"void.example": []}))
    with pytest.raises(DnsFailure, match="no addresses"):
        await empty.resolve("http://void.example/")


async def test_system_resolver_handles_localhost(server: Server) -> None:
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        try:
            response = await client.get(f"http://localhost:{server.port}/local")
        except httpx.ConnectError:
            pytest.skip("localhost does not resolve to 127.0.0.1 here")
    assert response.status_code == 200
    with pytest.raises(UrlNotAllowed, match="localhost resolves to"):
        await UrlPolicy(allow_private=False).resolve(f"http://localhost:{server.port}/")


async def test_connection_refused_is_a_connection_failure() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"http://127.0.0.1:{port}/")
    assert failure_reason(info.value) == "connection"


async def test_one_client_many_hosts_concurrently() -> None:
    """Two servers on the same port of two loopback addresses: only the pin tells them apart."""
    first, first_srv = await start_server("127.0.0.1")
    try:
        second, second_srv = await start_server("127.0.0.2", first.port)
    except OSError:
        first_srv.close()
        pytest.skip("cannot bind 127.0.0.2 on this machine")
    resolver = fixed_resolver({"one.example": ["127.0.0.1"], "two.example": ["127.0.0.2"]})
    policy = UrlPolicy(allow_private=True, resolver=resolver)
    names = ["one.example", "two.example"] * 20
    async with first_srv, second_srv, make_client(policy, timeout=5) as client:
        responses = await asyncio.gather(
            *(client.get(f"http://{name}:{first.port}/{i}") for i, name in enumerate(names))
        )
    for name, response in zip(names, responses, strict=True):
        expected = "127.0.0.1" if name == "one.example" else "127.0.0.2"
        assert response.text == f"hello from {expected}"
    assert {s.headers["host"] for s in first.seen} == {f"one.example:{first.port}"}
    assert {s.headers["host"] for s in second.seen} == {f"two.example:{first.port}"}
    assert len(first.seen) == len(second.seen) == 20


# -- TLS keeps the host name for SNI and certificate checks ------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=internal.example",
            "-addext",
            "subjectAltName=DNS:internal.example",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_uses_the_host_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    state, srv = await start_server(tls=server_ctx)
    resolver = fixed_resolver({"internal.example": ["127.0.0.1"]})
    policy = UrlPolicy(allow_private=True, resolver=resolver)
    async with srv, make_client(policy, timeout=5, verify=client_ctx) as client:
        response = await client.get(f"https://internal.example:{state.port}/secure")
        assert response.status_code == 200
        assert state.sni == ["internal.example"]
        assert state.seen[0].headers["host"] == f"internal.example:{state.port}"
        # The same server by address: the certificate does not name 127.0.0.1, so TLS fails.
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{state.port}/secure")
    assert failure_reason(info.value) == "tls"


async def test_tls_to_a_plain_http_server_is_a_tls_failure() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv, make_client(UrlPolicy(allow_private=True), timeout=5) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{port}/")
    assert failure_reason(info.value) == "tls"


def test_failure_reason_for_timeouts() -> None:
    assert failure_reason(httpx.ReadTimeout("slow")) == "timeout"
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(httpx.RemoteProtocolError("reset")) == "connection"
