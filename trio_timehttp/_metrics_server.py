"""A tiny HTTP/1.1 server for Prometheus scrapes: ``GET /metrics``, on h11 and Trio.

``serve_metrics(render, port)`` answers ``GET /metrics`` (and ``HEAD``) with
the bytes ``render()`` returns, as the Prometheus text format (version 0.0.4).
It is shared by ``trio-timehttp monitor`` and ``trio-timehttp serve
--metrics-port``; the signature is part of what both rely on.

What must stay true:

- A scrape never waits on anything but ``render()``, which is a plain (sync)
  call: the caller keeps its metrics in memory (a registry) and ``render``
  only formats them. Readings run elsewhere and never hold up a scrape.
- Every connection is one task in the server's nursery, and every request
  cycle -- from the first byte of a request head to the last byte of its
  answer, and the idle wait for the next request on a kept-alive connection --
  has a deadline (``timeout``, 10 s by default). A client that connects and sends
  nothing, or reads nothing, is dropped when it passes.
- A request head larger than ``_MAX_HEAD`` bytes is answered ``431`` and the
  connection closed; a malformed one ``400``; a method other than GET/HEAD
  ``405`` (with ``Allow``); any path but ``/metrics`` ``404``. A request with
  a body is answered, then the connection is closed (we never read bodies).
- A ``render()`` that raises is logged and answered ``500``; the server goes on.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable
from typing import NoReturn

import h11
import trio

__all__ = ["CONTENT_TYPE", "serve_metrics", "serve_metrics_listeners"]

logger = logging.getLogger("trio_timehttp.metrics")

#: The Prometheus text exposition format, as its own client libraries label it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Bound on a request head. A scraper's head is a few hundred bytes; 16 KiB
#: leaves room for long cookies a browser might send, and no more.
_MAX_HEAD = 16 * 1024

#: Bytes read per ``receive_some``.
_RECV_SIZE = 16 * 1024

_PATH = b"/metrics"


async def serve_metrics(
    render: Callable[[], bytes],
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``render()`` at ``http://host:port/metrics`` until cancelled.

    ``render`` is called once per GET or HEAD of ``/metrics`` and must return
    the whole page (UTF-8 Prometheus text); it must not block. ``port=0``
    picks a free port. ``host`` defaults to ``"127.0.0.1"`` (loopback only);
    ``"0.0.0.0"`` or ``"::"`` to be scraped from elsewhere. ``timeout``
    (seconds, default ``10.0``, Prometheus' default scrape timeout) bounds each
    request cycle on a connection and the idle wait between kept-alive
    requests; a connection past it is closed.

    Binds before starting, so a bind failure is the plain ``OSError`` (address
    in use, permission denied). ``task_status.started(listeners)`` hands back
    the list of ``trio.SocketListener`` (as ``trio.serve_tcp`` does): read the
    bound port from ``listeners[0].socket.getsockname()[1]``. Each connection
    is one task in this function's nursery; cancelling the call closes every
    listener and connection.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    await serve_metrics_listeners(render, listeners, timeout=timeout, task_status=task_status)


async def serve_metrics_listeners(
    render: Callable[[], bytes],
    listeners: list[trio.SocketListener],
    *,
    timeout: float = 10.0,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``serve_metrics`` on listeners already bound (the caller binds before its nursery).

    Takes ownership of ``listeners``: they are closed when this returns.
    """
    for listener in listeners:
        logger.info("metrics at http://%s/metrics", _address(listener))
    handler = _Handler(render, timeout)
    await trio.serve_listeners(handler.connection, listeners, task_status=task_status)
    raise AssertionError("trio.serve_listeners returned")  # pragma: no cover


def _address(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Handler:
    """Answers the requests on one connection at a time (one instance per server)."""

    def __init__(self, render: Callable[[], bytes], timeout: float) -> None:
        self._render = render
        self._timeout = timeout

    async def connection(self, stream: trio.SocketStream) -> None:
        """One connection: request cycles until the client or a deadline ends it; then close."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        try:
            while True:
                with trio.move_on_after(self._timeout) as scope:
                    keep = await self._cycle(stream, conn)
                if scope.cancelled_caught or not keep:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("metrics connection broke: %s", exc)
        finally:
            await trio.aclose_forcefully(stream)

    async def _cycle(self, stream: trio.SocketStream, conn: h11.Connection) -> bool:
        """Read one request and answer it; True when the connection may serve another."""
        try:
            request = await _next_request(stream, conn)
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                await _send(stream, conn, _plain(status, f"bad request: {exc}\n"), head=False)
            return False
        if request is None:
            return False
        response = self._answer(request)
        has_body = any(
            name in (b"content-length", b"transfer-encoding") and value != b"0"
            for name, value in request.headers
        )
        if not has_body:
            # A bodiless request's EndOfMessage is already parsed: take it, so
            # that the client's side is DONE and the connection can be reused.
            conn.next_event()
        else:
            # We never read request bodies: answer, then close.
            response = _with_close(response)
        await _send(stream, conn, response, head=request.method == b"HEAD")
        if has_body or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True

    def _answer(self, request: h11.Request) -> _Reply:
        if request.method not in (b"GET", b"HEAD"):
            reply = _plain(405, "only GET and HEAD\n")
            return _Reply(reply.status, [*reply.headers, (b"allow", b"GET, HEAD")], reply.body)
        path = request.target.split(b"?", 1)[0]
        if path != _PATH:
            return _plain(404, "not found: try /metrics\n")
        try:
            body = self._render()
        except Exception:
            logger.exception("rendering metrics failed")
            return _plain(500, "rendering metrics failed\n")
        return _Reply(200, [(b"content-type", CONTENT_TYPE.encode())], body)


class _Reply:
    """A whole response: status, headers (without Content-Length) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _plain(status: int, text: str) -> _Reply:
    return _Reply(status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode())


def _with_close(reply: _Reply) -> _Reply:
    return _Reply(reply.status, [*reply.headers, (b"connection", b"close")], reply.body)


async def _next_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    """The next request head, or None when the client closed between requests.

    Raises ``h11.RemoteProtocolError`` (status hint 431) when more than
    ``_MAX_HEAD`` bytes arrive without completing a head: h11's own bound only
    covers a head still incomplete in its buffer, not one that arrives whole.
    """
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_RECV_SIZE)
            received += len(data)
            if received > _MAX_HEAD:
                raise h11.RemoteProtocolError("request head too large", 431)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        # ConnectionClosed (the client hung up) or PAUSED (cannot happen in IDLE).
        return None


async def _send(
    stream: trio.SocketStream, conn: h11.Connection, reply: _Reply, head: bool
) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    reason = http.HTTPStatus(reply.status).phrase.encode()
    data = conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason)) or b""
    if not head and reply.body:
        data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
