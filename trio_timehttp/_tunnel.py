"""The CONNECT step: open a tunnel through an HTTP proxy on a connected transport.

The transport's ``tunnel`` hook runs this on the plain TCP connection to the
proxy, before TLS to the origin starts inside it. What the bytes mean is
decided by the pure `_proxy.ConnectReply`; this module only moves them and
names the failures.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Final, Protocol, TypeVar

import trio

from ._errors import ProtocolError, ProxyError
from ._headreader import HeadLimits
from ._proxy import ConnectReply, Proxy, connect_request
from ._urls import URL

__all__ = ["Wire", "open_tunnel"]

log = logging.getLogger("trio_timehttp.proxy")

T = TypeVar("T")

# What a broken connection raises (ssl.SSLError is an OSError).
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Wire(Protocol):
    """What the tunnel step needs of a transport: send everything, receive some."""

    async def send_all(self, data: bytes) -> None: ...

    async def recv(self, max_bytes: int, need: int = 0) -> bytes: ...


async def _io(call: Awaitable[T], proxy: Proxy, target: str) -> T:
    """Await one I/O call; a broken connection becomes ``ProxyError``.

    Only the I/O is wrapped: ``ProxyError`` is itself an ``OSError``.
    """
    try:
        return await call
    except _BROKEN as exc:
        raise ProxyError(
            f"proxy {proxy} broke the connection during CONNECT {target}: {exc}"
        ) from exc


async def open_tunnel(wire: Wire, url: URL, proxy: Proxy, limits: HeadLimits) -> None:
    """Send ``CONNECT url.host:url.port`` on ``wire`` and read the proxy's answer.

    Returns once the proxy answered 2xx with nothing after its head (the TLS
    client speaks first, so a proper proxy sends nothing more). Raises
    ``ProxyError`` when the proxy refuses (407, any other non-2xx), closes or
    breaks the connection before answering; ``ProtocolError`` for a malformed
    or oversized answer, a 2xx that announces a body, or bytes after the head.
    Messages show the proxy as ``http://host:port``, never its credentials.
    ``limits`` are the client's caps on a response head: a hostile proxy gets
    the same as a hostile origin. Closing ``wire`` on failure is the caller's
    job. The caller's deadline applies (this adds none).
    """
    host = f"[{url.host}]" if ":" in url.host else url.host
    target = f"{host}:{url.port}"
    reply = ConnectReply(
        proxy,
        target,
        max_header_bytes=limits.max_bytes,
        max_header_fields=limits.max_fields,
        max_informational=limits.max_informational,
    )
    await _io(wire.send_all(connect_request(url, proxy)), proxy, target)
    while True:
        data = await _io(wire.recv(65536, 0), proxy, target)
        if not data:
            raise ProxyError(
                f"proxy {proxy} closed the connection before answering CONNECT {target}"
            )
        rest = reply.feed(data)
        if rest is not None:
            break
    if rest:
        raise ProtocolError(
            f"proxy {proxy} sent {len(rest)} bytes after its reply to CONNECT {target}, "
            "before TLS began"
        )
    log.debug("tunnel to %s open through %s", target, proxy)
