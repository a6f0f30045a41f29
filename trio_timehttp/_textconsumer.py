"""``TextConsumer``: a body decoded to text by its charset, never failing on a charset name.

The charset comes from ``Content-Type`` (RFC 9110 section 8.3); a name
Python does not know, or a codec that is not a text encoding or cannot
decode incrementally, falls back to UTF-8 with replacement characters, as
browsers do. Decoding is incremental: a multi-byte character split across
two chunks comes out whole.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import re
from typing import Any, Protocol

from ._consumer import maybe_await
from ._models import Request, Response

__all__ = [
    "TextConsumer",
    "content_type_charset",
]

logger = logging.getLogger("trio_timehttp.http")


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.ASCII)
_QUOTED_PAIR = re.compile(r"\\(.)")


def content_type_charset(value: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type value (quoted or not), or None.

    Parameters are ``; name=token`` or ``; name="quoted string"`` (RFC 9110
    section 5.6.6); a ``;`` or ``charset=`` inside a quoted value of another
    parameter is part of that value, not a new parameter.
    """
    if not value:
        return None
    pos = value.find(";")
    while pos >= 0:
        match = _PARAM_RE.match(value, pos + 1)
        if match is None:
            pos = value.find(";", pos + 1)
            continue
        name, raw = match[1], match[2]
        raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw.strip()
        if name.lower() == "charset":
            return raw.strip().strip("'") or None
        pos = value.find(";", match.end())
    return None


# What a decoder must get right to be used: a text with characters beyond
# ASCII if the codec can encode one (the first it can encode counts), fed back
# one byte at a time; and bytes no codec likes, which must come out as text.
_PROBE_TEXTS = ("<p>é €日本</p>\n", "<p>é</p>\n", "<p>a b</p>\n")
_HOSTILE = (
    b"\xff\xfe\x00\xd8\x00\xdc",
    b"a\x80\\x\\u12",
    b"\x00\x00\x11\x00\xff",
    b"+-&-~{\x1b$B",
)
# Codecs that insist on a byte-order mark; we sniff it ourselves (see _BomDecoder).
_BOM_CODECS = {
    "utf-16": ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")),
    "utf-32": ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be")),
}


def _decodes_incrementally(info: codecs.CodecInfo) -> bool:
    """Whether ``info`` is a text encoding whose decoder works chunk by chunk.

    Public routes only: a text encoding encodes ``str`` to ``bytes`` (this
    rules out ``base64``, ``zlib``, ``rot13``); its incremental decoder, with
    ``errors="replace"``, must give the probe text back when fed one byte at a
    time (this rules out ``punycode`` and decoders that refuse ``replace``,
    such as ``idna``) and turn hostile bytes into ``str`` without raising.
    """
    try:
        for text in _PROBE_TEXTS:
            with contextlib.suppress(UnicodeError):
                encoded: object = info.encode(text)[0]
                break
        else:
            return False
        if not isinstance(encoded, bytes):
            return False
        decoder = info.incrementaldecoder(errors="replace")
        pieces = [decoder.decode(encoded[i : i + 1]) for i in range(len(encoded))]
        pieces.append(decoder.decode(b"", True))
        if not all(isinstance(piece, str) for piece in pieces) or "".join(pieces) != text:
            return False
        for data in _HOSTILE:
            if not isinstance(info.incrementaldecoder(errors="replace").decode(data, True), str):
                return False
    except Exception:  # noqa: BLE001 - a codec is code we do not control: any failure rules it out
        return False
    return True


@functools.lru_cache(maxsize=256)
def _text_codec(name: str | None) -> str | None:
    """The codec's canonical name, or None when it is unknown or unusable here.

    ``codecs.lookup`` also knows bytes-to-bytes transforms (``base64``,
    ``zlib``), str-to-str ones (``rot13``) and codecs whose decoder cannot run
    incrementally with ``errors="replace"`` (``idna``, ``punycode``): a server
    must not be able to pick one of those as a "charset".
    """
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):  # unknown, or a NUL in the name
        return None
    if info.name in _BOM_CODECS or _decodes_incrementally(info):
        return info.name
    return None


class _Decoder(Protocol):
    """What ``TextConsumer`` needs of a decoder (``codecs.IncrementalDecoder`` has it)."""

    def decode(self, data: bytes, final: bool = False, /) -> str: ...
    def getstate(self) -> tuple[bytes, int]: ...


class _BomDecoder:
    """``utf-16`` / ``utf-32`` as the web reads them: a BOM picks the byte order, else LE.

    Python's own decoders for these raise without a BOM; WHATWG's "utf-16" is
    little-endian unless a BOM says otherwise. The BOM is not text.
    """

    def __init__(self, codec: str) -> None:
        self._boms = _BOM_CODECS[codec]
        self._width = len(self._boms[0][0])
        self._buffer = b""
        self._decoder: codecs.IncrementalDecoder | None = None

    def decode(self, data: bytes, final: bool = False, /) -> str:
        if self._decoder is None:
            self._buffer += bytes(data)
            if len(self._buffer) < self._width and not final:
                return ""
            data, self._buffer = self._buffer, b""
            codec = self._boms[0][1]  # little-endian unless a BOM says otherwise
            for bom, name in self._boms:
                if data.startswith(bom):
                    data, codec = data[len(bom) :], name
                    break
            self._decoder = codecs.getincrementaldecoder(codec)("replace")
        return self._decoder.decode(data, final)

    def getstate(self) -> tuple[bytes, int]:
        """The bytes not decoded yet (as ``codecs.IncrementalDecoder.getstate``)."""
        if self._decoder is None:
            return (self._buffer, 0)
        state = self._decoder.getstate()
        return (state[0], 0) if isinstance(state[0], bytes) else (b"", 0)


