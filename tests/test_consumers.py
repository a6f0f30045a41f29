"""The ready-made consumers: BytesConsumer, TextConsumer (FileConsumer: test_file_consumer.py).

The unit tests call the consumer methods directly with hand-built responses
(pure and fast); the ``fetch`` tests at the end run them, and stdlib
incremental parsers used as consumers, against the local h11 test server.
"""

from __future__ import annotations

import codecs
import encodings.aliases
import itertools
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import (
    BodyTooLarge,
    BytesConsumer,
    Request,
    Response,
    TextConsumer,
    fetch,
)
from trio_timehttp._headers import Headers
from trio_timehttp._textconsumer import _text_codec, content_type_charset

from helpers import ServerRequest, serve_http

URL = "http://example.com/doc"


def make_response(
    status: int | None = 200, headers: Any = (), *, method: str = "GET", url: str = URL
) -> Response:
    return Response(
        url=url,
        request=Request(method, url),
        status_code=status,
        reason="OK" if status else "",
        headers=Headers(headers),
    )


def failure(exc: BaseException | None = None) -> Response:
    response = make_response(None)
    response.error = exc or ConnectionRefusedError("refused")
    return response


class TextSink:
    """A text target that records what it gets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.closed = 0

    def feed(self, text: str) -> None:
        assert isinstance(text, str)
        self.parts.append(text)

    def close(self) -> str:
        self.closed += 1
        return "".join(self.parts)

    @property
    def text(self) -> str:
        return "".join(self.parts)


# --------------------------------------------------------------------------
# BytesConsumer


def test_bytes_collects_the_body() -> None:
    c = BytesConsumer()
    response = make_response()
    c.http_header(response)
    for piece in (b"ab", b"", b"cd", b"e"):
        c.feed(piece)
    assert c.body == b"abcde"  # readable before close too
    c.feed(b"f")
    c.close()
    assert c.body == b"abcdef"
    assert c.response is response
    assert c.closed


def test_bytes_empty_body() -> None:
    c = BytesConsumer()
    c.http_header(make_response(204))
    c.close()
    assert c.body == b""


def test_bytes_accepts_bytearray_and_memoryview() -> None:
    c = BytesConsumer()
    c.feed(bytearray(b"ab"))
    c.feed(memoryview(b"cd"))
    c.close()
    assert c.body == b"abcd"
    assert type(c.body) is bytes


def test_bytes_max_size_exactly_is_fine() -> None:
    c = BytesConsumer(max_size=4)
    c.http_header(make_response(headers={"content-length": "4"}))
    c.feed(b"ab")
    c.feed(b"cd")
    c.close()
    assert c.body == b"abcd"


def test_bytes_over_max_size_raises_from_feed() -> None:
    c = BytesConsumer(max_size=4)
    c.http_header(make_response())
    c.feed(b"abc")
    with pytest.raises(BodyTooLarge, match="limit of 4 bytes"):
        c.feed(b"de")
    assert len(c.body) <= 4


def test_bytes_announced_too_large_raises_from_http_header() -> None:
    c = BytesConsumer(max_size=10)
    with pytest.raises(BodyTooLarge, match="Content-Length 11"):
        c.http_header(make_response(headers={"content-length": "11"}))


@pytest.mark.parametrize(
    ("status", "method", "headers"),
    [
        (200, "HEAD", {"content-length": "999"}),  # HEAD: the length of a body not sent
        (304, "GET", {"content-length": "999"}),
        (200, "GET", {"content-length": "999", "content-encoding": "gzip"}),
        (200, "GET", {"content-length": "lots"}),
    ],
)
def test_bytes_content_length_not_checked_when_it_does_not_frame(
    status: int, method: str, headers: dict[str, str]
) -> None:
    c = BytesConsumer(max_size=10)
    c.http_header(make_response(status, headers, method=method))


def test_bytes_failure_response_is_recorded() -> None:
    c = BytesConsumer(max_size=1)
    response = failure()
    c.http_header(response)
    c.close()
    assert c.response is response
    assert c.body == b""


def test_bytes_negative_max_size() -> None:
    with pytest.raises(ValueError, match="max_size"):
        BytesConsumer(max_size=-1)


# --------------------------------------------------------------------------
# Content-Type charset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("text/html", None),
        ("text/html; charset=utf-8", "utf-8"),
        ("text/html;charset=ISO-8859-1", "ISO-8859-1"),
        ("text/html ; CharSet = koi8-r ", "koi8-r"),
        ('text/html; charset="utf-8"', "utf-8"),
        ('text/html; charset="ut\\f-8"', "utf-8"),  # quoted-pair
        ("text/html; charset='windows-1252'", "windows-1252"),
        ('text/html; foo="a;charset=latin1"; charset=utf-16', "utf-16"),
        ('text/html; foo="a;charset=latin1"', None),
        ("text/html; format=flowed; charset=shift_jis", "shift_jis"),
        ("text/html; charset=", None),
        ("text/html; ;; charset=cp1251", "cp1251"),
        ("text/html; bogus; charset=cp1251", "cp1251"),
        ("text/html; charset=utf-8; charset=latin1", "utf-8"),  # the first one counts
    ],
)
def test_content_type_charset(value: str | None, expected: str | None) -> None:
    assert content_type_charset(value) == expected


# --------------------------------------------------------------------------
# TextConsumer


async def decode_all(
    chunks: list[bytes], content_type: str | None = None, encoding: str | None = None
) -> tuple[str, TextConsumer, TextSink]:
    sink = TextSink()
    c = TextConsumer(sink, encoding=encoding)
    headers = {"content-type": content_type} if content_type else {}
    await c.http_header(make_response(headers=headers))
    for chunk in chunks:
        await c.feed(chunk)
    result = await c.close()
    assert result == sink.text
    assert sink.closed == 1
    return sink.text, c, sink


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


TEXT = "naïve café — 日本語 😀 ok"


@pytest.mark.parametrize(
    ("charset", "codec"),
    [
        (None, "utf-8"),
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ("utf-16", "utf-16"),
        ("utf-16-le", "utf-16-le"),
        ("shift_jis", "shift_jis"),
        ("gb18030", "gb18030"),
        ("utf-32", "utf-32"),
    ],
)
async def test_text_multibyte_split_byte_at_a_time(charset: str | None, codec: str) -> None:
    text = TEXT if codec not in ("shift_jis",) else "日本語のテキスト"
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    decoded, c, _ = await decode_all(one_byte_at_a_time(text.encode(codec)), content_type)
    assert decoded == text
    assert c.encoding is not None


async def test_text_whole_body_at_once() -> None:
    assert (await decode_all([TEXT.encode()]))[0] == TEXT


async def test_text_feeds_nothing_while_a_character_is_incomplete() -> None:
    sink = TextSink()
    c = TextConsumer(sink)
    await c.http_header(make_response())
    await c.feed("😀".encode()[:2])
    assert sink.parts == []
    await c.feed("😀".encode()[2:])
    assert sink.parts == ["😀"]


@pytest.mark.parametrize(
    ("charset", "data", "expected"),
    [
        ("iso-8859-1", "café".encode("latin-1"), "café"),
        ("latin1", b"\xe9", "é"),
        ("windows-1252", b"\x80", "€"),
        ("koi8-r", "привет".encode("koi8-r"), "привет"),
    ],
)
async def test_text_charset_from_content_type(charset: str, data: bytes, expected: str) -> None:
    assert (await decode_all([data], f"text/html; charset={charset}"))[0] == expected


@pytest.mark.parametrize("charset", ["no-such-charset", "base64", "zlib", "rot13", "hex", ""])
async def test_text_unknown_or_non_text_charset_falls_back_to_utf8(charset: str) -> None:
    decoded, c, _ = await decode_all(["é€".encode()], f"text/plain; charset={charset}")
    assert decoded == "é€"
    assert c.encoding == "utf-8"


async def test_text_undecodable_bytes_are_replaced() -> None:
    assert (await decode_all([b"a\xffb\xc3"]))[0] == "a\ufffdb\ufffd"


async def test_text_truncated_character_flushed_at_close() -> None:
    assert (await decode_all(["é".encode()[:1]]))[0] == "\ufffd"


async def test_text_utf8_bom_is_not_text() -> None:
    assert (await decode_all([b"\xef\xbb", b"\xbfhi"], "text/plain; charset=utf-8"))[0] == "hi"


async def test_text_explicit_encoding_wins() -> None:
    decoded, c, _ = await decode_all(
        ["é".encode("latin-1")], "text/plain; charset=utf-8", "latin-1"
    )
    assert decoded == "é"
    assert c.encoding == "iso8859-1"


def test_text_explicit_unknown_encoding_is_a_caller_error() -> None:
    with pytest.raises(LookupError):
        TextConsumer(TextSink(), encoding="no-such")
    with pytest.raises(LookupError):
        TextConsumer(TextSink(), encoding="base64")


async def test_text_without_http_header_defaults_to_utf8() -> None:
    sink = TextSink()
    c = TextConsumer(sink)
    await c.feed("é".encode())
    await c.close()
    assert sink.text == "é"


async def test_text_close_only_once() -> None:
    sink = TextSink()
    c = TextConsumer(sink)
    await c.close()
    assert await c.close() is None
    assert sink.closed == 1


async def test_text_passes_head_and_errors_to_a_target_that_wants_them() -> None:
    class Target(TextSink):
        def __init__(self) -> None:
            super().__init__()
            self.head: Response | None = None
            self.error: BaseException | None = None

        async def http_header(self, response: Response) -> None:
            self.head = response

        async def http_error(self, exc: BaseException) -> None:
            self.error = exc

    target = Target()
    c = TextConsumer(target)
    response = make_response()
    assert await c.http_header(response) is None
    exc = RuntimeError("cut")
    await c.http_error(exc)
    await TextConsumer(TextSink()).http_error(exc)  # a target without http_error: fine
    assert target.head is response
    assert target.error is exc


async def test_text_async_target() -> None:
    class AsyncSink:
        def __init__(self) -> None:
            self.text = ""

        async def feed(self, text: str) -> None:
            self.text += text

        async def close(self) -> int:
            return len(self.text)

    sink = AsyncSink()
    c = TextConsumer(sink)
    await c.http_header(make_response())
    for b in one_byte_at_a_time(TEXT.encode()):
        await c.feed(b)
    assert await c.close() == len(TEXT)
    assert sink.text == TEXT


# --------------------------------------------------------------------------
# TextConsumer never raises because of the charset a server names (issue 9.12)

# Every codec name Python knows, and the ones that used to raise.
CHARSET_NAMES = sorted(
    set(encodings.aliases.aliases)
    | set(encodings.aliases.aliases.values())
    | {"idna", "punycode", "utf-16", "utf-32", "utf-7", "unicode_escape", "undefined"}
    | {"rot13", "base64", "zlib", "hex", "uu", "bz2", "quopri", "no-such", "x-\x00", "utf-8-sig"}
)


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("utf-16", "héllo 日本".encode("utf-16-le"), "héllo 日本"),  # no BOM: little-endian
        ("UTF-16", codecs.BOM_UTF16_BE + "héllo".encode("utf-16-be"), "héllo"),
        ("utf16", codecs.BOM_UTF16_LE + "héllo".encode("utf-16-le"), "héllo"),
        ("utf-32", "héllo 😀".encode("utf-32-le"), "héllo 😀"),
        ("utf-32", codecs.BOM_UTF32_BE + "héllo".encode("utf-32-be"), "héllo"),
        ("utf-16", b"a\x00b", "a\ufffd"),  # an odd byte at the end
        ("utf-16", b"\xff", "\ufffd"),  # less than a BOM
        ("utf-16", b"", ""),
        ("utf-32", b"\xff\xff\xff\xff" + "a".encode("utf-32-le"), "\ufffda"),  # beyond U+10FFFF
        ("idna", "bücher.example".encode(), "bücher.example"),  # refuses errors="replace"
        ("idna", b"\xff ok", "\ufffd ok"),
        ("punycode", "café".encode(), "café"),  # cannot decode chunk by chunk
        ("punycode", b"\xfe\xd8", "\ufffd\ufffd"),
        ("undefined", b"plain", "plain"),  # decodes nothing at all
        ("rot13", b"uryyb", "uryyb"),  # str-to-str: not a text encoding
        ("base64", b"aGk=", "aGk="),  # bytes-to-bytes: not a text encoding
    ],
)
@pytest.mark.parametrize("split", ["whole", "bytewise"])
async def test_text_charsets_that_used_to_raise(
    charset: str, body: bytes, expected: str, split: str
) -> None:
    chunks = [body] if split == "whole" else one_byte_at_a_time(body)
    decoded, c, _ = await decode_all(chunks, f"text/plain; charset={charset}")
    assert decoded == expected
    assert c.encoding in {"utf-16", "utf-32", "utf-8"}


@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined", "rot13", "zlib"])
async def test_text_unusable_codecs_fall_back_to_utf8(charset: str) -> None:
    decoded, c, _ = await decode_all(
        one_byte_at_a_time("é€".encode()), f"text/x; charset={charset}"
    )
    assert decoded == "é€"
    assert c.encoding == "utf-8"


@pytest.mark.parametrize("encoding", ["idna", "punycode", "rot13", "undefined"])
def test_text_unusable_explicit_encoding_is_a_caller_error(encoding: str) -> None:
    with pytest.raises(LookupError, match="cannot decode incrementally"):
        TextConsumer(TextSink(), encoding=encoding)


@given(
    charset=st.sampled_from(CHARSET_NAMES) | st.text(max_size=12),
    body=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=0, max_value=64), max_size=8),
)
async def test_text_never_raises_whatever_the_charset_and_bytes(
    charset: str, body: bytes, cuts: list[int]
) -> None:
    points = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    decoded, c, sink = await decode_all(chunks, f"text/html; charset={charset}")
    assert isinstance(decoded, str)
    assert isinstance(c.encoding, str)
    assert sink.closed == 1


USABLE = sorted({c for c in map(_text_codec, CHARSET_NAMES) if c is not None})


@given(
    codec=st.sampled_from(USABLE),
    text=st.text(max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
async def test_text_any_chunking_decodes_like_the_whole(
    codec: str, text: str, cuts: list[int]
) -> None:
    body = text.encode(codec, "ignore")  # what the codec can say of the text
    points = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    decoded, c, _ = await decode_all(chunks, f"text/plain; charset={codec}")
    assert decoded == (await decode_all([body], f"text/plain; charset={codec}"))[0]
    assert c.encoding == codec
    if codec.startswith("utf") and not text.startswith("\ufeff") and body == _strict(text, codec):
        assert decoded == text  # the Unicode codecs also round-trip


def _strict(text: str, codec: str) -> bytes | None:
    try:
        return text.encode(codec)
    except UnicodeError:
        return None


def _flaky_codec(name: str) -> codecs.CodecInfo | None:
    """A codec that passes every check up front and then fails on a NUL byte."""
    if name != "flaky_for_tests":
        return None

    class Decoder(codecs.IncrementalDecoder):
        def decode(self, input: Any, final: bool = False) -> str:
            if b"\x00" in bytes(input):
                raise ValueError("this codec breaks on NUL")
            return codecs.utf_8_decode(bytes(input), "replace", final)[0]

    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        utf8.encode, utf8.decode, incrementaldecoder=Decoder, name="flaky_for_tests"
    )


async def test_text_a_codec_failing_mid_body_hands_the_rest_to_utf8() -> None:
    codecs.register(_flaky_codec)
    try:
        decoded, c, _ = await decode_all(
            [b"caf\xc3\xa9 ", b"\x00 na\xc3\xafve", b" \xff"],
            "text/plain; charset=flaky_for_tests",
        )
    finally:
        codecs.unregister(_flaky_codec)
    assert decoded == "café \x00 naïve \ufffd"
    assert c.encoding == "utf-8"


def charset_handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    """``/<charset>/<hex body>``: that body, labelled with that charset."""
    _, charset, body = request.target.split("/")
    return 200, [("content-type", f"text/html; charset={charset}")], bytes.fromhex(body)


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("utf-16", "<p>héllo</p>".encode("utf-16-le"), "<p>héllo</p>"),
        ("utf-32", "<p>😀</p>".encode("utf-32-le"), "<p>😀</p>"),
        ("idna", "<p>bücher</p>".encode(), "<p>bücher</p>"),
        ("punycode", b"<p>\xff</p>", "<p>\ufffd</p>"),
        ("rot13", b"<p>x</p>", "<p>x</p>"),
    ],
)
async def test_fetch_text_consumer_survives_the_charset_a_server_names(
    charset: str, body: bytes, expected: str
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, charset_handler)
        sink = TextSink()
        response = await fetch(server.url(f"/{charset}/{body.hex()}"), TextConsumer(sink))
        nursery.cancel_scope.cancel()
    assert response.status_code == 200
    assert sink.text == expected
    assert sink.closed == 1


class LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


HTML = (
    "<html><head><title>Café 😀</title></head><body>"
    '<a href="/one">1</a> <A HREF="two.html">2</A> <a name="x">no</a>'
    "<a href='https://example.org/ü'>3</a></body></html>"
)


async def test_html_parser_through_text_consumer_byte_at_a_time() -> None:
    parser = LinkParser()
    c = TextConsumer(parser)
    await c.http_header(make_response(headers={"content-type": "text/html; charset=utf-8"}))
    for b in one_byte_at_a_time(HTML.encode()):
        await c.feed(b)
    await c.close()
    assert parser.title == "Café 😀"
    assert parser.links == ["/one", "two.html", "https://example.org/ü"]


@given(
    text=st.text(max_size=200),
    codec=st.sampled_from(["utf-8", "utf-16", "utf-32", "gb18030"]),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
)
async def test_text_any_split_decodes_like_the_whole(
    text: str, codec: str, cuts: list[int]
) -> None:
    data = text.encode(codec, errors="surrogatepass")
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    decoded, _, _ = await decode_all(chunks, f"text/plain; charset={codec}")
    expected = data.decode(codec if codec != "utf-8" else "utf-8-sig", errors="replace")
    assert decoded == expected


# --------------------------------------------------------------------------
# XMLParser as a consumer (pure part; the fetch run is below)


def test_xml_parser_is_a_consumer_as_is() -> None:
    parser = ET.XMLParser()
    data = "<root><item>é</item><item>😀</item></root>".encode()
    for b in one_byte_at_a_time(data):
        parser.feed(b)
    root = parser.close()
    assert [i.text for i in root] == ["é", "😀"]


# --------------------------------------------------------------------------
# Through fetch, against the local h11 test server

XML = "<feed><entry id='1'>é</entry><entry id='2'>😀</entry></feed>".encode()


def content_handler(request: ServerRequest) -> Any:
    """``/html`` and ``/xml`` sent chunked one byte per chunk; ``/big`` 100 kB."""

    async def bytewise(data: bytes) -> Any:
        for i in range(len(data)):
            yield data[i : i + 1]

    if request.target == "/html":
        return 200, [("content-type", "text/html; charset=utf-8")], bytewise(HTML.encode())
    if request.target == "/latin1":
        body = "<a href='/café'>x</a>".encode("latin-1")
        return 200, [("content-type", 'text/html; charset="ISO-8859-1"')], body
    if request.target == "/xml":
        return 200, [("content-type", "application/xml")], bytewise(XML)
    if request.target == "/big":
        return 200, [], bytes(range(256)) * 400
    return 404, [], b"not found"


async def test_fetch_html_parser_through_text_consumer() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, content_handler)
        parser = LinkParser()
        await fetch(server.url("/html"), TextConsumer(parser))
        latin = LinkParser()
        await fetch(server.url("/latin1"), TextConsumer(latin))
        nursery.cancel_scope.cancel()
    assert parser.title == "Café 😀"
    assert parser.links == ["/one", "two.html", "https://example.org/ü"]
    assert latin.links == ["/café"]


async def test_fetch_xml_parser_as_a_consumer_directly() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, content_handler)
        # fetch drops what close() returns, so let the parser build into a
        # target we keep (the stdlib's TreeBuilder, wrapped to remember the root).
        builder = RootKeeper()
        await fetch(server.url("/xml"), ET.XMLParser(target=builder))
        nursery.cancel_scope.cancel()
    assert builder.root is not None
    assert [(e.get("id"), e.text) for e in builder.root] == [("1", "é"), ("2", "😀")]


class RootKeeper(ET.TreeBuilder):
    root: ET.Element | None = None

    def close(self) -> ET.Element:
        self.root = super().close()
        return self.root


async def test_fetch_bytes_consumer_and_its_bound() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, content_handler)
        whole = BytesConsumer()
        response = await fetch(server.url("/big"), whole)
        bounded = BytesConsumer(max_size=1000)
        with pytest.raises(BodyTooLarge):
            await fetch(server.url("/big"), bounded)
        nursery.cancel_scope.cancel()
    assert whole.body == bytes(range(256)) * 400
    assert whole.response is response
