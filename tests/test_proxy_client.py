"""The client through proxies: in-process honest and hostile proxies, real sockets, trustme TLS.

The honest in-process proxy splices every CONNECT to a loopback origin, so a
test can name an origin that does not resolve (``origin.example``) and still
check SNI and certificate verification against that name.
"""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_timehttp as t

from helpers import HTTPServer, Reply, ServerRequest, serve_http
from proxyhelpers import TestProxy, serve_proxy

SECRET = "pw-Zq-7"


@pytest.fixture(scope="module")
def ca() -> object:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="module")
def tls(ca: object) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """Server context (a cert for origin.example), client context, and the SNI names seen."""
    seen: list[str] = []
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("origin.example").configure_cert(server_ctx)  # type: ignore[attr-defined]

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name or "")

    server_ctx.sni_callback = record_sni  # type: ignore[assignment]
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)  # type: ignore[attr-defined]
    return server_ctx, client_ctx, seen


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY", "HTTP_PROXY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def start_proxy(nursery: trio.Nursery, behaviour: str = "honest", **kw: Any) -> TestProxy:
    proxy: TestProxy = await nursery.start(lambda **k: serve_proxy(behaviour, **kw, **k))
    return proxy


async def start_tls_origin(
    nursery: trio.Nursery, server_ctx: ssl.SSLContext, handler: object = None
) -> HTTPServer:
    args = {} if handler is None else {"handler": handler}
    server: HTTPServer = await nursery.start(
        lambda **kw: serve_http(ssl_context=server_ctx, **args, **kw)  # type: ignore[arg-type]
    )
    return server


def lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")


# --- http targets: absolute-form to the proxy -------------------------------------------


async def test_http_targets_go_to_the_proxy_in_absolute_form(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery)
    async with t.Client(proxy=proxy.url_with("alice", SECRET)) as client:
        bodies = []
        for url in ("http://time.example/a?q=1#frag", "http://time.example/b",
                    "http://other.example:8080/"):  # fmt: skip
            consumer = t.BytesConsumer()
            response = await client.fetch(url, consumer)
            bodies.append(consumer.body)
            assert response.request.headers.get("proxy-authorization") is None
    assert bodies == [
        b"proxied GET http://time.example/a?q=1 HTTP/1.1",
        b"proxied GET http://time.example/b HTTP/1.1",
        b"proxied GET http://other.example:8080/ HTTP/1.1",
    ]
    # One keep-alive connection to the proxy for every origin behind it.
    assert proxy.connections == 1
    first = lines(proxy.heads[0])
    assert b"host: time.example" in [x.lower() for x in first]
    assert lines(proxy.heads[2])[1].lower() == b"host: other.example:8080"
    for head in proxy.heads:
        assert b"Proxy-Authorization: Basic YWxpY2U6cHctWnEtNw==" in lines(head)


async def test_forward_407_is_a_proxy_error(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, "auth", credentials=("alice", SECRET))
    with pytest.raises(
        t.ProxyError, match=r"^proxy http://127\.0\.0\.1:\d+ requires authentication \(407\)"
    ):
        await t.fetch("http://time.example/", t.BytesConsumer(), proxy=proxy.url)
    with pytest.raises(t.ProxyError, match="rejected the credentials") as info:
        await t.fetch(
            "http://time.example/", t.BytesConsumer(), proxy=proxy.url_with("alice", "Zq-no")
        )
    assert "Zq-no" not in str(info.value)
    consumer = t.BytesConsumer()
    await t.fetch("http://time.example/", consumer, proxy=proxy.url_with("alice", SECRET))
    assert consumer.body == b"proxied GET http://time.example/ HTTP/1.1"


async def test_unreachable_proxy_is_a_proxy_error(refused_port: int) -> None:
    proxy = f"http://u:{SECRET}@127.0.0.1:{refused_port}"
    message = rf"^cannot connect to proxy http://127\.0\.0\.1:{refused_port} \("
    with pytest.raises(t.ProxyError, match=message) as info:
        await t.fetch("https://origin.example/", t.BytesConsumer(), proxy=proxy)
    assert isinstance(info.value, t.ConnectError)
    assert SECRET not in str(info.value)


def test_bad_explicit_proxy_fails_at_construction() -> None:
    with pytest.raises(t.InvalidURL, match=r"SOCKS .*'socks5://\*\*\*@h:1'"):
        t.Client(proxy=f"socks5://u:{SECRET}@h:1")


# --- https targets: a CONNECT tunnel, TLS to the origin inside ---------------------------


