"""``Request`` and ``Response``: what the requester sends and what it reports (pure)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import IO, Protocol, TypeAlias

from ._headers import Headers, HeadersLike

__all__ = ["Content", "Request", "Response"]

#: What a request body may be (see ``_bodies.request_body`` for how each is sent).
Content: TypeAlias = bytes | Iterable[bytes] | AsyncIterable[bytes] | IO[bytes]


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """One HTTP request: method, absolute URL, extra header fields, optional body.

    Frozen: build a new one to change it. A consumer's ``http_header`` returns
    one to have the requester send it next (that is how redirects are
    followed), and ``response.request`` is the one that produced a response.

    ``method`` is upper-cased (``"get"`` becomes ``"GET"``). ``url``: an
    absolute ``http://`` or ``https://`` URL, checked when the request is
    sent (``InvalidURL`` then, not here). ``headers`` (default ``None``: no
    extra fields): a mapping or a list of ``(name, value)`` pairs, kept as a
    ``Headers``; ``Host``, ``Content-Length`` / ``Transfer-Encoding`` and the
    defaults (``User-Agent``, and ``Accept-Encoding`` when decoding) are added
    on the wire by the requester, so a redirect never carries a stale
    ``Host``. ``body`` (default ``None``: no body): ``bytes`` (a
    ``bytearray`` or ``memoryview`` is copied to ``bytes``), an iterable or
    async iterable of ``bytes``, or a binary file; anything else is kept as
    given and refused (``TypeError``) when the request is sent.
    """

    method: str
    url: str
    headers: Headers
    body: Content | None

    def __init__(
        self,
        method: str,
        url: str,
        headers: HeadersLike | None = None,
        body: Content | None = None,
    ) -> None:
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "headers", Headers(headers))
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        object.__setattr__(self, "body", body)


class _Body(Protocol):
    """Where a pulled response's body comes from (the requester's ``BodyStream``)."""

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


@dataclass(slots=True, eq=False)
class Response:
    """The status line and headers of a response (the body goes to the consumer).

    ``url``: the URL this response came from (the final one after
    redirects). ``request``: the ``Request`` that produced it.
    ``status_code``: e.g. ``200``; ``None`` for a failure. ``reason``: the
    reason phrase (``"OK"``; may be empty). ``http_version``: ``"1.1"`` or
    ``"1.0"``. ``headers``: the fields as the server sent them (a
    ``Headers``; with decoding on, still the encoded body's). ``history``:
    earlier responses of a redirect chain, oldest first (``[]`` without
    redirects). ``error``: the exception for a failure, else None.

    A failure before any response arrived (refused, DNS, TLS, timeout, or a
    redirect chain that could not go on) reaches the consumer's
    ``http_header`` as a ``Response`` with ``status_code`` None and
    ``error`` set, just before ``fetch`` raises that error. Nothing to close:
    the connection belongs to the requester (for ``Client.stream``, to the
    ``async with`` block).
    """

    url: str
    request: Request
    status_code: int | None = None
    reason: str = ""
    http_version: str = "1.1"
    headers: Headers = field(default_factory=Headers)
    history: list[Response] = field(default_factory=list)
    error: BaseException | None = None
    # Set only on a response from ``Client.stream`` (the body still to read).
    _body: _Body | None = field(default=None, repr=False)
    # The request head bytes sent for this response, exactly as on the wire
    # (``get -v`` shows them); None for a failure, where none was answered.
    _sent_head: bytes | None = field(default=None, repr=False)

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, piece by piece: ``async for piece in response.aiter_bytes()``.

        ``Client.stream`` responses only, and once. Raises ``RuntimeError``
        for a response whose body went to a consumer, or when the body is read
        a second time; ``ProtocolError``/``Timeout`` as ``fetch`` would. (A
        plain iterator object, not an async generator: leaving the loop early
        leaves nothing to finalise.)
        """
        if self._body is None:
            raise RuntimeError("this response's body is not streamed (use Client.stream)")
        return self._body.aiter_bytes()

    async def aread(self) -> bytes:
        """Read and return the whole body as ``bytes``.

        ``Client.stream`` responses only, and once, inside the ``async with``
        block; raises what ``aiter_bytes`` raises. Memory grows with the
        body: for a large one, iterate with ``aiter_bytes`` instead.
        """
        return b"".join([piece async for piece in self.aiter_bytes()])

    def __repr__(self) -> str:
        if self.status_code is None:
            return f"<Response [failed: {self.error!r}] {self.url}>"
        return f"<Response [{self.status_code} {self.reason}] {self.url}>"
