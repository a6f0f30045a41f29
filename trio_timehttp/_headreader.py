"""Sans-IO response head reader: bytes in, a checked final head or an error out (pure).

The requester feeds what the socket returns to a ``HeadReader`` until it
hands back the final (non-1xx) ``Head``; ``rest`` then holds the bytes after
that head (the start of the body). Nothing here touches a socket or a clock.

Rules (RFC 9112 sections 2-5, and h11's readers, whose grammar we follow):

* a head ends at the first empty line; lines end in CRLF or a bare LF (as
  h11 and every browser accept);
* the status line is ``HTTP/x.y SP 3DIGIT [SP reason]``; only 1.0 and 1.1 are
  spoken; the status code is 100..599 (RFC 9110 section 15);
* a field is ``token ":" OWS value OWS``; obs-fold continuation lines are
  joined with one space (RFC 9112 section 5.2); Content-Length must be
  digits (a list of one repeated value is allowed, section 6.3 rule 5) and
  Transfer-Encoding, when present, ``chunked`` (the framing layer refuses
  the pair together);
* the caps (``HeadLimits``) bound field count, head size and the number of
  1xx responses: each is work or memory a hostile server can force on us;
* a 101 Switching Protocols is refused: the connection would stop speaking
  HTTP, which this client does not do;
* bytes that cannot begin a status line fail *at once*, before the head is
  complete: an SSH banner or ``Data`` after a 100 Continue would otherwise
  hold the exchange until its deadline.

Errors are ``HeadError`` (a ``ProtocolError``) with a message that says what
the server did; the requester adds which server and URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import ProtocolError
from ._framing import ContentLengthReader, FramingError, body_reader
from ._headers import Headers
from ._shown import shown

__all__ = [
    "HEAD_MEMO_BYTES",
    "HEAD_MEMO_ENTRIES",
    "Head",
    "HeadError",
    "HeadLimits",
    "HeadMemo",
    "HeadReader",
]

# The memo of validated heads (see HeadMemo): at most this many heads of at
# most this many bytes each (about 256 KiB in all), cleared when full.
HEAD_MEMO_ENTRIES = 64
HEAD_MEMO_BYTES = 4096

# h11's grammar (h11/_abnf.py), as bytes regexes.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
# h11's field-vchar is deliberately lenient ("VCHAR / obs-text" plus the
# control bytes real servers send): anything but NUL and whitespace.
_VCHAR = rb"[^\x00\s]"
_STATUS_LINE = re.compile(
    rb"HTTP/(?P<version>[0-9]\.[0-9]) (?P<status>[0-9]{3})"
    rb"(?: (?P<reason>(?:[ \t]|[^\x00\s])*))?"
)
_FIELD = re.compile(
    rb"(?P<name>"
    + _TOKEN
    + rb"):[ \t]*(?P<value>"
    + _VCHAR
    + rb"+(?:[ \t]+"
    + _VCHAR
    + rb"+)*)?[ \t]*"
)
_FOLD = re.compile(rb"[ \t]+")
_DIGITS = re.compile(rb"[0-9]{1,19}")
# What the first bytes of a status line may be, position by position: a
# prefix that already breaks this can never become a status line.
_PREFIX = b"HTTP/9.9 999"
_DIGIT = frozenset(b"0123456789")
_END_OF_HEAD = re.compile(rb"\n\r?\n")


class HeadError(ProtocolError):
    """The server's response head is unusable; the message says what the server did."""


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Caps on one response: fields per head, bytes per head, 1xx heads before the final one."""

    max_fields: int = 100
    max_bytes: int = 65536
    max_informational: int = 10


class Head:
    """A final response head, checked. Immutable, so byte-identical heads may share one.

    ``raw_headers``: ``(lower-case name, value)`` byte pairs in order (what the
    framing layer reads); ``headers``: the same as ``Headers`` (text);
    ``persistent``: HTTP/1.1 without ``Connection: close`` (RFC 9112 section
    9.3; HTTP/1.0 keep-alive is not trusted); ``length``: the Content-Length
    when there is exactly one valid value, else None.
    """

    __slots__ = (
        "headers",
        "http_version",
        "length",
        "persistent",
        "raw_headers",
        "reason",
        "status",
    )

    def __init__(
        self, status: int, reason: str, version: bytes, raw: list[tuple[bytes, bytes]]
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = version.decode("ascii")
        self.raw_headers = raw
        self.headers = Headers._from_lower(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
        )
        close = any(n == b"connection" and has_close(v) for n, v in raw)
        self.persistent = version == b"1.1" and not close
        # The body length when any request but HEAD gets a Content-Length body
        # (body_reader depends on the method only for HEAD): saves choosing
        # the framing per response. None: the requester asks body_reader.
        self.length: int | None = None
        try:
            probe = body_reader("GET", status, raw)
        except FramingError:
            return
        if type(probe) is ContentLengthReader:
            self.length = probe.length


def has_close(value: bytes) -> bool:
    """Whether a Connection header value lists the ``close`` option (RFC 9112 section 9.6)."""
    return any(t.strip(b" \t").lower() == b"close" for t in value.split(b","))


class HeadMemo:
    """Final heads already accepted under the same ``HeadLimits``, by their exact bytes.

    Parsing is a pure function of a head's bytes and the limits, so a head
    seen again gives the same verdict and the same ``Head``. Servers repeat
    heads byte for byte (nginx changes only ``Date``, once a second); the
    measurements are in bench/README.md. Only a head that arrived whole in
    the first read, with no 1xx before it, ending at its first CRLFCRLF, of
    at most ``HEAD_MEMO_BYTES``, is kept: exactly such bytes are what the
    lookup in ``HeadReader.feed`` finds. Bounded by clearing when full.
    """

    __slots__ = ("_heads", "limits")

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self._heads: dict[bytes, Head] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, key: bytes) -> Head | None:
        return self._heads.get(key)

    def match(self, data: bytes) -> tuple[Head, bytes] | None:
        """The memoised head ``data`` starts with, and the bytes after it; None if none.

        ``data`` must be the first bytes of a response (what a ``HeadReader``
        would be fed first): exactly what ``HeadReader.feed`` looks up.
        """
        cut = data.find(b"\r\n\r\n") + 4
        if cut > 3:
            head = self._heads.get(data[:cut])
            if head is not None:
                return head, data[cut:]
        return None

    def put(self, key: bytes, head: Head) -> None:
        if len(key) > HEAD_MEMO_BYTES:
            return
        if len(self._heads) >= HEAD_MEMO_ENTRIES:
            self._heads.clear()
        self._heads[key] = head


class HeadReader:
    """The head(s) of one response: ``feed`` bytes until it returns the final ``Head``.

    ``feed(data)`` returns None while more bytes are needed, the final head
    once complete (``rest`` then holds what followed it; ``informational``
    counts the 1xx heads skipped). ``feed_eof()`` reports the server closed:
    it always raises (a head cut short). Raises ``HeadError``. Not reusable:
    one reader per response.
    """

    __slots__ = ("_buf", "_first", "_memo", "_scan", "informational", "limits", "received", "rest")

    def __init__(self, memo: HeadMemo) -> None:
        self._memo = memo
        self.limits = memo.limits
        self._buf = b""
        self._first = True
        # Where the search for the end of the head resumes (a drip of small
        # reads must not rescan the whole buffer each time).
        self._scan = 0
        self.informational = 0
        self.received = 0
        self.rest = b""

    def feed(self, data: bytes) -> Head | None:
        self.received += len(data)
        if self._first:
            self._first = False
            hit = self._memo.match(data)
            if hit is not None:
                self.rest = hit[1]
                return hit[0]
            buf = data
        else:
            buf = self._buf + data if self._buf else data
        while True:
            end = _END_OF_HEAD.search(buf, self._scan)
            if end is None:
                self._check_partial(buf)
                self._buf = buf
                self._scan = max(0, len(buf) - 2)
                return None
            self._scan = 0
            size = end.end()
            if size > self.limits.max_bytes:
                raise HeadError(f"sent a response head larger than {self.limits.max_bytes} bytes")
            head = self._parse(buf[:size])
            buf = buf[size:]
            if head is not None:
                self.rest = buf
                if self.informational == 0 and self.received == len(data):
                    # The whole head came in this first read: memoise it if it
                    # ends at its first CRLFCRLF (see HeadMemo).
                    cut = data.find(b"\r\n\r\n") + 4
                    if cut == size:
                        self._memo.put(data[:cut], head)
                return head

    def feed_eof(self) -> None:
        if self.received == 0:
            raise HeadError("closed the connection without sending a response")
        raise HeadError("closed the connection in the middle of the response head")

    def _check_partial(self, buf: bytes) -> None:
        """Fail early: the head is incomplete, but may already be hopeless."""
        if len(buf) > self.limits.max_bytes:
            raise HeadError(f"sent a response head larger than {self.limits.max_bytes} bytes")
        nl = buf.find(b"\n")
        line = buf if nl < 0 else buf[:nl]
        if nl >= 0:
            _status_line(line.removesuffix(b"\r"))
        elif not _could_start_status_line(line):
            raise HeadError(
                f"sent a malformed response head: not an HTTP/1.x status line {shown(line)}"
            )

    def _parse(self, block: bytes) -> Head | None:
        """One complete head; None for a 1xx (skipped), the Head for a final one."""
        lines = block.split(b"\n")
        # The split leaves the empty line and an empty last item.
        lines = [line.removesuffix(b"\r") for line in lines[:-2]]
        version, status, reason = _status_line(lines[0])
        raw = _fields(lines[1:], self.limits.max_fields)
        if status < 200:
            if status == 101:
                raise HeadError(
                    "switched protocols (101 Switching Protocols): "
                    "this client speaks only HTTP/1.x and does not support upgrades"
                )
            self.informational += 1
            if self.informational > self.limits.max_informational:
                raise HeadError(
                    f"sent more than {self.limits.max_informational} informational (1xx) responses"
                )
            return None
        return Head(status, reason.decode("latin-1"), version, raw)


def _could_start_status_line(prefix: bytes) -> bool:
    """Whether ``prefix`` (no LF yet) may still grow into ``HTTP/d.d ddd``."""
    for i, byte in enumerate(prefix[: len(_PREFIX)]):
        want = _PREFIX[i]
        if want == 0x39:  # "9": any digit
            if byte not in _DIGIT:
                return False
        elif byte != want:
            return False
    # After the status code: a space and the reason, or the end of the line.
    return len(prefix) <= len(_PREFIX) or prefix[len(_PREFIX)] in b" \r"


def _status_line(line: bytes) -> tuple[bytes, int, bytes]:
    m = _STATUS_LINE.fullmatch(line)
    if m is None:
        raise HeadError(
            f"sent a malformed response head: not an HTTP/1.x status line {shown(line)}"
        )
    version = m["version"]
    if version not in (b"1.1", b"1.0"):
        raise HeadError(f"answered with unsupported HTTP version {version.decode()}")
    status = int(m["status"])
    if status < 100:
        raise HeadError(f"sent a malformed response head (status code {status:03d})")
    if status > 599:
        # RFC 9110 section 15: "Values outside the range 100..599 are invalid".
        raise HeadError(f"answered with invalid status code {status}")
    return version, status, m["reason"] or b""


def _fields(lines: list[bytes], max_fields: int) -> list[tuple[bytes, bytes]]:
    """The header fields of one head, checked; obs-fold joined with a space."""
    raw: list[tuple[bytes, bytes]] = []
    for line in lines:
        fold = _FOLD.match(line)
        if fold is not None:
            if not raw:
                raise HeadError("sent a malformed response head (continuation line first)")
            name, value = raw[-1]
            more = line[fold.end() :].rstrip(b" \t")
            raw[-1] = (name, value + b" " + more if value and more else value + more)
            continue
        m = _FIELD.fullmatch(line)
        if m is None:
            raise HeadError(f"sent a malformed response head: bad header field {shown(line)}")
        raw.append((m["name"].lower(), m["value"] or b""))
        if len(raw) > max_fields:
            raise HeadError(f"sent a response with more than {max_fields} header fields")
    _check_framing_fields(raw)
    return raw


def _check_framing_fields(raw: list[tuple[bytes, bytes]]) -> None:
    """Content-Length digits and one value; Transfer-Encoding exactly ``chunked`` once.

    Content-Length values that are the same number (``6, 06``) count as
    one (RFC 9110 section 8.6 lets a recipient use the single value).
    """
    seen: set[bytes] = set()
    codings: list[bytes] = []
    for name, value in raw:
        if name == b"content-length":
            for part in value.split(b","):
                part = part.strip(b" \t")
                if _DIGITS.fullmatch(part) is None:
                    raise HeadError(
                        f"sent a malformed response head: bad Content-Length {shown(value)} "
                        "(not a number)"
                    )
                seen.add(part.lstrip(b"0") or b"0")
            if len(seen) > 1:
                values = ", ".join(sorted(v.decode("ascii") for v in seen))
                raise HeadError(
                    f"sent a malformed response head: conflicting Content-Length values ({values})"
                )
        elif name == b"transfer-encoding":
            codings += [c.strip(b" \t").lower() for c in value.split(b",")]
    if codings and codings != [b"chunked"]:
        raise HeadError(_coding_problem(codings))


def _coding_problem(codings: list[bytes]) -> str:
    """Why a Transfer-Encoding other than a single ``chunked`` is refused, in words."""
    if codings.count(b"chunked") > 1:
        return (
            "sent a malformed response head: Transfer-Encoding chunked twice "
            "(chunked may be applied only once, RFC 9112 section 7)"
        )
    others = ", ".join(c.decode("latin-1") for c in codings if c != b"chunked")
    return (
        f"sent a malformed response head: Transfer-Encoding {shown(others)} "
        "(only chunked is understood)"
    )
