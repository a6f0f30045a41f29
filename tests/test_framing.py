"""The sans-IO body framing readers: every input fed whole, one byte at a time,
and with trailing data (as h11's own reader tests do)."""

from __future__ import annotations

import pytest

from trio_timehttp._framing import (
    MAX_CHUNK_LINE,
    MAX_TRAILER_FIELDS,
    BodyReader,
    ChunkedReader,
    ContentLengthReader,
    FramingError,
    NoBodyReader,
    UntilCloseReader,
    body_reader,
    parse_content_length,
)


def run(reader: BodyReader, data: bytes, *, split: int | None = None, eof: bool = False) -> bytes:
    """Feed ``data`` whole (split=None) or in pieces of ``split`` bytes; return the body."""
    out = bytearray()
    step = len(data) or 1 if split is None else split
    for i in range(0, len(data), step):
        for piece in reader.feed(data[i : i + step]):
            assert isinstance(piece, bytes)
            assert piece
            out += piece
    if eof:
        reader.feed_eof()
    return bytes(out)


SPLITS = [None, 1, 2, 3, 7]


@pytest.mark.parametrize("split", SPLITS)
def test_content_length(split: int | None) -> None:
    r = ContentLengthReader(10)
    assert run(r, b"0123456789", split=split) == b"0123456789"
    assert r.done
    assert r.trailing == b""


@pytest.mark.parametrize("split", SPLITS)
def test_content_length_trailing_data(split: int | None) -> None:
    r = ContentLengthReader(5)
    assert run(r, b"01234EXTRA", split=split) == b"01234"
    assert r.done
    assert r.trailing == b"EXTRA"


def test_content_length_zero_copy() -> None:
    r = ContentLengthReader(100)
    data = b"x" * 40
    (piece,) = r.feed(data)
    assert piece is data  # the caller's object, no copy
    (piece,) = r.feed(data)
    assert piece is data
    last = b"y" * 20
    (piece,) = r.feed(last)
    assert piece is last
    assert r.done


def test_content_length_zero_is_done() -> None:
    r = ContentLengthReader(0)
    assert r.done
    assert r.feed(b"junk") == ()
    assert r.trailing == b"junk"


def test_content_length_truncated() -> None:
    r = ContentLengthReader(10)
    run(r, b"abc")
    with pytest.raises(FramingError, match="3 of 10 body bytes"):
        r.feed_eof()


def test_until_close() -> None:
    r = UntilCloseReader()
    assert not r.reusable
    assert run(r, b"hello world", split=3, eof=True) == b"hello world"
    assert r.done


def test_no_body() -> None:
    r = NoBodyReader()
    assert r.done
    assert r.feed(b"") == ()
    assert r.trailing == b""
    r.feed(b"xx")
    assert r.trailing == b"xx"
    r.feed_eof()


