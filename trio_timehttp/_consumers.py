"""Ready-made consumers and the redirect policy.

A *consumer* is what the requester streams a response into, as in the seed's
asyncore requester: ``http_header(response)`` (optional) once the head is
parsed, ``feed(chunk)`` for each piece of the body, ``close()`` once at the
end, and the optional ``http_error(exc)`` when the exchange breaks after the
head. Each may be a plain method or an ``async def``.

The split between the two halves is deliberately simple:

* the **requester** (``fetch``/``Client``) owns sockets, connections, tasks
  and the deadline; it knows nothing about redirects;
* a **consumer wrapper** owns policy: ``RedirectingConsumer.http_header``
  looks at a response and either hands it on or *returns the next*
  ``Request``. Deciding that is pure (no I/O here, no Trio, no clock): the
  requester drops the rest of the redirect response and issues what it was
  given.

Nothing in this module imports Trio: the consumers are plain objects that
work with any driver that follows the protocol (and are tested by calling
their methods directly).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import functools
import inspect
import logging
import os
import re
import secrets
import stat
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from ._consumer import call_optional
from ._errors import BodyTooLarge, InvalidURL, ProtocolError, RedirectError, TooManyRedirects
from ._models import Request, Response
from ._partial import PartialFile
from ._resume import Action, decide, range_headers
from ._urls import URL, parse_url, resolve_location

__all__ = [
    "BytesConsumer",
    "FileConsumer",
    "RedirectingConsumer",
    "TextConsumer",
    "next_redirect",
]

logger = logging.getLogger("trio_timehttp.http")

_T = TypeVar("_T")


async def _maybe_await(result: _T | Awaitable[_T]) -> _T:
    """Await ``result`` if a consumer method was an ``async def``; plain values pass."""
    if inspect.isawaitable(result):
        return await result
    return result


# --------------------------------------------------------------------------
# Redirect policy (pure)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Credentials are meant for one origin: they never follow a redirect to another
# (RFC 9110 section 15.4; httpx and browsers do the same for Authorization/Cookie).
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
# When a redirect turns the request into a GET without content, the fields
# that described that content go too (Fetch standard, "request-body-header name",
# plus the framing fields).
_BODY_HEADERS = (
    "content-type",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "content-language",
    "content-location",
)


def _location_text(value: str) -> str:
    """The Location as text: header values arrive as ISO-8859-1, URLs are UTF-8.

    A server that sends ``/café`` sends UTF-8 bytes, which a Latin-1 decode
    turns into ``/cafÃ©``; re-read them as UTF-8 so the URL layer can
    percent-encode the real characters. Bytes that are not UTF-8 are
    percent-encoded as they are.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:  # already real text (a Response built by hand)
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)


def next_redirect(
    response: Response, *, allow_downgrade: bool = False, strip_credentials: bool = False
) -> tuple[Request, bool] | None:
    """The request that follows ``response``, or None if it is not a redirect to follow.

    Returns ``(request, credentials_stripped)``; ``strip_credentials`` says an
    earlier hop already changed origin (credentials stay dropped for the rest
    of the chain). A 3xx without a ``Location``, or with an empty or
    whitespace-only one, is no redirect (None: the response is delivered as
    it is). Spaces in the Location's path or query are sent percent-encoded.
    The next request never carries the caller's ``Host``: the requester
    computes it for each hop. Pure: no counting, no I/O. Raises
    ``RedirectError`` for a Location that must not be followed.
    """
    if response.status_code not in REDIRECT_STATUSES:
        return None
    # Optional whitespace around a field value is not part of it (RFC 9110 5.5).
    locations = {value.strip(" \t") for value in response.headers.get_list("location")}
    if len(locations) > 1:
        raise RedirectError(
            f"conflicting Location fields in the {response.status_code} from "
            f"{response.url}: {sorted(locations)!r}"
        )
    if not locations or not (location := _location_text(locations.pop())):
        # A 3xx without a usable Location is an ordinary response (RFC 9110
        # 15.4); an empty one would resolve to the same URL and loop.
        return None
    request = response.request
    try:
        base = parse_url(response.url)
        if base.fragment is None:
            # The requester may report the URL without its fragment; the
            # fragment the caller asked for is still ours to inherit.
            base_fragment = parse_url(request.url).fragment
            if base_fragment is not None:
                base = URL(base.scheme, base.host, base.port, base.target, base_fragment)
        target = resolve_location(base, location)
    except InvalidURL as exc:
        raise RedirectError(
            f"cannot follow the {response.status_code} from {response.url} "
            f"to Location {location!r}: {exc}"
        ) from exc
    if base.scheme == "https" and target.scheme == "http" and not allow_downgrade:
        raise RedirectError(
            f"refusing to follow a redirect from https to http ({response.url} -> {target}); "
            "pass allow_downgrade=True to allow it"
        )

    method, body = request.method, request.body
    headers = request.headers.remove("host")  # the requester computes Host for each hop
    status = response.status_code
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        # RFC 9110 15.4.4 (303: see other, with GET) and 15.4.2/15.4.3 (the
        # historic POST -> GET that every user agent does for 301/302).
        method, body = "GET", None
        headers = headers.remove(*_BODY_HEADERS)
    if strip_credentials or target.origin != base.origin:
        strip_credentials = True
        headers = headers.remove(*_CREDENTIAL_HEADERS)
    return Request(method, str(target), headers, body), strip_credentials


