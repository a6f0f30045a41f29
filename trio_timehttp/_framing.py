"""Sans-IO response body framing: Content-Length, chunked, until-close, none (pure).

h11 parses the response head for us; the body does not go through h11, whose
receive buffer copies every byte two or three times. Instead the requester
picks one of the readers here with ``body_reader()`` and feeds it what the
socket returns. Each reader's ``feed(data)`` returns the body pieces found in
``data`` (for Content-Length bodies: the very ``bytes`` object it was given,
no copy) and, once the framing says the body is complete, sets ``done`` and
keeps any bytes *beyond* the framing in ``trailing`` — a connection that
carried such bytes must never be reused, or the next request would read
them as its response.

The rules mirror h11's readers (``h11/_readers.py``) and RFC 9112, and are
stricter where h11 is lenient (``Content-Length`` together with
``Transfer-Encoding`` is an error here; h11 silently prefers chunked).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._errors import ProtocolError
from ._shown import shown

__all__ = [
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE_DIGITS",
    "MAX_CONTENT_LENGTH_DIGITS",
    "MAX_TRAILER_BYTES",
    "MAX_TRAILER_FIELDS",
    "BodyReader",
    "ChunkedReader",
    "ContentLengthReader",
    "FramingError",
    "NoBodyReader",
    "UntilCloseReader",
    "body_reader",
]

# Limits. Each bounds memory or work an attacker can force on us; each is far
# above anything a real server sends.
#
# A chunk size of 16 hex digits already covers 2**64 - 1 bytes; more digits
# are only useful for an integer-overflow attack (h11 allows 20, we take 16:
# a server that pads a chunk size with leading zeros beyond that is broken).
MAX_CHUNK_SIZE_DIGITS = 16
# One chunk-size line, extensions included. RFC 9112 section 7.1.1 lets a
# recipient "limit the total length of chunk extensions received"; nobody
# uses them, so 4 KiB is generous.
MAX_CHUNK_LINE = 4096
# The trailer section after the last chunk (RFC 9112 section 7.1.2): we parse
# and discard it, but bound its size and field count as we do for the head.
MAX_TRAILER_BYTES = 16384
MAX_TRAILER_FIELDS = 100
# 19 decimal digits is the most an int64 off_t (nginx, Linux sendfile) can
# describe; a longer Content-Length is an overflow attack, not a body.
MAX_CONTENT_LENGTH_DIGITS = 19

# RFC 9112 section 7.1: chunk-size = 1*HEXDIG. Nothing else: no sign, no "0x",
# no whitespace inside.
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,%d}" % MAX_CHUNK_SIZE_DIGITS)
# chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): we accept any
# visible characters, spaces and tabs after the first ";" (we ignore them) but
# never control bytes.
_CHUNK_EXT = re.compile(rb"[ \t]*(;[\x20-\x7e\t\x80-\xff]*)?")
# field-name ":" field-value, with a token name (RFC 9110 section 5.1).
_TRAILER_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\x20-\x7e\t\x80-\xff]*")
_DIGITS = re.compile(rb"[0-9]+")
# An obs-fold continuation line: whitespace, then field-value characters.
_FOLD_LINE = re.compile(rb"[ \t]+[\x20-\x7e\t\x80-\xff]*")


class FramingError(ProtocolError):
    """The body violates its framing (bad chunk, truncated, ...).

    The requester re-raises it as a ``ProtocolError`` naming the URL.
    """


class BodyReader:
    """Base of the readers: ``feed`` bytes in, body pieces out.

    ``done`` turns true when the framing says the body is complete;
    ``trailing`` then holds the bytes received beyond it. ``reusable`` says
    whether this framing can ever leave the connection reusable (read-until-close
    cannot). ``feed_eof()`` reports that the peer closed: an error unless the
    body was complete or is delimited by the close.
    """

    __slots__ = ("done", "trailing")

    reusable = True

    def __init__(self) -> None:
        self.done = False
        self.trailing = b""

    def feed(self, data: bytes) -> Sequence[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError(self._truncated())

    def _truncated(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class NoBodyReader(BodyReader):
    """HEAD responses, 1xx, 204 and 304 have no body (RFC 9112 section 6.3, rule 1).

    Any byte after the head is beyond the framing.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.done = True

    def feed(self, data: bytes) -> Sequence[bytes]:
        if data:
            self.trailing += data
        return ()

    def _truncated(self) -> str:  # pragma: no cover - never truncated
        return "no body"