CHUNKED_OK = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"a;name=value\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"5 ; ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"0\r\n\r\n", b""),
    (b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello"),  # 16 digits: the cap
    (b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\nX-Other:\r\n\r\n", b"hello"),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("wire", "body"), CHUNKED_OK)
def test_chunked_ok(wire: bytes, body: bytes, split: int | None) -> None:
    r = ChunkedReader()
    assert run(r, wire, split=split) == body
    assert r.done
    assert r.trailing == b""


@pytest.mark.parametrize("split", SPLITS)
def test_chunked_trailing_data(split: int | None) -> None:
    r = ChunkedReader()
    assert run(r, b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", split=split) == b"abc"
    assert r.done
    assert r.trailing == b"HTTP/1.1 200 OK\r\n"


def test_chunked_trailers_kept() -> None:
    r = ChunkedReader()
    run(r, b"0\r\nX-A: 1\r\nx-b:  two \r\n\r\n")
    assert r.trailers == [(b"x-a", b"1"), (b"x-b", b"two")]


# Issue 9.6: obs-fold in the trailer section is accepted, each fold one space
# (RFC 9112 section 5.2), whatever the split and the whitespace used.
FOLDED_TRAILERS = [
    (b"0\r\nX-A: one\r\n two\r\n\r\n", [(b"x-a", b"one two")]),
    (b"0\r\nX-A: one\r\n\t two\r\n  three \r\n\r\n", [(b"x-a", b"one two three")]),
    (b"0\r\nX-A:\r\n v\r\nX-B: 2\r\n\r\n", [(b"x-a", b"v"), (b"x-b", b"2")]),
    (b"0\r\nX-A: a\r\n \r\n\r\n", [(b"x-a", b"a")]),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("wire", "trailers"), FOLDED_TRAILERS)
def test_chunked_trailers_with_obs_fold(
    wire: bytes, trailers: list[tuple[bytes, bytes]], split: int | None
) -> None:
    r = ChunkedReader()
    assert run(r, b"3\r\nabc\r\n" + wire + b"NEXT", split=split) == b"abc"
    assert r.done
    assert r.trailers == trailers
    assert r.trailing == b"NEXT"


CHUNKED_BAD = [
    (b"0\r\n folded first\r\n\r\n", "starts with a continuation"),
    (b"0\r\nX: a\r\n b\x01\r\n\r\n", "malformed trailer continuation"),
    (b"zz\r\n", "bad chunk size"),
    (b"-5\r\nhello\r\n", "bad chunk size"),
    (b"+5\r\nhello\r\n", "bad chunk size"),
    (b"0x5\r\nhello\r\n", "bad chunk size"),
    (b"\r\n", "bad chunk size"),
    (b"1" * 17 + b"\r\n", "bad chunk size"),
    (b"1" * 21 + b"\r\n", "bad chunk size"),
    (b"5\r\nhelloXX", "not followed by CRLF"),
    (b"5\r\nhello\n0\r\n\r\n", "not followed by CRLF"),
    (b"5\nhello\r\n", "bare LF"),
    (b"5;\x01\r\nhello\r\n", "bad chunk size"),
    (b"5" + b" " * MAX_CHUNK_LINE + b"\r\n", "longer than"),
    (b"5" + b";" * (MAX_CHUNK_LINE + 10), "longer than"),
    (b"0\r\nno colon here\r\n\r\n", "malformed trailer"),
    (b"0\r\n" + b"X-A: " + b"a" * 20000, "trailer section longer"),
    (b"0\r\n" + b"X: y\r\n" * (MAX_TRAILER_FIELDS + 1) + b"\r\n", "trailer fields"),
]


@pytest.mark.parametrize("split", [None, 1])
@pytest.mark.parametrize(("wire", "message"), CHUNKED_BAD)
def test_chunked_bad(wire: bytes, message: str, split: int | None) -> None:
    r = ChunkedReader()
    with pytest.raises(FramingError, match=message):
        run(r, wire, split=split)


def test_chunked_truncated() -> None:
    for wire in [b"", b"5\r\nhel", b"5\r\nhello", b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\n"]:
        r = ChunkedReader()
        run(r, wire)
        with pytest.raises(FramingError, match="middle of a chunked body"):
            r.feed_eof()


def test_chunked_after_done_is_trailing() -> None:
    r = ChunkedReader()
    run(r, b"0\r\n\r\n")
    assert r.feed(b"more") == ()
    assert r.trailing == b"more"
    r.feed_eof()  # complete: not an error


def test_chunked_large_chunk_passes_reads_through() -> None:
    r = ChunkedReader()
    assert r.feed(b"100000\r\n") == []
    data = b"x" * 4096
    (piece,) = r.feed(data)
    assert piece is data  # a read wholly inside one chunk is not copied


@pytest.mark.parametrize(
    ("values", "expected"),
    [([b"10"], 10), ([b"10", b"10"], 10), ([b"10, 10"], 10), ([b"0"], 0), ([b"007"], 7)],
)
def test_parse_content_length_ok(values: list[bytes], expected: int) -> None:
    assert parse_content_length(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([b"-1"], "bad Content-Length"),
        ([b"+5"], "bad Content-Length"),
        ([b"0x10"], "bad Content-Length"),
        ([b""], "bad Content-Length"),
        ([b"1" * 20], "more than 19 digits"),
        ([b"1" * 21], "more than 19 digits"),
        ([b"5", b"6"], "conflicting"),
        ([b"5, 6"], "conflicting"),
    ],
)
def test_parse_content_length_bad(values: list[bytes], message: str) -> None:
    with pytest.raises(FramingError, match=message):
        parse_content_length(values)


@pytest.mark.parametrize(
    ("method", "status", "headers", "kind"),
    [
        ("HEAD", 200, [(b"content-length", b"100")], NoBodyReader),
        ("GET", 204, [], NoBodyReader),
        ("GET", 304, [(b"content-length", b"100")], NoBodyReader),
        ("GET", 103, [], NoBodyReader),
        ("GET", 200, [(b"content-length", b"100")], ContentLengthReader),
        ("GET", 200, [(b"transfer-encoding", b"chunked")], ChunkedReader),
        ("GET", 200, [(b"transfer-encoding", b"Chunked")], ChunkedReader),
        ("GET", 200, [], UntilCloseReader),
        ("POST", 404, [(b"content-type", b"text/plain")], UntilCloseReader),
    ],
)
def test_body_reader_choice(
    method: str, status: int, headers: list[tuple[bytes, bytes]], kind: type
) -> None:
    assert type(body_reader(method, status, headers)) is kind


def test_body_reader_refuses_cl_and_te() -> None:
    headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    with pytest.raises(FramingError, match="both Content-Length and Transfer-Encoding"):
        body_reader("GET", 200, headers)


def test_body_reader_refuses_other_codings() -> None:
    with pytest.raises(FramingError, match="unsupported Transfer-Encoding"):
        body_reader("GET", 200, [(b"transfer-encoding", b"gzip, chunked")])
