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
import inspect
import logging
import math
import os
import re
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._consumer import call_optional
from ._errors import BodyTooLarge, InvalidURL, RedirectError, TooManyRedirects
from ._models import Request, Response
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
# Characters RFC 3986 never allows raw but that real servers put in Locations
# (``|`` and braces in query strings, mostly). Browsers percent-encode them;
# so do we, rather than refuse the redirect. Backslash is *not* here: browsers
# read it as ``/`` in http(s) URLs (``http:\\evil``), so a Location with one
# is ambiguous and stays an error.
_UNWISE = {c: f"%{ord(c):02X}" for c in '<>"^`{|}'}
_UNWISE_RE = re.compile('[<>"^`{|}]')


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
    of the chain). Pure: no counting, no I/O. Raises ``RedirectError`` for a
    Location that must not be followed.
    """
    if response.status_code not in REDIRECT_STATUSES:
        return None
    locations = response.headers.get_list("location")
    if not locations:
        return None  # a 3xx without Location is an ordinary response (RFC 9110 15.4)
    if len(set(locations)) > 1:
        raise RedirectError(
            f"conflicting Location fields in the {response.status_code} from "
            f"{response.url}: {locations!r}"
        )
    location = _location_text(locations[0])
    request = response.request
    try:
        base = parse_url(response.url)
        if base.fragment is None:
            # The requester may report the URL without its fragment; the
            # fragment the caller asked for is still ours to inherit.
            base_fragment = parse_url(request.url).fragment
            if base_fragment is not None:
                base = URL(base.scheme, base.host, base.port, base.target, base_fragment)
        target = resolve_location(base, _UNWISE_RE.sub(lambda m: _UNWISE[m[0]], location))
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
    """Follows redirects for the consumer it wraps, as the seed's example 7-11 does.

    On 301, 302, 303, 307 or 308 with a ``Location``, ``http_header`` returns
    the next ``Request`` and the requester issues it (same deadline, same
    consumer); any other response goes to the wrapped consumer. The wrapped
    consumer sees only the final response: ``http_header`` once, its body,
    ``close`` once. When the chain fails (``TooManyRedirects`` after more
    than ``max_redirects`` redirects, ``RedirectError`` for an unusable
    Location or an https -> http hop without ``allow_downgrade``), the wrapped
    consumer first gets ``http_header`` with a failure ``Response``
    (``status_code`` None, ``error`` set, as for a failed connection), then
    the error is raised. One instance follows one chain.

    Methods are ``async`` and await the wrapped consumer's methods when they
    are ``async`` too, so plain and async consumers both work.
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
        """Return the next ``Request`` for a redirect; hand anything else on."""
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
        """Body of the final response: straight to the wrapped consumer."""
        await _maybe_await(self.consumer.feed(data))

    async def http_error(self, exc: BaseException) -> None:
        """The exchange broke after a head: tell the wrapped consumer.

        If the wrapped consumer has not seen a response yet (the break came
        during a redirect hop), it gets the failure ``http_header`` instead,
        so it always learns about the failure in the seed's way.
        """
        if not self._delivered and self._last is not None:
            await self._fail(self._last, exc)
            return
        await call_optional(self.consumer, "http_error", exc)

    async def http_complete(self) -> None:
        """The final response's body ended complete: tell the wrapped consumer."""
        if self._delivered:
            await call_optional(self.consumer, "http_complete")

    async def close(self) -> Any:
        """Close the wrapped consumer (once); returns what its ``close`` returns."""
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

    ``max_size`` bounds the body: a larger one raises ``BodyTooLarge`` from
    ``http_header`` when ``Content-Length`` announces it, else from ``feed``
    as soon as the bound is crossed, so memory stays bounded either way.
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
        """Keep the head; refuse early a body announced as too large."""
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
        """Append a chunk; ``BodyTooLarge`` once the total passes ``max_size``."""
        self._size += len(data)
        if self.max_size is not None and self._size > self.max_size:
            where = f"{self.response.url}: " if self.response is not None else ""
            raise BodyTooLarge(f"{where}body is over the limit of {self.max_size} bytes")
        self._chunks.append(bytes(data))

    def close(self) -> None:
        """End of the body: join the chunks once."""
        self.closed = True
        self._chunks = [self.body]

    @property
    def body(self) -> bytes:
        """The body received so far (all of it after ``close``)."""
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


def _text_codec(name: str | None) -> str | None:
    """The codec's canonical name, or None for unknown and non-text codecs.

    ``codecs.lookup`` also knows bytes-to-bytes transforms (``base64``,
    ``zlib``) and str-to-str ones (``rot13``): a server must not be able to
    pick one of those as a "charset".
    """
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


