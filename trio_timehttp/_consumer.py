"""The consumer protocol, and calling a consumer's optional methods (pure).

A consumer is what the requester streams a response into, as in the seed's
asyncore requester: ``feed(chunk)`` for each piece of the body and
``close()`` once at the end are required; ``http_header(response)`` (may
return the next ``Request``), ``http_error(exc)`` and ``http_complete()``
are optional. Any of them may be a plain method or an ``async def``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

__all__ = ["OPTIONAL_METHODS", "Consumer", "call_optional", "maybe_await"]

_T = TypeVar("_T")

#: The optional consumer methods, in the order a requester may call them.
OPTIONAL_METHODS = ("http_header", "http_error", "http_complete")


class Consumer(Protocol):
    """What ``fetch`` streams a response into (a ``typing.Protocol``: no base class needed).

    Required: ``feed(data: bytes)`` for each body piece and ``close()``, called
    exactly once. Optional (looked up by name, skipped when absent):
    ``http_header(response)`` once the head is parsed (it may return the next
    ``Request`` to follow instead), ``http_error(exc)`` when the exchange broke
    after a head, and ``http_complete()`` just before ``close()``, only after
    a body whose framing proved it complete: its Content-Length reached, the
    last chunk of a chunked body, no body by definition (HEAD, 204, 304), or
    -- for a body read until the close -- the close itself, which over TLS
    must be a close_notify (a bare TCP FIN there is a ``ProtocolError``, RFC
    9112 section 9.8). Over plain TCP such a close *is* that framing's end
    (as curl takes it): it cannot tell a complete body from one cut by a
    dropped connection, so a caller that must know should want a
    Content-Length or chunked response (or TLS). Each may be a plain method
    or an ``async def``; an awaitable it returns is awaited before more of
    the body is read (that is the backpressure). Whatever a consumer method
    raises propagates out of ``fetch`` unchanged (``close()`` is still
    called once). Parsers with ``feed(bytes)`` and ``close()``, such as
    ``xml.etree.ElementTree.XMLParser``, are consumers as they are.
    """

    def feed(self, data: bytes, /) -> object:
        """Take the next piece of the body, as ``bytes``.

        Called zero or more times, in order, after ``http_header`` and
        before ``close()``; decoded first when decoding is on.
        """
        ...

    def close(self) -> object:
        """The response is over: called exactly once, also after a failure.

        Called after the last ``feed`` (and ``http_complete()``, when the
        body proved complete), or after the failure was reported; also past
        the deadline. Release what the consumer holds here.
        """
        ...


async def maybe_await(result: _T | Awaitable[_T]) -> _T:
    """Await ``result`` if a consumer method was an ``async def``; plain values pass."""
    if inspect.isawaitable(result):
        return await result
    return result


async def call_optional(consumer: object, name: str, *args: Any) -> Any:
    """Call ``consumer.<name>(*args)`` if it has that optional method; await it if async.

    Returns what the method returns, or None when there is no such method.
    The one place a wrapper forwards an optional method to what it wraps.
    """
    method = getattr(consumer, name, None)
    if method is None:
        return None
    return await maybe_await(method(*args))
