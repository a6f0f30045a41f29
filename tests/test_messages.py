"""Error messages about what a server sent: words, escaped and bounded peer text, no reprs.

The pure parts (``_shown``, the head reader, the framing) are fed bytes
whole, byte by byte and with trailing data; the same heads then come from a
real socket so the message the caller gets is checked end to end.
"""

from __future__ import annotations

import re

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import trio_timehttp as t
from trio_timehttp._framing import FramingError, body_reader, parse_content_length
from trio_timehttp._headreader import HeadError, HeadLimits, HeadMemo, HeadReader
from trio_timehttp._shown import SHOWN_CHARS, shown

from helpers import Recorder, serve_evil

# What a Python repr of server data looks like in a message: b'...', [b'...'].
REPR = re.compile(r"(?<![\\\w])b['\"]|\[b['\"]")


@given(st.binary(max_size=400))
def test_shown_is_printable_ascii_quoted_and_bounded(data: bytes) -> None:
    out = shown(data)
    assert out.startswith('"')
    assert out.endswith(('"', '…"'))
    body = out[1:-1].removesuffix("…")
    assert all(" " <= ch <= "~" for ch in body)
    assert len(body) <= 4 * SHOWN_CHARS  # every character is at most \xNN
    assert out.endswith('…"') == (len(data) > SHOWN_CHARS)
    assert REPR.search(out) is None


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_shown_keeps_plain_text_as_is(text: str) -> None:
    assert shown(text) == '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_shown_escapes_controls_and_non_ascii() -> None:
    assert shown(b"a\r\n\t\x1b[2J\xff") == '"a\\r\\n\\t\\x1b[2J\\xff"'
    assert shown("x€") == '"x\\u20ac"'
    assert shown(b"y" * 100) == '"' + "y" * SHOWN_CHARS + '…"'


def _head_error(wire: bytes, step: int | None) -> str:
    reader = HeadReader(HeadMemo(HeadLimits()))
    pieces = [wire] if step is None else [wire[i : i + step] for i in range(0, len(wire), step)]
    try:
        for piece in pieces:
            assert reader.feed(piece) is None
        reader.feed_eof()
    except HeadError as exc:
        return str(exc)
    raise AssertionError("no HeadError")


BAD_HEADS = [
    (
        b"SSH-2.0-OpenSSH_9.6p1 " + b"x" * 200 + b"\r\n",
        'HTTP/1.x status line "S',
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "chunked twice",
    ),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "chunked twice"),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        'Transfer-Encoding "gzip" (only chunked',
    ),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "conflicting Content-Length values (5, 6)",
    ),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 'bad Content-Length "-1" (not a number)'),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\x1b[2J\r\n\r\n", 'bad header field "X: a\\x00b\\x1b[2J"'),
    (b"HTTP/1.1 200 OK\r\nNo colon " + b"z" * 300 + b"\r\n\r\n", "…"),
]


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize(("wire", "words"), BAD_HEADS)
def test_bad_heads_are_described_in_words(wire: bytes, words: str, step: int | None) -> None:
    text = _head_error(wire, step)
    assert words in text
    assert REPR.search(text) is None
    assert len(text) < 200  # server text is cut, whatever it sent


def test_same_content_length_written_twice_is_one_length() -> None:
    assert parse_content_length([b"06", b"6"]) == 6
    assert parse_content_length([b"6, 006"]) == 6
    reader = HeadReader(HeadMemo(HeadLimits()))
    head = reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 6, 06\r\n\r\n-foo-\nEXTRA")
    assert head is not None
    assert reader.rest == b"-foo-\nEXTRA"
    body = body_reader("GET", 200, head.raw_headers)
    assert list(body.feed(reader.rest)) == [b"-foo-\n"]
    assert body.done


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([b"5", b"6"], "conflicting Content-Length values (5, 6)"),
        ([b"0x10"], 'bad Content-Length "0x10" (not a number)'),
        ([b"\x1b]0;pwned\x07"], 'bad Content-Length "\\x1b]0;pwned\\x07"'),
    ],
)
def test_framing_messages(values: list[bytes], words: str) -> None:
    with pytest.raises(FramingError) as info:
        parse_content_length(values)
    assert words in str(info.value)
    assert REPR.search(str(info.value)) is None


def test_transfer_codings_in_framing_are_named() -> None:
    with pytest.raises(FramingError, match="chunked applied twice"):
        body_reader(
            "GET", 200, [(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")]
        )
    with pytest.raises(FramingError, match='"gzip, chunked"') as info:
        body_reader("GET", 200, [(b"transfer-encoding", b"gzip, chunked")])
    assert REPR.search(str(info.value)) is None


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", 'status line "SSH-2.0-OpenSSH_9.6"'),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "chunked twice",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\n-foo-\n", "(6, 7)"),
    ],
)
async def test_messages_end_to_end(nursery: trio.Nursery, reply: bytes, words: str) -> None:
    srv = await nursery.start(serve_evil, [("recv",), ("send", reply), ("close",)])
    c = Recorder()
    with pytest.raises(t.ProtocolError) as info:
        await t.fetch(srv.url("/"), c, timeout=10)
    assert words in str(info.value)
    assert REPR.search(str(info.value)) is None
    assert c.closed == 1


async def test_equal_content_lengths_end_to_end(nursery: trio.Nursery) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 06\r\n\r\n-foo-\n"
    srv = await nursery.start(serve_evil, [("recv",), ("send", reply), ("close",)])
    c = Recorder()
    r = await t.fetch(srv.url("/"), c, timeout=10)
    assert r.status_code == 200
    assert bytes(c.body) == b"-foo-\n"


def test_a_bad_date_is_quoted_and_cut() -> None:
    from trio_timehttp._httpdate import parse_http_date

    with pytest.raises(ValueError, match="not an HTTP date") as info:
        parse_http_date("Mon, 01 Jan " + "9" * 5000 + " 00:00:00 GMT\x1b[2J", now=0.0)
    assert len(str(info.value)) < 100
    assert "\x1b" not in str(info.value)


async def test_query_http_time_bad_date_message_is_bounded(nursery: trio.Nursery) -> None:
    date = b"Mon, 01 Jan " + b"9" * 5000 + b" 00:00:00 GMT"
    reply = b"HTTP/1.1 200 OK\r\nDate: " + date + b"\r\nContent-Length: 0\r\n\r\n"
    srv = await nursery.start(serve_evil, [("recv",), ("send", reply), ("close",)])
    with pytest.raises(t.ProtocolError, match="unparsable Date header") as info:
        await t.query_http_time(srv.url("/"), timeout=10)
    assert len(str(info.value)) < 200