def _new_decoder(codec: str) -> _Decoder:
    """An incremental decoder (``errors="replace"``) for a codec ``_text_codec`` accepted."""
    if codec in _BOM_CODECS:
        return _BomDecoder(codec)
    # utf-8-sig: a leading BOM is a byte-order mark, not text (WHATWG decode);
    # it decodes everything else exactly as utf-8.
    return codecs.getincrementaldecoder("utf-8-sig" if codec == "utf-8" else codec)("replace")


class TextConsumer:
    """Decodes the body incrementally and feeds ``str`` to ``target``.

    The charset is ``encoding`` if given, else the response's
    ``Content-Type`` charset, else UTF-8. Whatever charset a server names,
    the consumer never raises because of it: an unknown charset, one that is
    not a text encoding, or one whose decoder cannot run incrementally falls
    back to UTF-8 (``.encoding`` says which codec is in use); undecodable
    bytes become U+FFFD; ``utf-16``/``utf-32`` without a BOM are read as
    little-endian; and should a codec still fail mid-body, the rest is
    decoded as UTF-8. A character split across chunks decodes right (an
    incremental decoder keeps the partial bytes). ``close()`` flushes the
    decoder, then calls ``target.close()`` and returns its result.
    ``target`` may be any object with ``feed(str)`` and ``close()`` — an
    ``html.parser.HTMLParser``, say — plain or async; its optional
    ``http_header``/``http_error`` receive the head and errors too.

    Raises ``LookupError`` at construction when the caller's own
    ``encoding`` is unknown or unusable (that is the caller's mistake, not
    the server's).
    """

    def __init__(self, target: Any, encoding: str | None = None) -> None:
        if encoding is not None and _text_codec(encoding) is None:
            raise LookupError(
                f"unknown text encoding, or one that cannot decode incrementally: {encoding!r}"
            )
        self.target = target
        self.requested_encoding = encoding
        self.encoding: str | None = _text_codec(encoding)
        self._decoder: _Decoder | None = None
        self._closed = False

    def _start(self, encoding: str | None) -> _Decoder:
        self.encoding = encoding or "utf-8"
        self._decoder = _new_decoder(self.encoding)
        return self._decoder

    def _decode(self, data: bytes, final: bool = False) -> str:
        """Decode a chunk; a codec that fails anyway hands the rest over to UTF-8."""
        decoder = self._decoder or self._start(self.encoding)
        try:
            return decoder.decode(data, final)
        except Exception as exc:  # noqa: BLE001 - codec code, not the target's: never raise it
            pending = b""
            with contextlib.suppress(Exception):  # the bytes the codec kept, if it says
                state: object = decoder.getstate()[0]
                pending = state if isinstance(state, bytes) else b""
            logger.debug("charset %s failed (%s); decoding the rest as utf-8", self.encoding, exc)
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self.encoding = "utf-8"
            return self._decoder.decode(pending + bytes(data), final)

    async def http_header(self, response: Response) -> Request | None:
        """Pick the charset for this response, then pass the head to the target.

        The charset: the constructor's ``encoding``, else ``Content-Type``'s,
        else UTF-8 (an unusable one falls back to UTF-8, never raises).
        Calls the target's optional ``http_header`` and returns the
        ``Request`` it returns, if any, else None.
        """
        if self.requested_encoding is not None:
            self._start(_text_codec(self.requested_encoding))
        else:
            charset = content_type_charset(response.headers.get("content-type"))
            self._start(_text_codec(charset))
        http_header = getattr(self.target, "http_header", None)
        if http_header is None:
            return None
        result = await maybe_await(http_header(response))
        return result if isinstance(result, Request) else None

    async def feed(self, data: bytes) -> None:
        """Decode what can be decoded and feed it to the target as ``str``.

        The bytes of a character split across pieces wait for the next
        piece, so the target may get nothing for this one. Exceptions from
        the target's ``feed`` propagate unchanged.
        """
        text = self._decode(data)
        if text:
            await maybe_await(self.target.feed(text))

    async def http_error(self, exc: BaseException) -> None:
        """Pass a mid-body error on to the target's ``http_error``, if it has one.

        Does nothing when the target has no ``http_error``; never raises
        on its own.
        """
        http_error = getattr(self.target, "http_error", None)
        if http_error is not None:
            await maybe_await(http_error(exc))

    async def close(self) -> Any:
        """Flush the decoder, feed what is left, then close the target, once.

        A character cut off at the end of the body becomes U+FFFD. Returns
        what the target's ``close()`` returns (an ``html.parser`` returns
        None; an ``XMLParser``-like target may return its result); a
        second call does nothing and returns None.
        """
        if self._closed:
            return None
        self._closed = True
        if self._decoder is not None:
            tail = self._decode(b"", final=True)
            if tail:
                await maybe_await(self.target.feed(tail))
        return await maybe_await(self.target.close())
