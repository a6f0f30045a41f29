"""The sans-IO head reader: every input fed whole, one byte at a time, and with
trailing data (as h11 tests its readers), plus property tests.

Issue 9 items 4 (101), 5 (non-HTTP peers fail at once) and 7 (messages say
what the server did, never a library's internals) are pinned here with
several inputs each.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_timehttp._headreader as hr
from trio_timehttp._headreader import Head, HeadError, HeadLimits, HeadMemo, HeadReader

TAIL = b"BODY-AND-MORE"


def feed_rest(
    data: bytes, *, split: int | None = None, limits: HeadLimits | None = None
) -> tuple[Head, bytes]:
    """Feed ``data`` whole or in ``split``-byte pieces until a head comes out;
    return it and every byte after it (fed or not)."""
    reader = HeadReader(HeadMemo(limits or HeadLimits()))
    step = len(data) if split is None else split
    for i in range(0, len(data), step):
        head = reader.feed(data[i : i + step])
        if head is not None:
            return head, reader.rest + data[i + step :]
    reader.feed_eof()
    raise AssertionError("feed_eof() must raise")


def feed_all(data: bytes, *, split: int | None = None, limits: HeadLimits | None = None) -> Head:
    return feed_rest(data, split=split, limits=limits)[0]


SPLITS = [None, 1, 2, 5]

VALID = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "OK", [(b"content-length", b"5")]),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, "No Content", []),
    (b"HTTP/1.1 200\r\n\r\n", 200, "", []),
    (b"HTTP/1.1 200 \r\n\r\n", 200, "", []),
    (b"HTTP/1.0 404 Not Found\nServer: x\n\n", 404, "Not Found", [(b"server", b"x")]),
    (b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\n\tthree\r\n\r\n", 200, "OK",
     [(b"x-a", b"one two three")]),
    (b"HTTP/1.1 200 OK\r\nX-Empty:\r\nY:  v  \r\n\r\n", 200, "OK",
     [(b"x-empty", b""), (b"y", b"v")]),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 201 Created\r\n\r\n", 201, "Created", []),
    (b"HTTP/1.1 200 caf\xe9\r\nContent-Length: 3, 3\r\n\r\n", 200, "caf\xe9",
     [(b"content-length", b"3, 3")]),
]  # fmt: skip


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("wire", "status", "reason", "raw"), VALID)
def test_valid_heads(
    wire: bytes, status: int, reason: str, raw: list[tuple[bytes, bytes]], split: int | None
) -> None:
    head, rest = feed_rest(wire + TAIL, split=split)
    assert (head.status, head.reason, head.raw_headers) == (status, reason, raw)
    assert rest == TAIL
    assert head.headers.items() == [(n.decode(), v.decode("latin-1")) for n, v in raw]


def test_head_fields() -> None:
    head = feed_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n")
    assert (head.http_version, head.length, head.persistent) == ("1.1", 7, True)
    assert not feed_all(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\n\r\n").persistent
    assert not feed_all(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").persistent
    assert feed_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").length is None
    assert feed_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").length is None


INVALID = [
    (b"HTTP/1.1 OK\r\n\r\n", "malformed response head"),
    (b"HTTP/2 200\r\n\r\n", "malformed response head"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version 2.0"),
    (b"HTTP/0.9 200 OK\r\n\r\n", "unsupported HTTP version 0.9"),
    (b"HTTP/1.1 099 X\r\n\r\n", "malformed response head"),
    (b"HTTP/1.1 600 X\r\n\r\n", "invalid status code 600"),
    (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed response head"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed response head"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "malformed response head"),
    (b"HTTP/1.1 200 OK\r\n folded-first\r\n\r\n", "continuation line first"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1" + b"0" * 20 + b"\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "conflicting"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "only chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     "chunked twice"),
    (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "malformed response head"),
]  # fmt: skip


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("wire", "message"), INVALID)
def test_invalid_heads(wire: bytes, message: str, split: int | None) -> None:
    with pytest.raises(HeadError, match=message):
        feed_all(wire + TAIL, split=split)


# Issue 9.4: a 101 is refused with a message that says what happened.
SWITCHES = [
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\x00\x00",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 OK\r\n\r\n",
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("wire", SWITCHES)
def test_101_is_a_clear_protocol_error(wire: bytes, split: int | None) -> None:
    with pytest.raises(HeadError, match=r"switched protocols .* does not support upgrades"):
        feed_all(wire, split=split)


# Issue 9.5: a first line that cannot begin an HTTP/1.x status line fails as
# soon as the bytes show it, without the end of a head ever coming.
NOT_HTTP = [
    b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nData\n",
    b"220 mail.example ESMTP ready\r\n",
    b"\x16\x03\x03\x00\x5a\x02\x00",  # a TLS ServerHello to a plain-HTTP client
    b"+OK POP3 ready\r\n",
    b"http/1.1 200 OK\r\n",
    b"HTTP/1.1  200 OK\r\n",
    b"HTTP/1.1 2x",
    b"HTTP/11 200 OK\r\n",
    b"HTTP/1.1 2000 OK\r\n",
    b"<html><body>hello</body></html>\n",
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("wire", NOT_HTTP)
def test_non_http_fails_before_a_head_ends(wire: bytes, split: int | None) -> None:
    reader = HeadReader(HeadMemo(HeadLimits()))
    step = len(wire) if split is None else split
    pieces = [wire[i : i + step] for i in range(0, len(wire), step)]
    # No blank line ends a head in any of these: only an early check can fail them.
    with pytest.raises(HeadError, match="malformed response head"):
        feed_pieces(reader, pieces)


def feed_pieces(reader: HeadReader, pieces: list[bytes]) -> None:
    for piece in pieces:
        assert reader.feed(piece) is None


@pytest.mark.parametrize(
    "prefix", [b"H", b"HTTP/", b"HTTP/1.1", b"HTTP/1.1 20", b"HTTP/1.1 200", b"HTTP/1.1 200 O"]
)
def test_a_status_line_prefix_waits_for_more(prefix: bytes) -> None:
    reader = HeadReader(HeadMemo(HeadLimits()))
    for i in range(len(prefix)):
        assert reader.feed(prefix[i : i + 1]) is None
    with pytest.raises(HeadError, match="in the middle of the response head"):
        reader.feed_eof()


def test_eof_before_any_byte() -> None:
    with pytest.raises(HeadError, match="closed the connection without sending a response"):
        HeadReader(HeadMemo(HeadLimits())).feed_eof()


# Caps.


@pytest.mark.parametrize("split", [None, 7])
def test_field_cap(split: int | None) -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(4))
    wire = b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n"
    assert len(feed_all(wire, split=split, limits=HeadLimits(max_fields=4)).raw_headers) == 4
    with pytest.raises(HeadError, match="more than 3 header fields"):
        feed_all(wire, split=split, limits=HeadLimits(max_fields=3))


@pytest.mark.parametrize("split", [None, 1, 100])
def test_byte_cap_on_complete_and_endless_heads(split: int | None) -> None:
    limits = HeadLimits(max_bytes=200)
    wire = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300 + b"\r\n\r\n"
    with pytest.raises(HeadError, match="larger than 200 bytes"):
        feed_all(wire, split=split, limits=limits)
    endless = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 1000
    with pytest.raises(HeadError, match="larger than 200 bytes"):
        feed_all(endless, split=split, limits=limits)


def test_byte_cap_is_per_head() -> None:
    # Several 1xx heads, each under the cap, together over it: fine.
    one = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"a" * 60 + b">\r\n\r\n"
    wire = one * 3 + b"HTTP/1.1 200 OK\r\n\r\n"
    assert len(wire) > 200
    assert feed_all(wire, limits=HeadLimits(max_bytes=200)).status == 200


@pytest.mark.parametrize("split", [None, 3])
def test_informational_cap(split: int | None) -> None:
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\n\r\n"
    assert feed_all(cont * 2 + final, split=split, limits=HeadLimits(max_informational=2))
    with pytest.raises(HeadError, match="more than 2 informational"):
        feed_all(cont * 3 + final, split=split, limits=HeadLimits(max_informational=2))


# The memo of validated heads.


def test_memo_returns_the_same_head_for_the_same_bytes() -> None:
    memo = HeadMemo(HeadLimits())
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    first = HeadReader(memo)
    a = first.feed(wire + b"ok")
    second = HeadReader(memo)
    b = second.feed(wire + b"ok" + b"more")
    assert a is b
    assert (first.rest, second.rest) == (b"ok", b"okmore")
    assert len(memo) == 1


def test_memo_match_finds_exactly_a_known_head_at_the_start() -> None:
    # What the exchange asks before it makes a reader: the head, and what follows it.
    memo = HeadMemo(HeadLimits())
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    assert memo.match(wire + b"ok") is None  # nothing known yet
    head = HeadReader(memo).feed(wire + b"ok")
    assert memo.match(wire) == (head, b"")  # whole, nothing after
    assert memo.match(wire + b"ok" + wire) == (head, b"ok" + wire)  # trailing data kept
    assert memo.match(wire[:-1]) is None  # cut short: no end of head
    assert memo.match(b"") is None
    assert memo.match(b"X" + wire) is None  # not at the start
    assert memo.match(wire.replace(b"2", b"3")) is None  # one byte differs


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",  # a 1xx first
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF: not found by the lookup
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * hr.HEAD_MEMO_BYTES + b"\r\n\r\n",  # too big
    ],
)
def test_memo_skips_unusual_heads(wire: bytes) -> None:
    memo = HeadMemo(HeadLimits())
    assert HeadReader(memo).feed(wire) is not None
    assert len(memo) == 0


def test_memo_skips_a_head_split_across_reads() -> None:
    memo = HeadMemo(HeadLimits())
    reader = HeadReader(memo)
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") is None
    assert reader.feed(b"\r\n") is not None
    assert len(memo) == 0


def test_memo_never_keeps_a_rejected_head() -> None:
    memo = HeadMemo(HeadLimits(max_fields=1))
    for _ in range(2):
        with pytest.raises(HeadError):
            HeadReader(memo).feed(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    assert len(memo) == 0


def test_memo_is_bounded() -> None:
    memo = HeadMemo(HeadLimits())
    for i in range(hr.HEAD_MEMO_ENTRIES * 2 + 3):
        HeadReader(memo).feed(b"HTTP/1.1 200 OK\r\nX-N: %d\r\n\r\n" % i)
        assert len(memo) <= hr.HEAD_MEMO_ENTRIES


# Properties.

INTERNALS = ("h11", "event", "role=", "state", "Traceback", "assert")


@given(st.sampled_from(VALID), st.lists(st.integers(1, 400), max_size=6), st.binary(max_size=20))
def test_any_split_gives_the_same_head(
    case: tuple[bytes, int, str, list[tuple[bytes, bytes]]], cuts: list[int], tail: bytes
) -> None:
    wire = case[0] + tail
    reader = HeadReader(HeadMemo(HeadLimits()))
    points = sorted({c for c in cuts if c < len(wire)})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    head = None
    fed = 0
    for piece in pieces:
        fed += len(piece)
        head = reader.feed(piece)
        if head is not None:
            break
    assert head is not None
    assert (head.status, head.raw_headers) == (case[1], case[3])
    assert reader.rest + wire[fed:] == tail


@given(st.binary(max_size=300), st.integers(1, 50))
def test_random_bytes_give_a_head_more_wanted_or_a_clear_error(junk: bytes, step: int) -> None:
    reader = HeadReader(HeadMemo(HeadLimits()))
    try:
        for i in range(0, len(junk), step):
            if reader.feed(junk[i : i + step]) is not None:
                return
        reader.feed_eof()
    except HeadError as exc:
        text = str(exc)
        assert text.startswith(("sent ", "answered ", "closed ", "switched "))
        assert not any(word in text for word in INTERNALS)
        return
    raise AssertionError("feed_eof() must raise")