class ContentLengthReader(BodyReader):
    """A body of exactly ``length`` bytes (RFC 9112 section 6.3, rule 6).

    Hands back the caller's ``bytes`` object unchanged whenever it lies wholly
    inside the body (the common case: zero copies); slices only the read that
    carries the body's end *and* more.
    """

    __slots__ = ("length", "remaining")

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.remaining = length
        self.done = length == 0

    def feed(self, data: bytes) -> Sequence[bytes]:
        n = len(data)
        remaining = self.remaining
        if n < remaining:
            self.remaining = remaining - n
            return (data,)
        if self.done:
            if data:
                self.trailing += data
            return ()
        self.remaining = 0
        self.done = True
        if n == remaining:
            return (data,)
        self.trailing = data[remaining:]
        return (data[:remaining],)

    def _truncated(self) -> str:
        got = self.length - self.remaining
        return (
            f"connection closed after {got} of {self.length} body bytes "
            "(body shorter than its Content-Length)"
        )


class UntilCloseReader(BodyReader):
    """No framing: the body runs until the server closes (RFC 9112 section 6.3, rule 8).

    The close is the only end marker, so the connection is never reusable.
    """

    __slots__ = ()

    reusable = False

    def feed(self, data: bytes) -> Sequence[bytes]:
        return (data,) if data else ()

    def feed_eof(self) -> None:
        self.done = True

    def _truncated(self) -> str:  # pragma: no cover - an EOF always completes it
        return "unreachable"


_SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)


