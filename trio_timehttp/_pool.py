"""The connection pool: idle connections per key, the bound on open ones, expiry.

No background task: idle connections are expired lazily when the pool is
used. The pool counts open connections (idle and busy); closing a
``Connection`` frees its slot. Tasks that find the pool at its bound wait in
one FIFO queue, and whatever becomes free goes straight to a waiter: a clean
connection to the first waiter for its key (it is reused, not closed), a
freed slot to the first waiter of any key. A clean connection is closed to
make room only when every waiter wants another key, or when the first
waiter (for another key) has been passed over ``PASS_LIMIT`` times: a busy
origin cannot starve a quiet one. The pool knows nothing
of requests or clients: a key is any hashable (the client uses the origin,
and whatever else makes two connections interchangeable, such as a proxy).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, NamedTuple

import trio

from ._transport import Transport

__all__ = ["PASS_LIMIT", "Connection", "Pool", "PoolStats"]

# How many times a connection may go to a later waiter for its own key while
# the first waiter, for another key, keeps waiting.
PASS_LIMIT: Final = 8

log = logging.getLogger("trio_timehttp.http")


class PoolStats(NamedTuple):
    """How many connections are open (idle and busy) and how many of them are idle."""

    open: int
    idle: int


class Connection:
    """A transport the pool counts: ``close()`` frees its slot (once)."""

    __slots__ = ("_pool", "idle_since", "key", "reused", "transport")

    def __init__(self, pool: Pool, key: Hashable, transport: Transport) -> None:
        self._pool = pool
        self.key = key
        self.transport = transport
        self.idle_since = 0.0
        self.reused = False  # it served an exchange before this one

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def close(self) -> None:
        """Close now (synchronous: no cancellation can skip it) and free the slot."""
        if not self.transport.closed:
            self.transport.close()
            self._pool._free_slot()


class _Waiter:
    """A task blocked at the bound: it is handed a connection or a slot."""

    __slots__ = ("conn", "event", "key", "passed", "slot")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.event = trio.Event()
        self.conn: Connection | None = None  # a clean connection for our key
        self.slot = False  # or the right to open a new one
        self.passed = 0  # connections handed to later waiters meanwhile

    @property
    def served(self) -> bool:
        return self.conn is not None or self.slot


class Pool:
    """Idle connections per key (LIFO) and a bound on all open connections.

    ``max_connections`` bounds open connections; ``keepalive_expiry`` is how
    long (seconds) an idle one may wait for reuse.
    """

    def __init__(self, max_connections: int, keepalive_expiry: float) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._idle: dict[Hashable, list[Connection]] = {}
        self._open = 0
        self._max = max_connections
        self._waiters: deque[_Waiter] = deque()
        self.keepalive_expiry = keepalive_expiry
        self.closed = False

    def stats(self) -> PoolStats:
        idle = sum(len(v) for v in self._idle.values())
        return PoolStats(open=self._open, idle=idle)

    async def checkout(
        self, key: Hashable, connect: Callable[[], Awaitable[Transport]], *, fresh: bool = False
    ) -> Connection:
        """An idle connection for ``key`` fit for reuse, or a new one from ``connect()``.

        At the bound: closes the oldest idle connection of another key to
        make room, else waits (FIFO) for a connection of ``key`` to come back
        clean or for a slot. ``fresh``: never an idle or handed-over one.
        Raises ``trio.ClosedResourceError`` if the pool is closed meanwhile.
        """
        if not fresh:
            conn = self._take_idle(key)
            if conn is not None:
                return conn
        self._expire()
        if self._open >= self._max:
            self._evict_other(None if fresh else key)  # fresh: its own key's idle ones too
        if self._open < self._max and not self._waiters:
            self._open += 1
        else:
            conn = await self._wait(key, fresh)
            if conn is not None:
                return conn
        return await self._open_new(key, connect)

    async def _wait(self, key: Hashable, fresh: bool) -> Connection | None:
        """Queue until served: a handed-over connection, or None for a slot."""
        waiter = _Waiter(None if fresh else key)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.served:  # served and cancelled in the same tick: pass it on
                if waiter.conn is not None:
                    self.put(waiter.conn)
                else:
                    self._free_slot()
            else:
                self._waiters.remove(waiter)
            raise
        if waiter.conn is not None:
            waiter.conn.reused = True
        return waiter.conn

    async def _open_new(
        self, key: Hashable, connect: Callable[[], Awaitable[Transport]]
    ) -> Connection:
        """Connect within a slot already counted as ours; give the slot back on failure."""
        try:
            self._check_open()
            transport = await connect()
        except BaseException:
            self._free_slot()
            raise
        conn = Connection(self, key, transport)
        try:
            self._check_open()  # closed while we connected
        except trio.ClosedResourceError:
            conn.close()
            raise
        return conn

    def _check_open(self) -> None:
        if self.closed:
            raise trio.ClosedResourceError("the pool was closed")

    def put(self, conn: Connection) -> None:
        """Keep a connection whose exchange ended clean (or close it if nobody may keep it).

        It goes to the first waiter for its key if there is one (unless the
        first waiter, for another key, was passed over ``PASS_LIMIT`` times);
        it is closed (its slot going to the first waiter) if others wait for
        another key; else it is parked idle.
        """
        transport = conn.transport
        if self.closed or transport.closed or not transport.poolable:
            conn.close()
            return
        transport.ready_for_pool()
        conn.reused = False
        if not self._waiters:
            conn.idle_since = trio.current_time()
            idle = self._idle.get(conn.key)
            if idle is None:
                self._idle[conn.key] = [conn]
            else:
                idle.append(conn)
            return
        self._hand_over(conn)

    def _hand_over(self, conn: Connection) -> None:
        """``put`` while tasks wait at the bound: to a waiter, or closed for a slot."""
        first = self._waiters[0]
        for waiter in self._waiters:
            if waiter.key == conn.key:
                if first is not waiter:
                    if first.passed >= PASS_LIMIT:
                        break  # the first waiter's turn: close this one for its slot
                    first.passed += 1
                self._waiters.remove(waiter)
                waiter.conn = conn
                waiter.event.set()
                return
        conn.close()  # someone at the bound wants another key: make room

    def close_all(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _free_slot(self) -> None:
        """One connection fewer: its slot goes to the first waiter, if any."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.slot = True
            waiter.event.set()
        else:
            self._open -= 1

    def _take_idle(self, key: Hashable) -> Connection | None:
        conns = self._idle.get(key)
        if not conns:
            return None
        now = trio.current_time()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since > self.keepalive_expiry:
                # LIFO: everything below this one is older still.
                conn.close()
                for older in conns:
                    older.close()
                conns.clear()
                break
            if conn.transport.fit_for_reuse():
                conn.reused = True
                return conn
            log.debug("idle connection to %s was closed by the server or not quiet", key)
            conn.close()
        return None

    def _expire(self) -> None:
        now = trio.current_time()
        for key, conns in list(self._idle.items()):
            keep = [c for c in conns if now - c.idle_since <= self.keepalive_expiry]
            for c in conns:
                if now - c.idle_since > self.keepalive_expiry:
                    c.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def _evict_other(self, key: Hashable) -> None:
        """At the bound, make room by closing the oldest idle connection of another key."""
        oldest: Connection | None = None
        for other, conns in self._idle.items():
            if (
                other != key
                and conns
                and (oldest is None or conns[0].idle_since < oldest.idle_since)
            ):
                oldest = conns[0]
        if oldest is not None:
            self._idle[oldest.key].remove(oldest)
            oldest.close()
