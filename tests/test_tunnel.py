"""The CONNECT step against the in-process proxies, over real loopback sockets."""

from __future__ import annotations

import pytest
import trio

from trio_timehttp import ProtocolError, ProxyError
from trio_timehttp._headreader import HeadLimits
from trio_timehttp._proxy import parse_proxy
from trio_timehttp._tunnel import open_tunnel
from trio_timehttp._urls import parse_url

from helpers import serve_evil, serve_http
from proxyhelpers import TestProxy, serve_proxy

REFUSED = r"^proxy http://127\.0\.0\.1:\d+ refused CONNECT origin\.example:8443: 403 Forbidden$"


class StreamWire:
    """A trio stream as the tunnel step's transport."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self, max_bytes: int, need: int = 0) -> bytes:
        return await self.stream.receive_some(max_bytes)


async def tunnel(proxy_url: str, target: str = "https://origin.example:8443/") -> StreamWire:
    proxy = parse_proxy(proxy_url)
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    wire = StreamWire(stream)
    try:
        await open_tunnel(wire, parse_url(target), proxy, HeadLimits())
    except BaseException:
        await stream.aclose()
        raise
    return wire


async def test_honest_tunnel_reaches_upstream(nursery: trio.Nursery) -> None:
    origin = await nursery.start(serve_http)
    proxy: TestProxy = await nursery.start(
        lambda **kw: serve_proxy("honest", upstream=(origin.host, origin.port), **kw)
    )
    wire = await tunnel(proxy.url_with("u", "p"))
    async with wire.stream:
        await wire.send_all(
            b"GET /x HTTP/1.1\r\nHost: origin.example\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while data := await wire.recv(65536):
            reply += data
    assert reply.endswith(b"hello /x")
    assert proxy.heads[0] == (
        b"CONNECT origin.example:8443 HTTP/1.1\r\nHost: origin.example:8443\r\n"
        b"Proxy-Authorization: Basic dTpw"
    )
    # The credentials went to the proxy only: nothing inside the tunnel has them.
    assert b"Proxy-Authorization" not in proxy.tunnel_bytes
    assert origin.requests[0].header("proxy-authorization") is None


@pytest.mark.parametrize(
    ("behaviour", "error", "message"),
    [
        ("refuse", ProxyError, REFUSED),
        ("auth", ProxyError, r"requires authentication \(407 Proxy Authentication Required\)$"),
        ("body", ProtocolError, r"announced a body \(Content-Length > 0\) on a 2xx"),
        ("endless", ProtocolError, r"sent a head over 65536 bytes in reply to CONNECT"),
    ],
)  # fmt: skip
async def test_hostile_proxy(
    nursery: trio.Nursery, behaviour: str, error: type[Exception], message: str
) -> None:
    proxy: TestProxy = await nursery.start(
        lambda **kw: serve_proxy(behaviour, credentials=("u", "secret"), **kw)
    )
    with pytest.raises(error, match=message):
        await tunnel(proxy.url)


async def test_wrong_credentials_are_named_as_rejected(nursery: trio.Nursery) -> None:
    proxy: TestProxy = await nursery.start(
        lambda **kw: serve_proxy("auth", credentials=("u", "right"), **kw)
    )
    with pytest.raises(ProxyError, match="rejected the credentials") as info:
        await tunnel(proxy.url_with("u", "Zq-wrong"))
    assert "Zq-wrong" not in str(info.value)


async def test_dripping_proxy_meets_the_deadline(nursery: trio.Nursery) -> None:
    proxy: TestProxy = await nursery.start(lambda **kw: serve_proxy("drip", **kw))
    with trio.move_on_after(0.5) as scope:
        await tunnel(proxy.url)
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("recv",), ("close",)], "closed the connection before answering CONNECT"),
        ([("recv",), ("send", b"HTTP/1.1 200 OK\r\n"), ("close",)], "closed the connection"),
        ([("recv",), ("reset",)], "broke the connection during CONNECT|closed the connection"),
    ],
)
async def test_proxy_goes_away(
    nursery: trio.Nursery, steps: list[tuple[object, ...]], message: str
) -> None:
    server = await nursery.start(serve_evil, steps)
    with pytest.raises(ProxyError, match=message):
        await tunnel(server.base_url)


async def test_bytes_after_the_connect_reply(nursery: trio.Nursery) -> None:
    steps = [("recv",), ("send", b"HTTP/1.1 200 OK\r\n\r\nsurprise"), ("forever",)]
    server = await nursery.start(serve_evil, steps)
    with pytest.raises(ProtocolError, match="sent 8 bytes after its reply to CONNECT"):
        await tunnel(server.base_url)
