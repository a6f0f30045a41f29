"""``Client.stream`` with the issue-16 options: decoded pieces pulled one at a
time (bounded), request bodies, retries, a bomb and a truncated stream."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from test_decoding import gzip_bomb

import trio_timehttp as t
from trio_timehttp._decoding import CHUNK_SIZE

from helpers import ServerRequest, serve_http

TEXT = b"".join(b"line %d of text\n" % i for i in range(100_000))


def coded(payload: bytes) -> object:
    def handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("content-encoding", "gzip")], payload

    return handler


async def test_stream_decodes_in_bounded_pieces(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, coded(gzip.compress(TEXT)))
    async with t.Client(decode=True) as client, client.stream(srv.url()) as response:
        assert response.headers["content-encoding"] == "gzip"
        pieces = [piece async for piece in response.aiter_bytes()]
    assert b"".join(pieces) == TEXT
    assert max(len(p) for p in pieces) <= CHUNK_SIZE


async def test_stream_aread_decoded_and_truncated(nursery: trio.Nursery) -> None:
    good = await nursery.start(serve_http, coded(gzip.compress(b"small")))
    cut = await nursery.start(serve_http, coded(gzip.compress(TEXT)[:-30]))
    async with t.Client() as client:
        async with client.stream(good.url(), decode=True) as response:
            assert await response.aread() == b"small"
        with pytest.raises(t.ProtocolError, match="truncated gzip"):
            async with client.stream(cut.url(), decode=True) as response:
                await response.aread()


async def test_stream_bomb(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, coded(gzip_bomb(2048)))
    seen: list[int] = []

    async def pull(client: t.Client) -> None:
        async with client.stream(srv.url()) as response:
            async for piece in response.aiter_bytes():
                seen.append(len(piece))

    async with t.Client(decode=True) as client:
        with pytest.raises(t.BodyTooLarge):
            await pull(client)
    assert sum(seen) < 64 << 20


async def test_stream_with_a_generator_body(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http)

    async def agen() -> AsyncIterator[bytes]:
        yield b"streamed "
        yield b"up"

    async with t.Client() as client, client.stream(srv.url(), method="POST", body=agen()) as r:
        await r.aread()
    assert srv.requests[-1].body == b"streamed up"
    assert srv.requests[-1].header("transfer-encoding") == "chunked"


async def test_stream_retries_503(autojump_clock: trio.testing.MockClock) -> None:
    count = [0]

    def flaky(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        count[0] += 1
        return (503, [("retry-after", "3")], b"") if count[0] == 1 else (200, [], b"ok")

    async with trio.open_nursery() as nursery:
        srv = await nursery.start(serve_http, flaky)
        async with t.Client(retries=1) as client, client.stream(srv.url()) as response:
            assert response.status_code == 200
            assert await response.aread() == b"ok"
        nursery.cancel_scope.cancel()
    assert count[0] == 2
