"""Content decoding on real sockets: what is asked for, what the consumer is
fed, what ``response.headers`` shows, and every way a coded body can be bad
(corrupt, truncated, a bomb, an unknown coding) — with ``FileConsumer``
leaving nothing that looks complete."""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib
from collections.abc import AsyncIterator

import brotli  # type: ignore[import-untyped]
import pytest
import trio
import zstandard
from test_decoding import gzip_bomb

from trio_timehttp import (
    BodyTooLarge,
    BytesConsumer,
    Client,
    FileConsumer,
    ProtocolError,
    fetch,
)
from trio_timehttp._decoding import CHUNK_SIZE
from trio_timehttp._exchange import BODY_READ

from helpers import Recorder, ServerRequest, serve_http

TEXT = b"".join(b"line %d of a compressible body\n" % i for i in range(20000))
CODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
    "gzip, br": lambda b: brotli.compress(gzip.compress(b)),
}


def coded(coding: str, payload: bytes, *, chunked: bool = False) -> object:
    def handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], object]:
        headers = [("content-encoding", coding), ("content-type", "text/plain")]
        if not chunked:
            return 200, headers, payload

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 1000):
                yield payload[i : i + 1000]

        return 200, headers, pieces()

    return handler


async def get(handler: object, consumer: object, **kw: object) -> tuple[object, ServerRequest]:
    """Fetch from a fresh in-process server; the fetch's exception is raised plainly."""
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        try:
            response = await fetch(server.url("/x"), consumer, **kw)  # type: ignore[arg-type]
        except Exception as exc:
            error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return response, server.requests[-1]


@pytest.mark.parametrize("coding", list(CODERS))
@pytest.mark.parametrize("chunked", [False, True])
async def test_decoded_before_the_consumer_headers_as_sent(coding: str, chunked: bool) -> None:
    payload = CODERS[coding](TEXT)
    sink = BytesConsumer()
    response, seen = await get(coded(coding, payload, chunked=chunked), sink, decode=True)
    assert sink.body == TEXT
    assert response.headers["content-encoding"] == coding  # type: ignore[attr-defined]
    assert seen.header("accept-encoding") == "gzip, deflate, br, zstd"


async def test_without_decode_the_body_arrives_as_sent() -> None:
    payload = gzip.compress(TEXT)
    sink = BytesConsumer()
    _, seen = await get(coded("gzip", payload), sink)
    assert sink.body == payload
    assert seen.header("accept-encoding") == "identity"


async def test_a_callers_accept_encoding_is_kept() -> None:
    sink = BytesConsumer()
    _, seen = await get(
        coded("gzip", gzip.compress(b"x")), sink, decode=True, headers={"accept-encoding": "gzip"}
    )
    assert seen.header("accept-encoding") == "gzip"
    assert sink.body == b"x"


async def test_client_default_and_per_request_override() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, coded("gzip", gzip.compress(b"hi")))
        async with Client(decode=True) as client:
            on, off = BytesConsumer(), BytesConsumer()
            await client.fetch(server.url(), on)
            await client.fetch(server.url(), off, decode=False)
        assert on.body == b"hi"
        assert off.body == gzip.compress(b"hi")
        nursery.cancel_scope.cancel()


async def test_head_and_304_with_a_coding_are_not_decoded() -> None:
    def handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        status = 304 if request.target == "/304" else 200
        return status, [("content-encoding", "compress")], b""  # not even decodable

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        for path, method in (("/x", "HEAD"), ("/304", "GET")):
            consumer = Recorder()
            await fetch(server.url(path), consumer, method=method, decode=True)
            assert consumer.errors == []
        nursery.cancel_scope.cancel()


async def test_unknown_coding_is_a_protocol_error_the_consumer_hears() -> None:
    consumer = Recorder()
    with pytest.raises(ProtocolError, match="unsupported Content-Encoding 'compress'"):
        await get(coded("compress", b"\x1f\x9d..."), consumer, decode=True)
    assert consumer.events == [("header", 200), ("error", "ProtocolError"), "close"]


async def test_corrupt_gzip_is_a_protocol_error() -> None:
    bad = bytearray(gzip.compress(TEXT))
    bad[len(bad) // 2] ^= 0xFF
    consumer = Recorder()
    with pytest.raises(ProtocolError, match="corrupt gzip"):
        await get(coded("gzip", bytes(bad)), consumer, decode=True)
    assert consumer.closed == 1
    assert consumer.events[-2:] == [("error", "ProtocolError"), "close"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_truncated_gzip_leaves_no_file_that_looks_complete(
    chunked: bool, tmp_path: pathlib.Path
) -> None:
    """The framing is complete (the server sent what it announced), the gzip stream is not."""
    payload = gzip.compress(TEXT)[:-20]
    target = tmp_path / "out.txt"
    with pytest.raises(ProtocolError, match="truncated gzip"):
        await get(coded("gzip", payload, chunked=chunked), FileConsumer(target), decode=True)
    assert os.listdir(tmp_path) == []


async def test_corrupt_gzip_through_file_consumer(tmp_path: pathlib.Path) -> None:
    bad = bytearray(gzip.compress(TEXT))
    bad[100] ^= 0xFF
    with pytest.raises(ProtocolError):
        await get(coded("gzip", bytes(bad)), FileConsumer(tmp_path / "out"), decode=True)
    assert os.listdir(tmp_path) == []


async def test_a_10_gib_bomb_is_stopped(tmp_path: pathlib.Path) -> None:
    bomb = gzip_bomb(10 * 1024)
    consumer = Recorder()
    with pytest.raises(BodyTooLarge, match="decompression bomb"):
        await get(coded("gzip", bomb), consumer, decode=True)
    # Stopped within the ratio of what was read so far: at most one socket
    # read (BODY_READ, 256 KiB) of bomb at 200:1, plus one decoded piece.
    assert len(consumer.body) <= 200 * BODY_READ + CHUNK_SIZE
    assert consumer.events[-2:] == [("error", "BodyTooLarge"), "close"]


async def test_max_decoded_size() -> None:
    consumer = Recorder()
    with pytest.raises(BodyTooLarge, match="max_decoded_size"):
        await get(coded("gzip", gzip.compress(TEXT)), consumer, decode=True, max_decoded_size=1000)
    assert len(consumer.body) <= 1000
    sink = BytesConsumer()
    await get(coded("gzip", gzip.compress(TEXT)), sink, decode=True, max_decoded_size=len(TEXT))
    assert sink.body == TEXT
