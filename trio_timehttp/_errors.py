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
    """Base of everything the library raises."""


class ConnectError(TimeHTTPError, OSError):
    """The peer is unreachable: DNS failure, refused, unreachable, TLS handshake."""


class ProxyError(ConnectError):
    """The proxy failed: unreachable, wants authentication (407), or refused the CONNECT.

    The message names the proxy as ``http://host:port``, never its credentials.
    """


class Timeout(TimeHTTPError, TimeoutError):
    """The deadline passed (connect, read, or the whole exchange)."""


class TimeProtocolError(TimeHTTPError, ValueError):
    """A bad RFC 868 reply (fewer than 4 bytes, ...)."""


class HTTPError(TimeHTTPError):
    """Base of the HTTP requester's errors."""


class InvalidURL(HTTPError, ValueError):
    """The caller's URL is unusable (scheme, host, port, characters)."""


class ProtocolError(HTTPError):
    """Malformed, truncated or oversized response, or the exchange broke mid-way."""


class BodyTooLarge(HTTPError):
    """A body over a consumer's or client's size bound."""


class TooManyRedirects(HTTPError):
    """A redirect chain longer than allowed (or a loop)."""


class RedirectError(HTTPError):
    """An unusable Location: bad URL, scheme not allowed, or https -> http."""
