"""Real proxies from Debian (tinyproxy, squid) on private loopback configs.

These drive the pure CONNECT parts (``connect_request`` and ``ConnectReply``)
over real sockets, then TLS (trustme) to an origin inside the tunnel: what
real proxies answer is what the reader is built for.
"""

from __future__ import annotations

import contextlib
import email.utils
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import trio_timehttp as t
from trio_timehttp import ProxyError
from trio_timehttp._proxy import ConnectReply, Proxy, connect_request, parse_proxy
from trio_timehttp._urls import parse_url

from helpers import HTTPServer, Reply, ServerRequest, serve_http
from proxyhelpers import squid, tinyproxy

pytestmark = pytest.mark.peer

USER, PASSWORD = "alice", "s3cr%t pass"  # percent-encoded in URLs as s3cr%25t%20pass
USERINFO = "alice:s3cr%25t%20pass"


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def open_tunnel(proxy: Proxy, target: str) -> tuple[trio.SocketStream, bytes]:
    """CONNECT through ``proxy`` to ``target`` (a URL); the stream and leftover bytes."""
    url = parse_url(target)
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    await stream.send_all(connect_request(url, proxy))
    reader = ConnectReply(proxy, f"{url.host}:{url.port}")
    try:
        while (rest := reader.feed(await stream.receive_some(65536))) is None:
            pass
    except BaseException:
        await stream.aclose()
        raise
    return stream, rest


