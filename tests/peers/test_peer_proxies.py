"""Real proxies from Debian (tinyproxy, squid) on private loopback configs.

These drive the pure CONNECT parts (``connect_request`` and ``ConnectReply``)
over real sockets, then TLS (trustme) to an origin inside the tunnel: what
real proxies answer is what the reader is built for.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_timehttp import ProxyError
from trio_timehttp._proxy import ConnectReply, Proxy, connect_request, parse_proxy
from trio_timehttp._urls import parse_url

from helpers import HTTPServer, serve_http
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


async def test_tinyproxy_unreachable_origin_is_a_proxy_error(tiny_dir: Path) -> None:
    refused = pytest.raises(ProxyError, match=r"refused CONNECT 127\.0\.0\.1:1: 500")
    with tinyproxy(str(tiny_dir), connect_ports=(1,)) as url, refused:
        await open_tunnel(parse_proxy(url), "https://127.0.0.1:1/")


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


async def test_squid_unreachable_origin(squid_plain: str) -> None:
    with pytest.raises(ProxyError, match=r"refused CONNECT 127\.0\.0\.1:1: 503"):
        await open_tunnel(parse_proxy(squid_plain), "https://127.0.0.1:1/")


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