class RedirectingConsumer:
    """A consumer wrapper that follows redirects for the consumer it wraps.

    ``fetch(url, RedirectingConsumer(BytesConsumer()))`` follows the chain;
    it is written only with the public consumer protocol, so it is also the
    worked example of writing a wrapper of one's own. On 301, 302, 303, 307
    or 308 with a ``Location``, ``http_header`` returns the next ``Request``
    (the Location resolved against the current URL, RFC 3986) and the
    requester sends it (same deadline, same consumer); any other response,
    and a 3xx without a usable ``Location``, goes to the wrapped consumer.
    The wrapped consumer sees only the final response: ``http_header`` once,
    its body, ``close`` once (also when the chain fails).

    The next request: 303 turns any method but HEAD into GET without a
    body, 301 and 302 turn POST into GET without a body, 307 and 308 keep
    method and body. ``Authorization``, ``Cookie`` and
    ``Proxy-Authorization`` are dropped once the origin (scheme, host,
    port) changes, for the rest of the chain; ``Host`` is always
    recomputed. The fragment is kept when the Location has none.

    ``max_redirects`` (default ``10``): how many redirects are followed; one
    more raises ``TooManyRedirects`` (so ``0`` raises on the first).
    ``allow_downgrade`` (default ``False``): whether an https URL may
    redirect to http. Raises ``RedirectError`` for a Location with control
    characters or spaces, an unusable host or port, a scheme other than
    http and https, several different ``Location`` fields, or an https to
    http hop without ``allow_downgrade``. Before either error is raised the
    wrapped consumer gets ``http_header`` with a failure ``Response``
    (``status_code`` None, ``error`` set), as for a failed connection.
    ``ValueError`` at construction for a negative ``max_redirects``.

    ``.redirects`` counts the redirects followed so far; ``.consumer`` is
    the wrapped consumer. One instance follows one chain. The methods are
    ``async`` and await the wrapped consumer's methods when those are
    ``async`` too, so plain and async consumers both work.
    """

    def __init__(
        self, consumer: Any, *, max_redirects: int = 10, allow_downgrade: bool = False
    ) -> None:
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, not {max_redirects}")
        self.consumer = consumer
        self.max_redirects = max_redirects
        self.allow_downgrade = allow_downgrade
        self.redirects = 0
        self._strip_credentials = False
        self._visited: set[tuple[str, str]] = set()
        self._last: Response | None = None
        self._delivered = False
        self._closed = False

    async def http_header(self, response: Response) -> Request | None:
        """Return the next ``Request`` for a redirect; hand any other response on.

        For a response that is not a redirect to follow (or a failure
        ``Response`` of a later hop), calls the wrapped consumer's
        ``http_header`` (if it has one) and returns None, or the
        ``Request`` that consumer returns, should it be a wrapper too.
        Raises ``TooManyRedirects`` or ``RedirectError`` as the class says,
        after telling the wrapped consumer.
        """
        self._last = response
        if response.status_code is None:  # a later hop failed to connect
            return await self._deliver(response)
        try:
            step = next_redirect(
                response,
                allow_downgrade=self.allow_downgrade,
                strip_credentials=self._strip_credentials,
            )
            if step is not None and self.redirects >= self.max_redirects:
                seen = (response.request.method, response.request.url.partition("#")[0])
                loop = f"; a loop ({seen[1]} again)" if seen in self._visited else ""
                raise TooManyRedirects(
                    f"more than {self.max_redirects} redirects, last from {response.url} "
                    f"({response.status_code}){loop}"
                )
        except (RedirectError, TooManyRedirects) as exc:
            await self._fail(response, exc)
            raise
        if step is None:
            return await self._deliver(response)
        request, self._strip_credentials = step
        self.redirects += 1
        self._visited.add((response.request.method, response.request.url.partition("#")[0]))
        logger.debug(
            "redirect %d/%d: %d from %s -> %s %s",
            self.redirects,
            self.max_redirects,
            response.status_code,
            response.url,
            request.method,
            request.url,
        )
        return request

    async def _deliver(self, response: Response) -> Request | None:
        self._delivered = True
        result = await call_optional(self.consumer, "http_header", response)
        if not isinstance(result, Request):
            return None
        # A wrapped wrapper asked for another request: pass it up; it expects
        # to hear about that request's response (or failure) too.
        self._delivered = False
        return result

    async def _fail(self, response: Response, exc: BaseException) -> None:
        """Tell the wrapped consumer the chain failed, as a failed connection is told."""
        if self._delivered:
            return
        failure = Response(
            url=response.url,
            request=response.request,
            history=[*response.history, response],
            error=exc,
        )
        self._delivered = True
        await call_optional(self.consumer, "http_header", failure)

    async def feed(self, data: bytes) -> None:
        """Pass a piece of the final response's body to the wrapped consumer.

        Only the final response's body is ever fed (the requester drops
        the body of a redirect). Awaits the wrapped ``feed`` if it is async;
        its exceptions propagate unchanged.
        """
        await _maybe_await(self.consumer.feed(data))

    async def http_error(self, exc: BaseException) -> None:
        """The exchange broke after a head: tell the wrapped consumer.

        If the wrapped consumer has already had the final response, its
        optional ``http_error(exc)`` is called. If it has not seen a
        response yet (the break came during a redirect hop), it gets
        ``http_header`` with a failure ``Response`` (``status_code`` None,
        ``error`` set to ``exc``) instead, so it always learns of the
        failure, the same way as of a failed connection.
        """
        if not self._delivered and self._last is not None:
            await self._fail(self._last, exc)
            return
        await call_optional(self.consumer, "http_error", exc)

    async def http_complete(self) -> None:
        """The final response's body ended complete: tell the wrapped consumer.

        Calls the wrapped consumer's optional ``http_complete()``, only if
        it has had the final response's head.
        """
        if self._delivered:
            await call_optional(self.consumer, "http_complete")

    async def close(self) -> Any:
        """Close the wrapped consumer, once; returns what its ``close`` returns.

        A second call does nothing and returns None. Awaits the wrapped
        ``close`` if it is async; its exceptions propagate unchanged.
        """
        if self._closed:
            return None
        self._closed = True
        return await _maybe_await(self.consumer.close())