async def get_in_tunnel(proxy: Proxy, origin: HTTPServer, client_ctx: ssl.SSLContext) -> bytes:
    stream, rest = await open_tunnel(proxy, origin.url("/"))
    assert rest == b""
    tls_stream = trio.SSLStream(
        stream, client_ctx, server_hostname="127.0.0.1", https_compatible=True
    )
    async with tls_stream:
        await tls_stream.send_all(
            b"GET /t HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while data := await tls_stream.receive_some(65536):
            reply += data
    return reply


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tinyproxy")


@pytest.fixture
async def tls_origin(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> HTTPServer:
    server: HTTPServer = await nursery.start(lambda **kw: serve_http(ssl_context=tls[0], **kw))
    return server


@pytest.fixture
def tiny(tiny_dir: Path, tls_origin: HTTPServer) -> Iterator[str]:
    with tinyproxy(str(tiny_dir), connect_ports=(tls_origin.port,)) as url:
        yield url


async def test_tinyproxy_connect_then_tls(
    tiny: str, tls_origin: HTTPServer, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    reply = await get_in_tunnel(parse_proxy(tiny), tls_origin, tls[1])
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"hello /t")
    assert tls_origin.requests[0].target == "/t"


async def test_tinyproxy_refuses_a_port_not_listed(tiny: str) -> None:
    with pytest.raises(ProxyError, match=r"refused CONNECT 127\.0\.0\.1:22: 403 Access violation"):
        await open_tunnel(parse_proxy(tiny), "https://127.0.0.1:22/")


async def test_tinyproxy_unreachable_origin_is_a_proxy_error(
    tiny_dir: Path, refused_port: int
) -> None:
    refused = pytest.raises(ProxyError, match=rf"refused CONNECT 127\.0\.0\.1:{refused_port}: 500")
    with tinyproxy(str(tiny_dir), connect_ports=(refused_port,)) as url, refused:
        await open_tunnel(parse_proxy(url), f"https://127.0.0.1:{refused_port}/")


async def test_tinyproxy_basic_auth(
    tiny_dir: Path, tls_origin: HTTPServer, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    with tinyproxy(
        str(tiny_dir), connect_ports=(tls_origin.port,), basic_auth=("alice", "pw")
    ) as url:
        bare = parse_proxy(url)
        with pytest.raises(ProxyError, match="requires authentication \\(407"):
            await open_tunnel(bare, tls_origin.url())
        wrong = parse_proxy(url.replace("http://", "http://alice:nope@"))
        # tinyproxy 1.11 answers wrong credentials with 401, not 407: still the
        # proxy's refusal, named with its status.
        with pytest.raises(ProxyError, match=r"refused CONNECT .*: 401 Unauthorized$") as info:
            await open_tunnel(wrong, tls_origin.url())
        assert "nope" not in str(info.value)
        good = parse_proxy(url.replace("http://", "http://alice:pw@"))
        reply = await get_in_tunnel(good, tls_origin, tls[1])
        assert reply.endswith(b"hello /t")


@pytest.fixture(scope="module")
def squid_plain() -> Iterator[str]:
    with squid() as url:
        yield url


@pytest.fixture(scope="module")
def squid_auth() -> Iterator[str]:
    with squid(basic_auth=(USER, PASSWORD)) as url:
        yield url


async def test_squid_connect_then_tls(
    squid_plain: str, tls_origin: HTTPServer, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    reply = await get_in_tunnel(parse_proxy(squid_plain), tls_origin, tls[1])
    assert reply.endswith(b"hello /t")


async def test_squid_unreachable_origin(squid_plain: str, refused_port: int) -> None:
    match = rf"refused CONNECT 127\.0\.0\.1:{refused_port}: 503"
    with pytest.raises(ProxyError, match=match):
        await open_tunnel(parse_proxy(squid_plain), f"https://127.0.0.1:{refused_port}/")


async def test_squid_basic_auth(
    squid_auth: str, tls_origin: HTTPServer, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    with pytest.raises(ProxyError, match=r"requires authentication \(407 Proxy Authentication"):
        await open_tunnel(parse_proxy(squid_auth), tls_origin.url())
    wrong = parse_proxy(squid_auth.replace("http://", "http://alice:wrong@"))
    with pytest.raises(ProxyError, match="rejected the credentials"):
        await open_tunnel(wrong, tls_origin.url())
    good = parse_proxy(squid_auth.replace("http://", f"http://{USERINFO}@"))
    reply = await get_in_tunnel(good, tls_origin, tls[1])
    assert reply.endswith(b"hello /t")


# --- the client through the real proxies -------------------------------------------------


@pytest.fixture
async def origin(nursery: trio.Nursery) -> HTTPServer:
    server: HTTPServer = await nursery.start(serve_http)
    return server


@pytest.mark.parametrize("peer", ["tinyproxy", "squid"])
async def test_client_forward_and_tunnel(
    peer: str,
    tiny_dir: Path,
    squid_plain: str,
    origin: HTTPServer,
    tls_origin: HTTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with contextlib.ExitStack() as stack:
        if peer == "tinyproxy":
            proxy = stack.enter_context(tinyproxy(str(tiny_dir), connect_ports=(tls_origin.port,)))
        else:
            proxy = squid_plain
        async with t.Client(proxy=proxy, ssl_context=tls[1]) as client:
            for path in ("/a", "/b"):
                plain, secure = t.BytesConsumer(), t.BytesConsumer()
                await client.fetch(origin.url(path), plain)
                await client.fetch(tls_origin.url(path), secure)
                assert plain.body == f"hello {path}".encode()
                assert secure.body == f"hello {path}".encode()
    # The proxy rewrote the absolute-form target to origin-form for the origin.
    assert [r.target for r in origin.requests] == ["/a", "/b"]
    assert tls_origin.connections == 1  # the tunnel was pooled
    for request in origin.requests + tls_origin.requests:
        assert request.header("proxy-authorization") is None


@pytest.mark.parametrize("peer", ["tinyproxy", "squid"])
async def test_client_basic_auth(
    peer: str,
    tiny_dir: Path,
    squid_auth: str,
    origin: HTTPServer,
    tls_origin: HTTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with contextlib.ExitStack() as stack:
        if peer == "tinyproxy":
            url = stack.enter_context(
                tinyproxy(str(tiny_dir), connect_ports=(tls_origin.port,), basic_auth=(USER, "pw"))
            )
            good = url.replace("http://", "http://alice:pw@")
        else:
            url = squid_auth
            good = url.replace("http://", f"http://{USERINFO}@")
        for target in (origin.url("/"), tls_origin.url("/")):
            with pytest.raises(t.ProxyError, match=r"requires authentication \(407"):
                await t.fetch(target, t.BytesConsumer(), proxy=url)
        async with t.Client(proxy=good, ssl_context=tls[1]) as client:
            for target in (origin.url("/x"), tls_origin.url("/x")):
                consumer = t.BytesConsumer()
                await client.fetch(target, consumer)
                assert consumer.body == b"hello /x"
    for request in origin.requests + tls_origin.requests:
        assert request.header("proxy-authorization") is None


SHIFT = 2.4


def cacheable_dated(request: ServerRequest) -> Reply:
    date = email.utils.formatdate(time.time() + SHIFT, usegmt=True)
    return 200, [("date", date), ("cache-control", "max-age=600")], b"cache me"


@pytest.mark.slow
async def test_squid_cache_and_a_time_reading(squid_plain: str, nursery: trio.Nursery) -> None:
    """A cached response keeps the origin's first Date (plus Age); no-cache reads the clock."""
    origin: HTTPServer = await nursery.start(serve_http, cacheable_dated)
    url = origin.url("/clock")
    async with t.Client(proxy=squid_plain) as client:
        first = await client.fetch(url, t.BytesConsumer())
        await trio.sleep(2.2)  # let the stored response age: Age is what is measured here
        cached = await client.fetch(url, t.BytesConsumer())
    assert len(origin.requests) == 1  # the second GET never reached the origin
    assert cached.headers["date"] == first.headers["date"]
    assert int(cached.headers["age"]) >= 2
    # Read from that cached Date, the origin would seem >= 2 s behind its true
    # offset. query_http_time asks for no-cache, so squid goes to the origin:
    sample = await t.query_http_time(url, proxy=squid_plain, precise=True)
    assert len(origin.requests) > 1
    assert abs(sample.offset - SHIFT) <= sample.uncertainty + 0.002
    assert all(r.header("cache-control") == "no-cache" for r in origin.requests[1:])