async def test_https_through_a_tunnel(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext, list[str]]
) -> None:
    server_ctx, client_ctx, sni = tls
    origin = await start_tls_origin(nursery, server_ctx)
    proxy = await start_proxy(nursery, upstream=(origin.host, origin.port))
    sni.clear()
    async with t.Client(proxy=proxy.url_with("alice", SECRET), ssl_context=client_ctx) as client:
        for path in ("/one", "/two"):
            consumer = t.BytesConsumer()
            await client.fetch(f"https://origin.example{path}", consumer)
            assert consumer.body == f"hello {path}".encode()
    # One CONNECT, with the credentials; the tunnel was pooled for the second request.
    assert proxy.heads == [
        b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n"
        b"Proxy-Authorization: Basic YWxpY2U6cHctWnEtNw=="
    ]
    assert origin.connections == 1
    assert sni == ["origin.example"]  # SNI is the origin's name, not the proxy's
    for request in origin.requests:
        assert request.target in ("/one", "/two")  # origin-form inside the tunnel
        assert request.header("host") == "origin.example"
        assert request.header("proxy-authorization") is None


async def test_tunnel_verifies_the_origin_certificate(
    nursery: trio.Nursery, ca: object, tls: tuple[ssl.SSLContext, ssl.SSLContext, list[str]]
) -> None:
    server_ctx, client_ctx, _ = tls
    origin = await start_tls_origin(nursery, server_ctx)  # its cert names origin.example only
    proxy = await start_proxy(nursery, upstream=(origin.host, origin.port))
    with pytest.raises(t.ConnectError, match=r"TLS handshake with wrong\.example failed") as info:
        await t.fetch("https://wrong.example/", t.BytesConsumer(), proxy=proxy.url)
    assert not isinstance(info.value, t.ProxyError)  # the origin failed, not the proxy
    async with t.Client(proxy=proxy.url, ssl_context=client_ctx) as client:
        with pytest.raises(t.ConnectError, match=r"wrong\.example"):
            await client.fetch("https://wrong.example/", t.BytesConsumer())


async def test_stream_goes_through_the_proxy_too(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext, list[str]]
) -> None:
    server_ctx, client_ctx, _ = tls
    origin = await start_tls_origin(nursery, server_ctx)
    proxy = await start_proxy(nursery, upstream=(origin.host, origin.port))
    async with t.Client(proxy=proxy.url_with("alice", SECRET), ssl_context=client_ctx) as client:
        async with client.stream("https://origin.example/pulled") as response:
            assert await response.aread() == b"hello /pulled"
        async with client.stream("http://time.example/pulled") as response:
            assert await response.aread() == b"proxied GET http://time.example/pulled HTTP/1.1"
    assert [lines(h)[0] for h in proxy.heads] == [
        b"CONNECT origin.example:443 HTTP/1.1",
        b"GET http://time.example/pulled HTTP/1.1",
    ]


HOSTILE = [
    ("refuse", t.ProxyError, r"refused CONNECT origin\.example:443: 403 Forbidden"),
    ("auth", t.ProxyError, r"rejected the credentials \(407"),
    ("body", t.ProtocolError, r"announced a body"),
    ("endless", t.ProtocolError, r"sent a head over 4096 bytes"),
    ("drip", t.Timeout, r"timed out after 0.5 s"),
    ("silent", t.Timeout, r"timed out after 0.5 s"),
    ("close_mid_tunnel", t.ConnectError, r"TLS handshake with origin\.example failed"),
]


@pytest.mark.parametrize(("behaviour", "error", "message"), HOSTILE)
async def test_hostile_proxy_gets_the_caps_and_the_deadline(
    nursery: trio.Nursery,
    tls: tuple[ssl.SSLContext, ssl.SSLContext, list[str]],
    behaviour: str,
    error: type[Exception],
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_timehttp")
    proxy = await start_proxy(nursery, behaviour, credentials=("alice", "other"))
    client = t.Client(
        proxy=proxy.url_with("alice", SECRET),
        ssl_context=tls[1],
        timeout=0.5,
        max_header_bytes=4096,
    )
    async with client:
        with pytest.raises(error, match=message) as info:
            await client.fetch("https://origin.example/", t.BytesConsumer())
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("behaviour", "error", "message"),
    [
        ("endless", t.ProtocolError, r"4096"),
        ("drip", t.Timeout, r"timed out after 0.5 s"),
        ("silent", t.Timeout, r"timed out after 0.5 s"),
    ],
)
async def test_hostile_forward_proxy_gets_the_caps_and_the_deadline(
    nursery: trio.Nursery, behaviour: str, error: type[Exception], message: str
) -> None:
    proxy = await start_proxy(nursery, behaviour)
    client = t.Client(proxy=proxy.url_with("alice", SECRET), timeout=0.5, max_header_bytes=4096)
    async with client:
        with pytest.raises(error, match=message) as info:
            await client.fetch("http://time.example/", t.BytesConsumer())
    assert SECRET not in str(info.value)