# --------------------------------------------------------------------------
# Bytes


def _content_length(response: Response) -> int | None:
    """The body length the head announces, or None (no body expected to match)."""
    if response.request.method == "HEAD" or response.status_code in (204, 304):
        return None
    if (response.headers.get("content-encoding") or "identity").lower() != "identity":
        return None  # a decoding requester feeds more than was framed
    value = response.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


class BytesConsumer:
    """Collects the whole body in memory: ``.body`` (bytes), ``.response`` (the head).

    ``max_size`` (default ``None``: no bound) bounds the body in bytes: a
    larger one raises ``BodyTooLarge`` from ``http_header`` when
    ``Content-Length`` announces it, else from ``feed`` as soon as the bound
    is crossed, so memory stays bounded either way. ``ValueError`` at
    construction for a negative ``max_size``. ``.closed`` turns true on
    ``close()``. A second ``http_header`` (a retried request) starts the
    body over. Holds no resources: nothing to close but itself.
    """

    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, not {max_size}")
        self.max_size = max_size
        self.response: Response | None = None
        self.closed = False
        self._chunks: list[bytes] = []
        self._size = 0

    def http_header(self, response: Response) -> Request | None:
        """Keep the head as ``.response`` and start an empty body.

        Raises ``BodyTooLarge`` when the response's ``Content-Length``
        announces more than ``max_size`` bytes. Returns None (no redirect).
        """
        self.response = response
        self._chunks, self._size = [], 0
        length = _content_length(response) if response.status_code is not None else None
        if self.max_size is not None and length is not None and length > self.max_size:
            raise BodyTooLarge(
                f"{response.url}: Content-Length {length} is over the limit "
                f"of {self.max_size} bytes"
            )
        return None

    def feed(self, data: bytes) -> None:
        """Append a piece of the body (copied to ``bytes``).

        Raises ``BodyTooLarge`` as soon as the total passes ``max_size``;
        the piece that crossed the bound is not kept.
        """
        self._size += len(data)
        if self.max_size is not None and self._size > self.max_size:
            where = f"{self.response.url}: " if self.response is not None else ""
            raise BodyTooLarge(f"{where}body is over the limit of {self.max_size} bytes")
        self._chunks.append(bytes(data))

    def close(self) -> None:
        """End of the body: join the pieces once and set ``.closed``.

        Never raises; ``.body`` afterwards is the whole body received.
        """
        self.closed = True
        self._chunks = [self.body]

    @property
    def body(self) -> bytes:
        """The body received so far, as one ``bytes`` (all of it after ``close``).

        ``b""`` before any body arrived; joining is done once and remembered.
        """
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0]


