"""Request bodies: each kind of ``body=`` normalised to length, replayability and
bounded chunks; the chunked encoder checked against our own chunked reader."""

from __future__ import annotations

import array
import io
import os
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._bodies import (
    CHUNK_SIZE,
    COPY_LIMIT,
    LAST_CHUNK,
    RequestBody,
    encode_chunk,
    request_body,
)
from trio_timehttp._framing import ChunkedReader


async def read_all(body: RequestBody) -> list[bytes]:
    chunks = []
    while chunk := await body.read():
        assert isinstance(chunk, bytes)
        chunks.append(chunk)
    assert await body.read() == b""  # stays ended
    return chunks


def make(body: object) -> RequestBody:
    prepared = request_body(body)
    assert prepared is not None
    return prepared


def test_none_is_no_body() -> None:
    assert request_body(None) is None


@pytest.mark.parametrize(
    "value", [b"hello", bytearray(b"hello"), memoryview(b"xhellox")[1:6], [b"he", b"", b"llo"]]
)
async def test_in_memory_bodies_have_a_length_and_replay(value: object) -> None:
    body = make(value)
    assert body.length == 5
    assert body.replayable
    assert b"".join(await read_all(body)) == b"hello"
    body.rewind()
    assert b"".join(await read_all(body)) == b"hello"


async def test_bytearray_is_a_snapshot() -> None:
    data = bytearray(b"abc")
    body = make(data)
    data[0] = ord("X")
    assert await read_all(body) == [b"abc"]


async def test_memoryview_of_non_bytes_sends_its_raw_bytes() -> None:
    ints = array.array("H", [1, 2])
    body = make(memoryview(ints))
    assert body.length == 4
    assert b"".join(await read_all(body)) == ints.tobytes()


async def test_generator_is_chunked_and_not_replayable() -> None:
    def gen() -> Iterator[bytes]:
        yield b"a"
        yield b""  # skipped: an empty chunk would end a chunked body
        yield bytearray(b"b")

    body = make(gen())
    assert body.length is None
    assert not body.replayable
    assert await read_all(body) == [b"a", b"b"]
    with pytest.raises(ValueError, match="cannot be sent twice"):
        body.rewind()


async def test_async_generator_and_its_aclose() -> None:
    closed = []

    async def agen() -> AsyncIterator[bytes]:
        try:
            yield b"one"
            yield b"two"
        finally:
            closed.append(True)

    body = make(agen())
    assert body.length is None
    assert not body.replayable
    assert await body.read() == b"one"
    await body.aclose()
    assert closed == [True]


async def test_an_iterator_that_raises_propagates_unchanged() -> None:
    class Boom(Exception):
        pass

    def gen() -> Iterator[bytes]:
        yield b"a"
        raise Boom("from the caller")

    body = make(gen())
    assert await body.read() == b"a"
    with pytest.raises(Boom, match="from the caller"):
        await body.read()

    async def agen() -> AsyncIterator[bytes]:
        raise Boom("async")
        yield b""  # pragma: no cover

    with pytest.raises(Boom, match="async"):
        await make(agen()).read()


@pytest.mark.parametrize("value", ["text", io.StringIO("text")])
def test_text_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"encode|binary"):
        request_body(value)


def test_other_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match="int"):
        request_body(42)
    with pytest.raises(TypeError, match="must be bytes, not str"):
        request_body(["text"])


async def test_an_iterator_yielding_str_fails_when_read() -> None:
    body = make(iter(["text"]))
    with pytest.raises(TypeError, match="must be bytes, not str"):
        await body.read()


async def test_regular_file_length_from_its_position(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    data = os.urandom(3 * CHUNK_SIZE + 17)
    path.write_bytes(data)
    with path.open("rb") as f:
        f.seek(10)
        body = make(f)
        assert body.length == len(data) - 10
        assert body.replayable
        chunks = await read_all(body)
        assert all(len(c) <= CHUNK_SIZE for c in chunks)
        assert b"".join(chunks) == data[10:]
        body.rewind()
        assert b"".join(await read_all(body)) == data[10:]
        assert not f.closed  # the caller's file stays the caller's


async def test_a_file_that_grows_sends_its_announced_size(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100)
    with path.open("rb") as f:
        body = make(f)
        with path.open("ab") as g:
            g.write(b"more")
        assert b"".join(await read_all(body)) == b"x" * 100


async def test_a_file_truncated_while_sent_is_a_value_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * (2 * CHUNK_SIZE))
    with path.open("rb") as f:
        body = make(f)
        assert len(await body.read()) == CHUNK_SIZE
        os.truncate(path, CHUNK_SIZE + 5)
        assert len(await body.read()) == 5
        expected = rf"ended after {CHUNK_SIZE + 5} of {2 * CHUNK_SIZE} bytes"
        with pytest.raises(ValueError, match=expected):
            await body.read()