class ChunkedReader(BodyReader):
    """``Transfer-Encoding: chunked`` (RFC 9112 section 7.1).

    Strict: hex chunk sizes only (at most ``MAX_CHUNK_SIZE_DIGITS`` digits),
    lines ended by CRLF, chunk data followed by exactly CRLF, extensions and
    trailers parsed, bounded and ignored.
    """

    __slots__ = ("_buf", "_remaining", "_state", "_trailer_bytes", "trailers")

    def __init__(self) -> None:
        super().__init__()
        self._state = _SIZE
        self._remaining = 0
        # Bytes of an unfinished line (or CRLF) carried over to the next feed.
        self._buf = b""
        self._trailer_bytes = 0
        self.trailers: list[tuple[bytes, bytes]] = []

    def feed(self, data: bytes) -> Sequence[bytes]:
        if self.done:
            if data:
                self.trailing += data
            return ()
        out: list[bytes] = []
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                out.append(data if pos == 0 and take == end else data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_CRLF
            elif state == _DATA_CRLF:
                # "chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF": the data
                # must be followed by exactly CRLF, or the size was a lie.
                need = 2 - len(self._buf)
                got = self._buf + data[pos : pos + need]
                pos += len(got) - len(self._buf)
                if got != b"\r\n"[: len(got)]:
                    raise FramingError(f"chunk data not followed by CRLF (got {shown(got)})")
                if len(got) < 2:
                    self._buf = got
                    break
                self._buf = b""
                self._state = _SIZE
            else:
                nl = data.find(b"\n", pos)
                limit = MAX_CHUNK_LINE if state == _SIZE else MAX_TRAILER_BYTES
                if nl < 0:
                    self._buf += data[pos:]
                    if len(self._buf) > limit:
                        raise FramingError(self._too_long(state))
                    break
                line = self._buf + data[pos : nl + 1] if self._buf else data[pos : nl + 1]
                self._buf = b""
                pos = nl + 1
                if len(line) > limit:
                    raise FramingError(self._too_long(state))
                if not line.endswith(b"\r\n"):
                    raise FramingError(f"bare LF in chunked framing: {shown(line)}")
                if state == _SIZE:
                    self._size_line(line[:-2])
                elif self._trailer_line(line):
                    self.done = True
                    self.trailing = data[pos:]
                    break
        return out

    @staticmethod
    def _too_long(state: int) -> str:
        if state == _SIZE:
            return f"chunk-size line longer than {MAX_CHUNK_LINE} bytes"
        return f"chunked trailer section longer than {MAX_TRAILER_BYTES} bytes"

    def _size_line(self, line: bytes) -> None:
        m = _CHUNK_SIZE.match(line)
        if m is None or _CHUNK_EXT.fullmatch(line, m.end()) is None:
            raise FramingError(
                f"bad chunk size line {shown(line)} "
                f"(expected 1 to {MAX_CHUNK_SIZE_DIGITS} hex digits)"
            )
        size = int(m.group(), 16)
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailer_line(self, line: bytes) -> bool:
        """Take one trailer line; True at the empty line that ends the message."""
        if line == b"\r\n":
            return True
        self._trailer_bytes += len(line)
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise FramingError(self._too_long(_TRAILER))
        if len(self.trailers) >= MAX_TRAILER_FIELDS:
            raise FramingError(f"more than {MAX_TRAILER_FIELDS} trailer fields")
        field = line[:-2]
        if field[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 section 5.2): a recipient "MUST ... replace each
            # received obs-fold with one or more SP octets" before using the value.
            if not self.trailers:
                raise FramingError(
                    f"trailer section starts with a continuation line {shown(field)}"
                )
            if _FOLD_LINE.fullmatch(field) is None:
                raise FramingError(f"malformed trailer continuation line {shown(field)}")
            name, value = self.trailers[-1]
            more = field.strip(b" \t")
            self.trailers[-1] = (name, value + b" " + more if value and more else value + more)
            return False
        if _TRAILER_FIELD.fullmatch(field) is None:
            raise FramingError(f"malformed trailer field {shown(field)}")
        name, _, value = field.partition(b":")
        self.trailers.append((name.lower(), value.strip(b" \t")))
        return False

    def _truncated(self) -> str:
        return "connection closed in the middle of a chunked body"


def parse_content_length(values: Sequence[bytes]) -> int:
    """The single Content-Length of a response, validated (RFC 9110 section 8.6).

    Several fields or a list are allowed only when every value is the same
    number (RFC 9112 section 6.3, rule 5; ``6, 06`` is one value, as curl
    takes it); anything but plain decimal digits — a sign, spaces, hex — is
    an error.
    """
    seen: set[int] = set()
    for value in values:
        for part in value.split(b","):
            text = part.strip(b" \t")
            if _DIGITS.fullmatch(text) is None:
                raise FramingError(f"bad Content-Length {shown(value)} (not a number)")
            digits = text.lstrip(b"0") or b"0"
            if len(digits) > MAX_CONTENT_LENGTH_DIGITS:
                raise FramingError(
                    f"Content-Length with more than {MAX_CONTENT_LENGTH_DIGITS} digits"
                )
            seen.add(int(digits))
    if len(seen) != 1:
        # Empty ``values`` (never from body_reader) lands here too.
        raise FramingError(
            "conflicting Content-Length values (" + ", ".join(map(str, sorted(seen))) + ")"
        )
    return seen.pop()


def body_reader(method: str, status: int, headers: Sequence[tuple[bytes, bytes]]) -> BodyReader:
    """Pick the reader for a response, following RFC 9112 section 6.3.

    ``headers`` are h11's ``(lower-case name, value)`` pairs. Raises
    ``FramingError`` for framing we refuse: Content-Length together with
    Transfer-Encoding (RFC 9112 section 6.3 rule 3 calls it a likely
    request-smuggling attempt; h11 would just use chunked), a transfer coding
    other than ``chunked`` alone, or a bad Content-Length.
    """
    # Rule 1: "Any response to a HEAD request and any response with a 1xx
    # (Informational), 204 (No Content), or 304 (Not Modified) status code is
    # always terminated by the first empty line after the header fields".
    if method == "HEAD" or status < 200 or status in (204, 304):
        return NoBodyReader()
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
    if codings:
        if lengths:
            raise FramingError(
                "response has both Content-Length and Transfer-Encoding "
                "(a request-smuggling pattern, RFC 9112 section 6.3)"
            )
        coding = [c.strip(b" \t").lower() for c in b",".join(codings).split(b",")]
        if coding.count(b"chunked") > 1:
            raise FramingError("Transfer-Encoding: chunked applied twice (RFC 9112 section 7)")
        if coding != [b"chunked"]:
            raise FramingError(
                f"unsupported Transfer-Encoding {shown(b', '.join(coding))} "
                "(only chunked is decoded)"
            )
        return ChunkedReader()
    if lengths:
        return ContentLengthReader(parse_content_length(lengths))
    return UntilCloseReader()
