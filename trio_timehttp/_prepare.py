"""Preparing a request for the wire: the head bytes, the body source, what the exchange needs.

h11 serialises the request head (it validates every field); the bytes it
makes are a pure function of the request, so a ``Preparer`` caches them per
request shape (parsing the URL and validating the fields costs about 15 us;
a client repeating requests pays it once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import h11

from ._errors import HTTPError
from ._headers import Headers
from ._models import Request
from ._urls import URL, parse_url
from ._version import __version__

__all__ = [
    "IDEMPOTENT",
    "USER_AGENT",
    "BodySource",
    "BytesBody",
    "Prepared",
    "Preparer",
    "request_closes",
]

USER_AGENT: Final = f"trio-timehttp/{__version__}"
# RFC 9110 section 9.2.2: methods whose repetition has the same effect; only
# these are retried after a reused connection turned out to be dead.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Methods that carry content by definition: send "Content-Length: 0" without a
# body (RFC 9110 section 8.6: a user agent SHOULD send it for POST, PUT...).
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
# Framing fields the requester owns on the wire (a caller's are replaced).
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
# Entries in a Preparer's cache, cleared when full.
_CACHE: Final = 256


class BodySource(Protocol):
    """A request body as the exchange sends it, after the head.

    ``length``: the Content-Length to announce (None: unknown, the head says
    ``Transfer-Encoding: chunked`` and ``write`` frames the chunks).
    ``replayable``: whether ``write`` can run again (a retry, a 307/308).
    ``write(send)``: send the body with ``send`` (backpressure: it returns
    when the bytes are handed to the kernel).
    """

    @property
    def length(self) -> int | None: ...

    @property
    def replayable(self) -> bool: ...

    async def write(self, send: Callable[[bytes], Awaitable[None]]) -> None: ...


class BytesBody:
    """A body given as ``bytes``: known length, replayable."""

    __slots__ = ("data",)

    replayable = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def length(self) -> int:
        return len(self.data)

    async def write(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        if self.data:
            await send(self.data)


@dataclass(slots=True)
class Prepared:
    """One hop's request, ready for the wire.

    ``head``: the request head bytes; ``body``: what follows (None: nothing);
    ``closes``: the request itself asks to close the connection.
    """

    request: Request
    url: URL
    head: bytes
    body: BodySource | None
    closes: bool

    @property
    def idempotent(self) -> bool:
        return self.request.method in IDEMPOTENT

    @property
    def retryable(self) -> bool:
        """Whether sending it again on a fresh connection is safe and possible."""
        body = self.body
        return self.request.method in IDEMPOTENT and (body is None or body.replayable)


def request_closes(headers: Headers) -> bool:
    """Whether the request's Connection field lists ``close`` (RFC 9112 section 9.6)."""
    value = headers.get("connection") or ""
    return any(t.strip(" \t").lower() == "close" for t in value.split(","))


class Preparer:
    """Makes ``Prepared`` requests, caching the head bytes per request shape."""

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], tuple[URL, bytes, bool]] = {}

    def prepare(
        self, request: Request, target: str | None = None, body: BodySource | None = None
    ) -> Prepared:
        """Prepare ``request``; ``target`` is the request-target to send (default:
        the URL's origin-form path and query; a forward proxy wants the absolute URL).
        ``body``: what to send after the head (the caller makes it from
        ``request.body`` once per fetch, so a redirect or retry sends the same
        source again; None: nothing, or a ``bytes`` body made here).

        Raises ``InvalidURL`` or ``HTTPError`` (a field h11 refuses).
        """
        if body is None and isinstance(request.body, bytes):
            body = BytesBody(request.body)
        length = None if body is None else body.length
        key = (request.method, request.url, request.headers, target, body is None, length)
        hit = self._cache.get(key)
        if hit is None:
            url = parse_url(request.url)
            head = _head_bytes(request, url, target or url.target, body)
            hit = (url, head, request_closes(request.headers))
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            self._cache[key] = hit
        url, head, closes = hit
        return Prepared(request, url, head, body, closes)


def _head_bytes(request: Request, url: URL, target: str, body: BodySource | None) -> bytes:
    """The request head: the caller's fields plus ours, serialised by h11.

    ``Host`` comes from the URL (RFC 9112 section 3.2: "A client MUST send a
    Host header field in all HTTP/1.1 request messages") unless the request
    carries its own (virtual-host testing; a redirect policy recomputes it);
    caller-supplied Content-Length/Transfer-Encoding are replaced by ours.
    """
    given = request.headers
    host = given.get_list("host")
    fields: list[tuple[str, str]] = [("host", host[-1] if host else url.authority)]
    fields += [(n, v) for n, v in given.items() if n not in _FRAMING and n != "host"]
    if "user-agent" not in given:
        fields.append(("user-agent", USER_AGENT))
    if "accept-encoding" not in given:
        # We decode no content codings: ask for the representation as is.
        fields.append(("accept-encoding", "identity"))
    if body is not None:
        length = body.length
        if length is None:
            fields.append(("transfer-encoding", "chunked"))
        else:
            fields.append(("content-length", str(length)))
    elif request.method in _BODY_METHODS:
        fields.append(("content-length", "0"))
    try:
        event = h11.Request(
            method=request.method.encode("ascii"),
            target=target.encode("ascii"),
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields],
        )
        wire = h11.Connection(h11.CLIENT).send(event)
    except (h11.LocalProtocolError, UnicodeError) as exc:
        raise HTTPError(f"invalid request for {request.url}: {exc}") from exc
    if wire is None:  # pragma: no cover - h11 always returns bytes for a Request
        raise HTTPError(f"invalid request for {request.url}")
    return wire