class TextConsumer:
    """Decodes the body incrementally and feeds ``str`` to ``target``.

    The charset is ``encoding`` if given, else the response's
    ``Content-Type`` charset, else UTF-8; an unknown charset falls back to
    UTF-8 and undecodable bytes become U+FFFD. A character split across
    chunks decodes right (an incremental decoder keeps the partial bytes).
    ``close()`` flushes the decoder, then calls ``target.close()`` and
    returns its result. ``target`` may be any object with ``feed(str)`` and
    ``close()`` — an ``html.parser.HTMLParser``, say — plain or async; its
    optional ``http_header``/``http_error`` receive the head and errors too.
    """

    def __init__(self, target: Any, encoding: str | None = None) -> None:
        if encoding is not None and _text_codec(encoding) is None:
            raise LookupError(f"unknown text encoding: {encoding!r}")
        self.target = target
        self.requested_encoding = encoding
        self.encoding: str | None = _text_codec(encoding)
        self._decoder: codecs.IncrementalDecoder | None = None
        self._closed = False

    def _start(self, encoding: str | None) -> codecs.IncrementalDecoder:
        name = encoding or "utf-8"
        self.encoding = name
        # utf-8-sig: a leading BOM is a byte-order mark, not text (WHATWG
        # decode); it decodes everything else exactly as utf-8.
        codec = "utf-8-sig" if name == "utf-8" else name
        self._decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        return self._decoder

    async def http_header(self, response: Response) -> Request | None:
        """Pick the charset for this response, then pass the head to the target."""
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
        """Decode what can be decoded and feed it on (nothing if a character is split)."""
        decoder = self._decoder or self._start(self.encoding)
        text = decoder.decode(data)
        if text:
            await _maybe_await(self.target.feed(text))

    async def http_error(self, exc: BaseException) -> None:
        """Pass a mid-body error to the target, if it wants to know."""
        http_error = getattr(self.target, "http_error", None)
        if http_error is not None:
            await _maybe_await(http_error(exc))

    async def close(self) -> Any:
        """Flush the decoder (a truncated character becomes U+FFFD), close the target."""
        if self._closed:
            return None
        self._closed = True
        if self._decoder is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                await _maybe_await(self.target.feed(tail))
        return await _maybe_await(self.target.close())


# --------------------------------------------------------------------------
# File


def _cancelled() -> bool:
    """True when called from a Trio task whose cancel scope has been cancelled.

    A ``fetch`` cancelled from outside in the middle of a chunked or
    read-until-close body calls ``close()`` with no ``http_error`` first, and
    nothing in the body's bytes says it was cut short. The one sign left is
    that we are running inside the cancellation: Trio reports the effective
    deadline of a cancelled scope as -inf. Imported here, not at the top: the
    consumers work (and are tested) without a Trio run.
    """
    import trio

    try:
        return trio.current_effective_deadline() == -math.inf
    except RuntimeError:  # not inside trio.run()
        return False


class FileConsumer:
    """Writes the body to ``path``, atomically: all of it, or nothing new there.

    The body goes to a temporary file beside ``path`` (same directory, so the
    final ``os.replace`` is an atomic rename on one file system) and is
    renamed into place by ``close()`` only after a complete body. A failed
    transfer — a failure ``Response``, ``http_error``, a write error, a body
    shorter than its ``Content-Length``, ``close()`` without a response, or
    ``close()`` called inside a cancelled Trio scope (a cancelled fetch) —
    removes the temporary file and leaves whatever was at ``path`` untouched.
    Any complete response is written whatever its status (status codes are
    data): check ``.response.status_code``. ``.bytes_written`` counts the
    body so far (for a progress display); ``.complete`` says whether the
    file was put in place.

    Plain blocking writes, not ``trio.wrap_file``: the writes are small and
    sequential into the page cache (microseconds each), while a thread hop
    per chunk would cost more than the write; and this module stays free of
    Trio. For the same reason there is no ``fsync``: the promise is about
    failed *transfers*, not power loss.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.response: Response | None = None
        self.bytes_written = 0
        self.complete = False
        self._tmp_path: str | None = None
        self._file: Any = None
        self._failed = False
        self._closed = False

    def _open(self) -> None:
        directory, name = os.path.split(os.path.abspath(self.path))
        for _ in range(100):
            candidate = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
            try:
                # O_EXCL: never clobber; mode 0o666 so the umask applies as
                # for any new file (mkstemp's 0o600 would survive the rename).
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            self._tmp_path = candidate
            self._file = os.fdopen(fd, "wb", buffering=1 << 16)
            return
        raise FileExistsError(f"could not create a temporary file beside {self.path}")

    def _discard(self) -> None:
        """Drop the temporary file (a failed or abandoned transfer)."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # the data is being thrown away anyway
                self._file.close()
            self._file = None
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
            self._tmp_path = None

    def http_header(self, response: Response) -> Request | None:
        """Start a fresh temporary file for a real response; a failure ends the transfer."""
        self._discard()
        self.bytes_written = 0
        self.response = response
        if response.status_code is None:
            self._failed = True
        else:
            self._open()
        return None

    def feed(self, data: bytes) -> None:
        """Append a chunk to the temporary file."""
        if self._failed:
            return
        try:
            if self._file is None:
                self._open()
            self._file.write(data)
        except BaseException:
            self._failed = True  # a write error (disk full) or cancellation: incomplete
            raise
        self.bytes_written += len(data)

    def http_error(self, exc: BaseException) -> None:
        """The transfer broke: throw the partial body away."""
        self._failed = True
        self._discard()

    def close(self) -> None:
        """Put the file in place if the body is complete, else remove the temporary file."""
        if self._closed:
            return
        self._closed = True
        response = self.response
        expected = _content_length(response) if response is not None else None
        if (
            self._failed
            or _cancelled()
            or self._file is None
            or response is None
            or response.status_code is None
            or (expected is not None and expected != self.bytes_written)
        ):
            self._discard()
            return
        try:
            self._file.close()
            self._file = None
            assert self._tmp_path is not None
            os.replace(self._tmp_path, self.path)
            self._tmp_path = None
        except BaseException:
            self._discard()
            raise
        self.complete = True