# --------------------------------------------------------------------------
# Text

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
        result = await _maybe_await(http_header(response))
        return result if isinstance(result, Request) else None

    async def feed(self, data: bytes) -> None:
        """Decode what can be decoded and feed it to the target as ``str``.

        The bytes of a character split across pieces wait for the next
        piece, so the target may get nothing for this one. Exceptions from
        the target's ``feed`` propagate unchanged.
        """
        text = self._decode(data)
        if text:
            await _maybe_await(self.target.feed(text))

    async def http_error(self, exc: BaseException) -> None:
        """Pass a mid-body error on to the target's ``http_error``, if it has one.

        Does nothing when the target has no ``http_error``; never raises
        on its own.
        """
        http_error = getattr(self.target, "http_error", None)
        if http_error is not None:
            await _maybe_await(http_error(exc))

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
                await _maybe_await(self.target.feed(tail))
        return await _maybe_await(self.target.close())


# --------------------------------------------------------------------------
# File

# os.access(..., effective_ids=True) where the platform has it (Linux does):
# the check must be about the user the process runs as (setuid, setpriv).
_EUID_ACCESS = os.access in os.supports_effective_ids


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


_FD_LINK = re.compile(r"/(?:proc/(self|\d+)/fd|dev/fd)/(\d+)")


def _open_descriptor(path: str) -> int | None:
    """The descriptor ``path`` names if it leads to one of ours (``/dev/stdout``), else None.

    Follows the symlinks by their text (at most 40, as the kernel does), so
    ``/dev/stdout -> /proc/self/fd/1`` is fd 1, whatever it is open on.
    """
    current = os.path.abspath(path)
    for _ in range(40):
        match = _FD_LINK.fullmatch(current)
        if match is not None and match[1] in (None, "self", str(os.getpid())):
            return int(match[2])
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _open_through(path: str, info: os.stat_result) -> int:
    """Open a device or FIFO to write through; a FIFO without a reader is ENXIO, not a wait.

    (A blocking open of a FIFO waits for a reader with no deadline, and no
    Ctrl-C while it waits; a caller wanting to wait retries, as the CLI does.)
    """
    flags = os.O_WRONLY | os.O_NOCTTY
    if stat.S_ISFIFO(info.st_mode):
        flags |= os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(info.st_mode):
            raise OSError(errno.ENXIO, "no reader on the FIFO") from exc
        raise
    os.set_blocking(fd, True)  # the writes themselves wait for the reader, as usual
    return fd


