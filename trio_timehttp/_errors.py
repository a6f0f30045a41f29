"""The exception tree: every error the library raises is a ``TimeHTTPError``.

Errors are split by who is at fault, as h11 does: the peer (``ConnectError``,
``Timeout``, ``TimeProtocolError``, ``ProtocolError``) or the caller
(``InvalidURL``). Each also subclasses the closest built-in, so code that
already catches ``OSError``, ``TimeoutError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "HTTPError",
    "InvalidURL",
    "ProtocolError",
    "ProxyError",
    "RedirectError",
    "TimeHTTPError",
    "TimeProtocolError",
    "Timeout",
    "TooManyRedirects",
]


class TimeHTTPError(Exception):
    """Base of every error the library raises: catch it to catch them all.

    Client calls never let a bare ``OSError``, ``KeyError``, ``IndexError``
    or h11 error escape: they wrap it (``raise ... from exc``) in a subclass
    whose message names the host, and the URL for HTTP. Two things are not
    wrapped: an exception raised by your own consumer, which propagates
    unchanged, and a server's bind error (address in use, no permission for
    port 37), which is the plain ``OSError``. Never an ``ExceptionGroup``.
    """


class ConnectError(TimeHTTPError, OSError):
    """The server could not be reached: DNS failure, refused, unreachable, TLS handshake.

    Also an ``OSError``, so code that already catches ``OSError`` keeps
    working; the message names the host, and the underlying error is kept
    as its ``__cause__``. A failed TLS handshake or certificate check is one
    too. Nothing of the request reached the server, so ``Client(retries=N)``
    may retry it.
    """


class ProxyError(ConnectError):
    """The proxy failed: unreachable, wants authentication (407), or refused the CONNECT.

    A ``ConnectError`` (and so an ``OSError``): the request never reached
    the origin server. The message names the proxy as ``http://host:port``,
    never its credentials. A proxy's refusal (407, or a 403 to CONNECT) is
    not retried by ``retries``; an unreachable proxy is.
    """


class Timeout(TimeHTTPError, TimeoutError):
    """The deadline passed: while connecting, reading, or over the whole exchange.

    Also a ``TimeoutError``. Raised when the call's own ``timeout`` runs out;
    a cancel scope of yours that expires cancels the call instead (Trio's
    ``Cancelled``, handled by that scope), and is not turned into this.
    """


class TimeProtocolError(TimeHTTPError, ValueError):
    """A bad RFC 868 reply: the server sent fewer than 4 bytes.

    Also a ``ValueError``; ``decode_time`` raises it for input that is not
    exactly 4 bytes long. From ``query_time``, the message names the server.
    """


class HTTPError(TimeHTTPError):
    """Base of the HTTP requester's errors (``fetch``, ``Client``, ``query_http_time``).

    Raised as itself only for misuse that is not about the URL: a request on
    a ``Client`` that is already closed, or a request that cannot be encoded.
    Everything else is one of its subclasses (or ``ConnectError`` /
    ``Timeout``, which are not HTTP-specific).
    """


class InvalidURL(HTTPError, ValueError):
    """The caller's URL is unusable: scheme, host, port or characters.

    Also a ``ValueError``: a mistake in the call, found before any I/O (also
    an unusable ``proxy`` URL, raised by ``Client()``). ``fetch`` still
    calls the consumer's ``close()`` once before raising it.
    """


class ProtocolError(HTTPError):
    """The response is malformed, truncated or oversized, or the exchange broke mid-way.

    Examples: a status line h11 cannot parse, a connection closed before
    ``Content-Length`` bytes arrived, a head over the ``Client``'s caps, or
    a ``Date`` that ``query_http_time`` cannot use. Raised after the consumer
    got ``http_error(exc)`` (if it had a response) and ``close()``.
    """


class BodyTooLarge(HTTPError):
    """A body went over a size bound: ``BytesConsumer(max_size=...)`` or decoding's.

    Raised as soon as the bound is known to be crossed (from the announced
    ``Content-Length`` when there is one), so memory stays bounded; with
    ``decode=True``, ``max_decoded_size`` and ``max_decode_ratio`` stop a
    decompression bomb with it.
    """


class TooManyRedirects(HTTPError):
    """A redirect chain longer than ``max_redirects`` (a loop ends here too).

    Raised by ``RedirectingConsumer`` (and ``Client.stream`` with
    ``follow_redirects=True``) on the redirect after the last one allowed:
    with ``max_redirects=0``, on the first.
    """


class RedirectError(HTTPError):
    """A redirect cannot be followed: bad Location, scheme not allowed, https to http.

    The Location has control characters, spaces, an unusable host or port,
    or a scheme other than http and https; or it leads from https to http
    without ``allow_downgrade=True``; or a 307/308 would resend a request
    body that was an iterator or stream and cannot be sent again.
    """
