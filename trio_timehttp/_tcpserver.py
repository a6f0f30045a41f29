"""The TCP side of the time service: accept loops and the task each connection gets.

Speed (issue 6) comes from doing per connection only what must be done: the
accept loop drains the kernel's accept queue with non-blocking ``accept()``
calls per wake-up instead of one epoll round per connection, and the task
each connection gets is a non-blocking 4-byte ``send`` and a ``close`` -- no
``SocketStream``, no cancel scope, no await unless the send would block.

What must stay true: at most ``max_connections`` answers are in flight
(`_Slots`); a source outside ``allow`` is closed at once, unanswered, and
never gets a task; every accepted descriptor is closed exactly once.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ._access import AllowList
from ._binding import format_address, names
from ._fastsock import Wrap, accept_call, fd_wrapper
from ._rfc868 import encode_time
from ._serverstats import BoundedLog, ServerStats

__all__ = ["TCPService"]

logger = logging.getLogger("trio_timehttp.server")

Clock = Callable[[], float]

#: Accepts handled before a checkpoint: a flood must not starve the other
#: tasks of the event loop.
_BATCH = 64

#: How long a connection's 4 bytes may wait for send-buffer space (they
#: essentially never do) before the connection is dropped.
_SEND_TIMEOUT = 10.0

#: Out of file descriptors or kernel memory: accept() keeps failing while the
#: connection sits in the backlog, so pause instead of spinning on it.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RESOURCE_BACKOFF = 0.1
#: At most one ERROR line per this many seconds about resource exhaustion.
_RESOURCE_LOG_INTERVAL = 5.0

_SEND_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)

#: A TCP answer is sent with MSG_MORE (the kernel holds the 4 bytes) and the
#: connection is then shut down for writing, which sends the bytes and the
#: FIN in one segment instead of two: one packet less for both ends to
#: process, the client's one ACK covers both (measured in bench/README.md).
_ANSWER_FLAGS = _SEND_FLAGS | getattr(socket, "MSG_MORE", 0)

#: Trio names every task; given a string, ``start_soon`` skips building
#: ``f"{fn.__module__}.{fn.__qualname__}"`` for each connection.
_TASK_NAME = "trio_timehttp.answer_connection"


class _Slots:
    """Counts connections being answered; the accept loops wait while at the bound.

    A plain counter plus a one-shot Event (recreated each time) is all a
    bound needs in Trio's single thread, and cheaper than a semaphore's
    per-acquire bookkeeping on the per-connection path.
    """

    __slots__ = ("_freed", "active", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = math.inf if limit is None else limit
        self.active = 0
        self._freed: trio.Event | None = None

    async def wait_free(self) -> None:
        while self.active >= self.limit:
            if self._freed is None:
                self._freed = trio.Event()
            await self._freed.wait()

    def release(self) -> None:
        self.active -= 1
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.set()


def check_max_connections(max_connections: int | None) -> None:
    """``ValueError`` unless ``max_connections`` is ``None`` or a whole number >= 1."""
    if max_connections is None:
        return
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise TypeError(f"max_connections must be an int or None, not {max_connections!r}")
    if max_connections < 1:
        raise ValueError(
            f"max_connections must be at least 1 (None: no bound), not {max_connections}"
            " -- 0 would serve nobody"
        )


#: The per-connection task: answers ``conn`` (what ``ConnectionCalls.wrap``
#: made), then closes it and releases its slot.
Answer = Callable[[Any, "TCPService"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConnectionCalls:
    """How the accept loop takes a connection and what answers it.

    ``fast`` (default ``True``): CPython's C ``accept`` and socket type
    (``_fastsock``), else the public route. ``wrap`` (default: the one
    ``fast`` picks): makes a socket object of an accepted descriptor.
    ``answer`` (default: 4 bytes of time, then close): the task each
    connection gets. Tests pass their own to watch the loop.
    """

    fast: bool = True
    wrap: Wrap | None = None
    answer: Answer | None = None


class TCPService:
    """What every accept loop and connection task of one TCP server shares.

    ``calls`` (default ``ConnectionCalls()``): how connections are accepted
    and answered.
    """

    __slots__ = ("allow", "calls", "clock", "denied_log", "errors", "slots", "stats")

    def __init__(
        self,
        clock: Clock,
        max_connections: int | None,
        allow: AllowList | None,
        stats: ServerStats,
        calls: ConnectionCalls | None = None,
    ) -> None:
        check_max_connections(max_connections)
        self.calls = calls or ConnectionCalls()
        self.clock = clock
        self.slots = _Slots(max_connections)
        self.allow = allow
        self.stats = stats
        stats.watch_connections(self.slots)
        self.errors = BoundedLog(logger, logging.ERROR, _RESOURCE_LOG_INTERVAL)
        self.denied_log = BoundedLog(logger, logging.WARNING)

    async def run(self, socks: list[socket.socket]) -> None:
        """Accept on every socket until cancelled; close them all on the way out."""
        where = names(socks)  # now: a closed socket has no name to log
        try:
            async with trio.open_nursery() as nursery:
                for sock in socks:
                    nursery.start_soon(accept_loop, sock, nursery, self)
        finally:
            for sock in socks:
                sock.close()
            logger.info("time service stopped on tcp %s", where)


async def answer_connection(conn: Any, service: TCPService) -> None:
    """The task every TCP connection gets: 4 bytes, then close.

    ``conn`` is what ``ConnectionCalls.wrap`` made: anything with
    ``send``, ``shutdown``, ``close`` and a ``fileno``.
    """
    try:
        data = encode_time(service.clock())
        try:
            conn.send(data, _ANSWER_FLAGS)
        except BlockingIOError:
            # Cannot happen with an empty send buffer and 4 bytes, but a
            # server must not assume: wait a bounded time for room, then drop.
            with trio.move_on_after(_SEND_TIMEOUT):
                await trio.lowlevel.wait_writable(conn)
                conn.send(data, _ANSWER_FLAGS)
        service.stats.tcp_answers += 1
    except OSError as exc:
        # The client reset or vanished before its answer: its business.
        service.stats.send_errors += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection dropped before the answer: %s", exc)
    finally:
        # shutdown, not just close: it pushes the bytes held by MSG_MORE out
        # with the FIN. close() alone would too -- unless the client sent
        # something we never read: then close() answers with a reset and
        # discards the unsent answer, where shutdown() has already sent it.
        # (try/except, not contextlib.suppress: no context manager object
        # built per connection.)
        try:  # noqa: SIM105
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset by the client: nothing to flush
        conn.close()
        service.slots.release()


def _refuse(fd: int, addr: Any, service: TCPService) -> None:
    """A source outside ``allow``: close at once, no answer; counted, logged at a bounded rate."""
    os.close(fd)
    service.stats.denied += 1
    service.denied_log("denied tcp connection from %s (not in --allow)", format_address(addr))


async def accept_loop(sock: socket.socket, nursery: trio.Nursery, service: TCPService) -> None:
    """Accept connections on one listening socket until cancelled or the socket is closed."""
    # Per connection: one C call to accept and one to wrap the descriptor
    # (``_fastsock``); the family/type/proto of an accepted socket are the
    # listener's.
    calls = service.calls
    accept = accept_call(sock, fast=calls.fast)
    wrap = calls.wrap or fd_wrapper(fast=calls.fast)
    family, kind, proto = int(sock.family), int(sock.type), sock.proto
    start_soon = nursery.start_soon
    where = names([sock])
    answer = calls.answer or answer_connection
    slots, allow, stats = service.slots, service.allow, service.stats
    checkpoint = trio.lowlevel.checkpoint
    wait_readable = trio.lowlevel.wait_readable
    debug = logger.isEnabledFor(logging.DEBUG)
    while True:
        if slots.active >= slots.limit:
            await slots.wait_free()
        accepted = 0
        while accepted < _BATCH and slots.active < slots.limit:
            try:
                fd, addr = accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return  # the listener was closed under us
                stats.accept_errors += 1
                if exc.errno in _RESOURCE_ERRNOS:
                    service.errors(
                        "accept on %s failed: %s; pausing %.1f s, serving on",
                        where,
                        exc,
                        _RESOURCE_BACKOFF,
                    )
                    await trio.sleep(_RESOURCE_BACKOFF)
                    break
                # ECONNABORTED, EPROTO, EPERM (firewall), ...: that one
                # connection is lost, the listener is fine.
                if debug:
                    logger.debug("accept on %s: %s", where, exc)
                continue
            accepted += 1
            if allow is not None and not allow.allows(addr[0]):
                _refuse(fd, addr, service)
                continue
            try:
                conn = wrap(family, kind, proto, fd)
            except OSError:  # pragma: no cover - fd is fresh from accept()
                os.close(fd)
                raise
            if debug:
                logger.debug("tcp connection from %s", format_address(addr))
            slots.active += 1
            start_soon(answer, conn, service, name=_TASK_NAME)
        try:
            if accepted == _BATCH:
                # More may be queued: let the answers and others run, then
                # drain on without an epoll round.
                await checkpoint()
            else:
                await wait_readable(sock)
        except trio.ClosedResourceError:
            return  # the SocketListener we handed out was closed