async def test_bytesio_is_seekable_and_replayable() -> None:
    body = make(io.BytesIO(b"in memory"))
    assert body.length == 9
    assert body.replayable
    assert b"".join(await read_all(body)) == b"in memory"


async def test_text_mode_file_object_without_textiobase(tmp_path: pathlib.Path) -> None:
    class Texty:
        def read(self, n: int) -> str:
            return "oops"

        def seekable(self) -> bool:
            return False

    body = make(Texty())
    assert body.length is None
    with pytest.raises(TypeError, match="binary mode"):
        await body.read()


async def test_pipe_is_chunked_read_in_a_thread() -> None:
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader:
        body = make(reader)
        assert body.length is None
        assert not body.replayable
        os.write(w, b"through a pipe")
        os.close(w)
        assert b"".join(await read_all(body)) == b"through a pipe"


async def test_a_silent_pipe_does_not_outlast_the_deadline() -> None:
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader:
        body = make(reader)
        with trio.move_on_after(0.2) as scope:
            await body.read()
        assert scope.cancelled_caught
        os.close(w)  # lets the abandoned thread's read return


async def test_trio_async_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"async file " * 10000)
    async with await trio.open_file(path, "rb") as f:
        body = make(f)
        assert body.length is None
        chunks = await read_all(body)
        assert all(len(c) <= CHUNK_SIZE for c in chunks)
        assert b"".join(chunks) == b"async file " * 10000


async def test_expect_length_holds_an_iterator_to_a_content_length() -> None:
    body = make(iter([b"abc", b"de"]))
    body.expect_length(5)
    assert await read_all(body) == [b"abc", b"de"]

    short = make(iter([b"abc"]))
    short.expect_length(5)
    assert await short.read() == b"abc"
    with pytest.raises(ValueError, match="ended after 3 of 5"):
        await short.read()

    long = make(iter([b"abcdef"]))
    long.expect_length(5)
    with pytest.raises(ValueError, match="longer"):
        await long.read()

    with pytest.raises(ValueError, match="Content-Length 4 but the body has 5"):
        make(b"hello").expect_length(4)


def test_encode_chunk() -> None:
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"abc") == b"3\r\nabc\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(min_value=1, max_value=50))
def test_chunked_encoding_round_trips_through_our_reader(chunks: list[bytes], split: int) -> None:
    wire = b"".join(encode_chunk(c) for c in chunks) + LAST_CHUNK
    for step in (len(wire), split, 1):
        reader = ChunkedReader()
        out = b"".join(
            piece for i in range(0, len(wire), step) for piece in reader.feed(wire[i : i + step])
        )
        assert out == b"".join(chunks)
        assert reader.done
        assert not reader.trailing


@pytest.mark.parametrize(
    "sizes", [[], [1], [COPY_LIMIT], [COPY_LIMIT + 1], [5, COPY_LIMIT * 3, 0, 7, COPY_LIMIT + 1]]
)
async def test_write_frames_chunks_our_reader_can_read(sizes: list[int]) -> None:
    chunks = [os.urandom(n) for n in sizes]
    body = make(iter(chunks))
    wire: list[bytes] = []

    async def send(data: bytes) -> None:
        wire.append(data)

    await body.write(send)
    reader = ChunkedReader()
    out = b"".join(piece for data in wire for piece in reader.feed(data))
    assert out == b"".join(chunks)
    assert reader.done
    assert not reader.trailing
    # large chunks are sent as they are, not copied into their framing
    assert all(any(w is c for w in wire) for c in chunks if len(c) > COPY_LIMIT)


async def test_write_twice_replays_or_refuses() -> None:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    body = make([b"ab", b"cd"])
    await body.write(send)
    await body.write(send)
    assert b"".join(sent) == b"abcd" * 2
    once = make(iter([b"x"]))
    await once.write(send)
    with pytest.raises(ValueError, match="cannot be sent twice"):
        await once.write(send)