class FileConsumer:
    """Writes the body to ``path``; a failed transfer never leaves a file that looks complete.

    Where ``path`` names a regular file, or nothing yet, the body goes to a
    hidden temporary file beside it (``.NAME.XXXXXXXXXXXX.part``; same
    directory, so the final ``os.replace`` is an atomic rename on one file
    system) and ``close()`` renames it into place only after
    ``http_complete()`` — the requester's word that the body's framing proved
    it complete: Content-Length reached, the last chunk, or, for a body read
    until the close, the close itself, which over TLS must be a close_notify
    (over plain TCP a dropped connection looks the same as that close: such
    a body is kept as complete, as curl keeps it). Anything else — a
    failure ``Response``, ``http_error``, a write error, a cancelled or
    interrupted fetch, ``close()`` without ``http_complete()`` — removes the
    temporary file and leaves whatever was at ``path`` untouched. A replaced
    file keeps its permission bits (a new one gets ``0o666`` less the umask).

    What is at ``path`` is never destroyed: a symlink stays a symlink (the
    file it points to is the one replaced, by a temporary file beside *it*);
    a device, a FIFO or any other non-regular file (``/dev/null``,
    ``/dev/stdout``) is written through, as ``curl -o`` does — such writes
    cannot be taken back, so there a failed transfer leaves what it wrote.
    ``/dev/stdout``, ``/dev/fd/N`` write to that descriptor as it is open
    (a shell's ``>> log`` keeps appending).

    ``open()`` checks and opens the target now; a caller wanting mistakes
    found before the request (the CLI does) calls it first, otherwise the
    first response does. It raises ``OSError`` naming ``path`` (never the
    temporary file): ``IsADirectoryError`` for a directory,
    ``FileNotFoundError`` for a missing directory, ``PermissionError`` for a
    directory that cannot take the temporary file or a read-only file. A
    FIFO without a reader is ``OSError(ENXIO)`` (retry to wait for one).

    Any complete response is written whatever its status (status codes are
    data): check ``.response.status_code``. ``.bytes_written`` counts the
    body so far (for a progress display); ``.complete`` says whether the whole
    body is in place. A second ``http_header`` (a retried request) starts the
    body over.

    Plain blocking writes, not ``trio.wrap_file``: the writes are small and
    sequential into the page cache (microseconds each), while a thread hop
    per chunk would cost more than the write; and this module stays free of
    Trio. For the same reason there is no ``fsync``: the promise is about
    failed *transfers*, not power loss.

    ``resume=True`` (for a regular file, or nothing yet, at ``path``): the
    body goes to ``<target>.part`` instead, which a failed transfer *keeps*;
    ``range_headers()`` gives the ``Range``/``If-Range`` fields that ask for
    the rest of it (pass them to ``fetch`` as ``headers``), and the answer
    decides: a 206 from our offset is appended, a 200 starts
    over, a 416 for exactly our size means the ``.part`` is already whole;
    a 206 that would corrupt the file raises ``ProtocolError`` from
    ``http_header``. The ``.part`` becomes ``path`` only when complete (its
    size the resource's full size, when the answer says it). ``offset`` is
    where this transfer's ``bytes_written`` began.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = os.fspath(path)
        self.response: Response | None = None
        self.bytes_written = 0
        self.complete = False
        self._file: Any = None
        self._tmp_path: str | None = None  # None while writing through
        self._target = ""  # the real path the temporary file is renamed to
        self._failed = False
        self._ended = False  # http_complete() was called
        self._closed = False
        self.resume = resume
        self.offset = 0
        self._partial: PartialFile | None = None  # resume=True, on a regular target
        self._total: int | None = None  # the resource's size, for a resumed body
        self._dropping = False  # a 416 for a whole .part: its body is no file content
        self._owed: int | None = None  # an appended 206: bytes its Content-Range still owes

    def _error(self, exc: OSError) -> OSError:
        """``exc`` again, naming the user's path (not a temporary file or a resolved link)."""
        return OSError(exc.errno, exc.strerror or str(exc), self.path)

    def open(self) -> None:
        """Check the target and open it now (a second call does nothing).

        Raises ``OSError`` naming ``path``: ``IsADirectoryError``,
        ``FileNotFoundError`` (a missing directory) or ``PermissionError``;
        see the class docstring. Without this call, the first response opens it.
        """
        if self._file is not None or self._partial is not None:
            return
        try:
            own = _open_descriptor(self.path)
            if own is not None:
                # /dev/stdout, /dev/fd/N: a file this process has open (the
                # shell's ``>>`` included): write to it as opened, appending
                # where it appends; never reopened, truncated or replaced.
                self._file = os.fdopen(os.dup(own), "wb", buffering=1 << 16)
                return
            try:
                # Through every symlink, /proc's too: /dev/stdout into a pipe
                # is a pipe, though realpath() names no file for it.
                info: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                info = None  # a new file (or a dangling link's target)
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            if info is not None and not stat.S_ISREG(info.st_mode):
                # O_NOCTTY: writing to a terminal must not make it ours.
                fd = _open_through(self.path, info)
                self._file = os.fdopen(fd, "wb", buffering=1 << 16)
                return
            real = os.path.realpath(self.path)  # the file to replace; the links stay
            directory = os.path.dirname(real)
            if os.path.isdir(directory) and not os.access(
                directory, os.W_OK | os.X_OK, effective_ids=_EUID_ACCESS
            ):  # the temporary file goes there
                raise PermissionError(
                    errno.EACCES, f"Permission denied (the directory {directory} is not writable)"
                )
            if info is not None and not os.access(real, os.W_OK, effective_ids=_EUID_ACCESS):
                raise PermissionError(errno.EACCES, "Permission denied (the file is not writable)")
            if self.resume:
                self._partial = PartialFile(real)  # opened once the answer is known
                self._target = real
                return
            self._open_temporary(real, info)
        except OSError as exc:
            raise self._error(exc) from exc

    def _open_temporary(self, real: str, info: os.stat_result | None) -> None:
        directory, name = os.path.split(real)
        for _ in range(100):
            candidate = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
            try:
                # O_EXCL: never clobber; mode 0o666 so the umask applies as
                # for any new file (mkstemp's 0o600 would survive the rename).
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            self._tmp_path = candidate
            self._target = real
            self._file = os.fdopen(fd, "wb", buffering=1 << 16)
            if info is not None:  # replacing a file: keep its permission bits
                os.fchmod(fd, stat.S_IMODE(info.st_mode))
            return
        raise FileExistsError(errno.EEXIST, "could not create a temporary file beside it")

    def _discard(self) -> None:
        """Drop the temporary file (a failed transfer); close a written-through target."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # the data is being thrown away anyway
                self._file.close()
            self._file = None
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
            self._tmp_path = None

    def range_headers(self) -> list[tuple[str, str]]:
        """The ``Range``/``If-Range`` fields asking for the rest of the ``.part``.

        With ``resume=True`` and a ``.part`` left by an earlier transfer:
        pass them to ``fetch`` as ``headers``. ``[]`` without ``resume`` or
        without a ``.part``. Opens the target first (see ``open``).
        """
        self.open()
        return [] if self._partial is None else range_headers(self._partial.state())

    def http_header(self, response: Response) -> Request | None:
        """Open the target for a real response; a failure ``Response`` ends the transfer.

        A second real response (a retried request) starts the body over.
        With ``resume=True`` the status decides what happens to the
        ``.part`` (see the class docstring); a 206 that would corrupt it
        raises ``ProtocolError``. Raises ``OSError`` naming ``path`` when the
        target cannot be opened. Returns None (no redirect).
        """
        self.response = response
        self._ended = False
        if response.status_code is None:
            self._failed = True
            self._discard()
            return None
        self._failed = False
        if self._file is not None and self.bytes_written and self._tmp_path is not None:
            self._file.seek(0)
            self._file.truncate()
        self.bytes_written = 0
        self.open()
        if self._partial is not None:
            self._resume_with(response)
        return None

    def _resume_with(self, response: Response) -> None:
        """Open the ``.part`` as the answer decides (append, restart), or give up resuming."""
        assert self._partial is not None
        assert response.status_code is not None
        if self._file is not None:
            self._file.close()
            self._file = None
        state = self._partial.state()
        try:
            decision = decide(state, response.status_code, response.headers)
        except BaseException:
            self._failed = True  # appending would corrupt the file: leave the .part alone
            raise
        self._total = decision.total
        self._owed = decision.length
        self._dropping = decision.action is Action.COMPLETE
        self.offset = state.offset if decision.action is not Action.RESTART else 0
        if decision.action is Action.KEEP:  # not the file's content: as without resume
            self._partial = None
            self._open_temporary(self._target, _stat_or_none(self._target))
        elif not self._dropping:
            try:
                self._file = self._partial.open(decision, response.headers)
            except OSError as exc:
                raise self._error(exc) from exc

    def feed(self, data: bytes) -> None:
        """Write a piece of the body to the temporary file (or the written-through target).

        Adds to ``.bytes_written``. A write error (a full disk, a closed
        FIFO) raises ``OSError`` naming ``path`` and marks the transfer
        failed, so ``close()`` will not put the file in place.
        """
        if self._failed or self._dropping:
            return
        if self._owed is not None:
            if len(data) > self._owed:
                self._reject_range(f"{self.bytes_written + len(data)} bytes or more")
            self._owed -= len(data)
        try:
            if self._file is None:
                self.open()
            self._file.write(data)
        except OSError as exc:
            self._failed = True  # disk full, a closed FIFO, ...: incomplete
            raise self._error(exc) from exc
        except BaseException:
            self._failed = True  # a bad chunk, or an interruption: incomplete
            raise
        self.bytes_written += len(data)

    def _reject_range(self, got: str) -> None:
        """A 206 body that is not its Content-Range: cut the ``.part`` back, raise."""
        assert self._partial is not None
        assert self.response is not None
        self._failed = True
        self._discard()
        self._partial.restore(self.offset)
        promised = self.response.headers.get("content-range")
        raise ProtocolError(
            f"the 206 body for Content-Range {promised!r} held {got}, not"
            f" {self.bytes_written + (self._owed or 0)}: {self._partial.part} is left as it was"
        )

    def _close_partial(self) -> None:
        """Keep the ``.part`` (flushed) unless it is now whole: then put it in place."""
        assert self._partial is not None
        self._discard()  # closes the file; a .part is never removed
        if self._ended and not self._failed and self.response is not None:
            try:
                self.complete = self._partial.finish(self._total)
            except OSError as exc:
                raise self._error(exc) from exc

    def http_error(self, exc: BaseException) -> None:
        """The transfer broke: mark it failed, so nothing is put in place.

        Closes the file; the temporary file is removed (a ``.part`` with
        ``resume=True`` is kept, to be resumed). Never raises.
        """
        self._failed = True
        self._discard()

    def http_complete(self) -> None:
        """The requester's word that the body ended complete; ``close()`` then keeps it.

        Called by the requester just before ``close()``, only after a body
        whose framing proved it complete. Raises ``ProtocolError`` (the
        ``.part`` cut back to its size before the request) when a resumed 206
        body is shorter than its Content-Range; otherwise never raises.
        """
        if self._owed and not self._failed:
            self._reject_range(f"{self.bytes_written} bytes")
        if not self._failed and self.response is not None:
            self._ended = True

    def close(self) -> None:
        """Put the file in place after ``http_complete()``, else remove the temporary file.

        Runs once (a second call does nothing). On success ``.complete``
        is true. An error renaming or closing raises ``OSError`` naming
        ``path``, after the temporary file is removed.
        """
        if self._closed:
            return
        self._closed = True
        if self._partial is not None:
            self._close_partial()
            return
        if not self._ended or self._failed or self._file is None:
            self._discard()
            return
        try:
            self._file.close()
            self._file = None
            if self._tmp_path is not None:
                os.replace(self._tmp_path, self._target)
                self._tmp_path = None
        except OSError as exc:
            self._discard()
            raise self._error(exc) from exc
        except BaseException:
            self._discard()
            raise
        self.complete = True
