"""The connection pool: idle connections per key, the bound on open ones, expiry.

No background task: idle connections are expired lazily when the pool is
used. A ``trio.Semaphore`` holds one token per open connection (idle or
busy); closing a ``Connection`` gives its token back. The pool knows nothing
of requests or clients: a key is any hashable (the client uses the origin,
and whatever else makes two connections interchangeable, such as a proxy).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import NamedTuple

import trio

from ._transport import Transport

__all__ = ["Connection", "Pool", "PoolStats"]

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
        self.reused = False  # taken from the idle list (it served an exchange before)

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def close(self) -> None:
        """Close now (synchronous: no cancellation can skip it) and free the slot."""
        if not self.transport.closed:
            self.transport.close()
            self._pool._slots.release()


class Pool:
    """Idle connections per key (LIFO) and a bound on all open connections.

    ``max_connections`` bounds open connections; ``keepalive_expiry`` is how
    long (seconds) an idle one may wait for reuse.
    """

    def __init__(self, max_connections: int, keepalive_expiry: float) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._idle: dict[Hashable, list[Connection]] = {}
        self._slots = trio.Semaphore(max_connections)
        self._max = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.closed = False
        self._waiting = 0  # tasks blocked in acquire(): cheaper than statistics()

    def stats(self) -> PoolStats:
        idle = sum(len(v) for v in self._idle.values())
        return PoolStats(open=self._max - self._slots.value, idle=idle)

    async def checkout(
        self, key: Hashable, connect: Callable[[], Awaitable[Transport]], *, fresh: bool = False
    ) -> Connection:
        """An idle connection for ``key`` fit for reuse, or a new one from ``connect()``.

        Waits for a slot at the bound (after closing the oldest idle
        connection of another key). ``fresh``: never an idle one.
        """
        if not fresh:
            conn = self._take_idle(key)
            if conn is not None:
                return conn
        self._expire()
        if self._slots.value == 0:
            self._evict_other(key)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            transport = await connect()
        except BaseException:
            self._slots.release()
            raise
        conn = Connection(self, key, transport)
        if self.closed:
            conn.close()
            raise trio.ClosedResourceError("the pool was closed while connecting")
        return conn

    def put(self, conn: Connection) -> None:
        """Keep a connection whose exchange ended clean (or close it if nobody may keep it)."""
        if self.closed or conn.closed or self._waiting or not conn.transport.poolable:
            # Someone waits for a slot: give them ours rather than park it idle.
            conn.close()
            return
        conn.transport.ready_for_pool()
        conn.reused = False
        conn.idle_since = trio.current_time()
        self._idle.setdefault(conn.key, []).append(conn)

    def close_all(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

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