# --- the environment ---------------------------------------------------------------


async def test_environment_proxy_and_redirects_choose_again(
    nursery: trio.Nursery, no_proxy_env: pytest.MonkeyPatch
) -> None:
    origin: HTTPServer = await nursery.start(serve_http)

    def redirect(head: bytes) -> bytes:
        location = origin.url("/landed").encode()
        return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"

    proxy = await start_proxy(nursery, forward=redirect)
    no_proxy_env.setenv("http_proxy", proxy.url_with("alice", SECRET))
    consumer = t.BytesConsumer()
    response = await t.fetch("http://time.example/start", t.RedirectingConsumer(consumer))
    # First hop through the environment's proxy; the Location is loopback, so
    # the second hop went direct, without the proxy's credentials.
    assert [lines(h)[0] for h in proxy.heads] == [b"GET http://time.example/start HTTP/1.1"]
    assert response.url == origin.url("/landed")
    assert consumer.body == b"hello /landed"
    assert origin.requests[0].header("proxy-authorization") is None


async def test_environment_never_proxies_loopback(
    nursery: trio.Nursery, no_proxy_env: pytest.MonkeyPatch
) -> None:
    origin: HTTPServer = await nursery.start(serve_http)
    proxy = await start_proxy(nursery)
    no_proxy_env.setenv("http_proxy", proxy.url)
    no_proxy_env.setenv("all_proxy", proxy.url)
    consumer = t.BytesConsumer()
    await t.fetch(origin.url("/direct"), consumer)
    assert consumer.body == b"hello /direct"
    assert proxy.connections == 0
    # An explicit proxy applies to loopback too.
    consumer = t.BytesConsumer()
    await t.fetch(origin.url("/via"), consumer, proxy=proxy.url)
    assert consumer.body == f"proxied GET {origin.url('/via')} HTTP/1.1".encode()


async def test_bad_environment_proxy_is_an_invalid_url(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("all_proxy", f"socks5h://u:{SECRET}@127.0.0.1:1080")
    with pytest.raises(t.InvalidURL, match=r"^all_proxy: SOCKS") as info:
        await t.fetch("https://origin.example/", t.BytesConsumer())
    assert SECRET not in str(info.value)


# --- time over HTTP through a proxy -------------------------------------------------------

SHIFT = 3.3


def dated(request: ServerRequest) -> Reply:
    return 200, [("date", email.utils.formatdate(time.time() + SHIFT, usegmt=True))], b""


@pytest.mark.slow
async def test_precise_time_through_a_forward_proxy(nursery: trio.Nursery) -> None:
    def answer(head: bytes) -> bytes:
        date = email.utils.formatdate(time.time() + SHIFT, usegmt=True).encode()
        return b"HTTP/1.1 200 OK\r\nDate: " + date + b"\r\nContent-Length: 0\r\n\r\n"

    proxy = await start_proxy(nursery, forward=answer)
    sample = await t.query_http_time("http://time.example/", precise=True, proxy=proxy.url)
    assert abs(sample.offset - SHIFT) <= sample.uncertainty + 0.002
    assert sample.uncertainty < 0.1
    # Through a proxy every probe shares one keep-alive connection to it.
    assert proxy.connections == 1
    assert len(proxy.heads) > proxy.connections
    for head in proxy.heads:
        assert lines(head)[0].endswith(b" http://time.example/ HTTP/1.1")
        lowered = [x.lower() for x in lines(head)]
        assert b"cache-control: no-cache" in lowered
        assert b"pragma: no-cache" in lowered


@pytest.mark.slow
async def test_precise_time_through_a_tunnel(
    nursery: trio.Nursery,
    ca: object,
    tls: tuple[ssl.SSLContext, ssl.SSLContext, list[str]],
    tmp_path: Path,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))  # type: ignore[attr-defined]
    no_proxy_env.setenv("SSL_CERT_FILE", str(pem))  # query_http_time's default context trusts it
    origin = await start_tls_origin(nursery, tls[0], dated)
    proxy = await start_proxy(nursery, upstream=(origin.host, origin.port))
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    sample = await t.query_http_time("https://origin.example/", precise=True)
    assert abs(sample.offset - SHIFT) <= sample.uncertainty + 0.002
    # One CONNECT tunnel, pooled and reused for every probe.
    assert all(h.startswith(b"CONNECT origin.example:443 ") for h in proxy.heads)
    assert len(proxy.heads) == proxy.connections == origin.connections == 1
    assert len(origin.requests) > origin.connections
    for request in origin.requests:
        assert request.header("cache-control") == "no-cache"
        assert request.header("pragma") == "no-cache"
