"""The RFC 868 time service on Trio: TCP and UDP servers.

Shape: every serve function binds its sockets *before* opening a nursery (so a
bind error is the plain ``OSError``), reports them through ``task_status``,
then runs one loop per socket under a nursery it owns.

Speed (issue 6) comes from doing per connection only what must be done: the
accept loop drains the kernel's accept queue with non-blocking ``accept()``
calls per wake-up instead of one epoll round per connection, and the task
each connection gets is a non-blocking 4-byte ``send`` and a ``close`` -- no
``SocketStream``, no cancel scope, no await unless the send would block.
The UDP loop likewise answers datagrams in batches until the socket would
block.
"""

from __future__ import annotations

import _socket
import errno
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from ._rfc868 import encode_time

__all__ = ["serve_time", "serve_time_tcp", "serve_time_udp"]

logger = logging.getLogger("trio_timehttp.server")

Clock = Callable[[], float]

#: Listen backlog: connections beyond ``max_connections`` wait here, so make
#: it large (the kernel caps it at net.core.somaxconn anyway).
_BACKLOG = max(4096, socket.SOMAXCONN)

#: Accepts (or datagrams) handled before a checkpoint: a flood must not
#: starve the other tasks of the event loop.
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

#: A datagram longer than RFC 868 could mean; reading one byte past it is how
#: an oversized one is detected.
_MAX_REQUEST = 512
_RECV_SIZE = _MAX_REQUEST + 1

#: In lean mode (see `_udp_loop`) one wake-up in this many drains the socket
#: again, to notice when datagrams start arriving faster than one per wake-up.
_PROBE_EVERY = 8

#: Bound on the rate limiter's table: a flood with spoofed sources must not
#: grow memory without limit.
_MAX_BUCKETS = 65536

_SEND_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)

#: A TCP answer is sent with MSG_MORE (the kernel holds the 4 bytes) and the
#: connection is then shut down for writing, which sends the bytes and the
#: FIN in one segment instead of two: one packet less for both ends to
#: process, the client's one ACK covers both. Measured with the bench's load
#: generator at 50 concurrent connections: 28 -> 24 us of server CPU per
#: connection (most of a connection's cost is the kernel's TCP work).
_ANSWER_FLAGS = _SEND_FLAGS | getattr(socket, "MSG_MORE", 0)

#: Wraps an accepted descriptor: the C-level socket class (no Python
#: ``__init__``/``close`` frames); a module global so tests can substitute it.
_wrap_fd = _socket.socket

#: Trio names every task; given a string, ``start_soon`` skips building
#: ``f"{fn.__module__}.{fn.__qualname__}"`` for each connection.
_TASK_NAME = "trio_timehttp.answer_connection"


# --------------------------------------------------------------------------
# binding


def _bind_sockets(
    host: str | None, port: int, kind: int, reuse_port: bool = False
) -> list[socket.socket]:
    """Bind (and for TCP, listen on) every address for ``host``; plain OSError on failure.

    ``host=None`` means all IPv4 and all IPv6 addresses, on two sockets (the
    IPv6 one with IPV6_V6ONLY, so the two never conflict). With ``port=0`` we
    try to give the second socket the port the first one got.
    """
    if host is None:
        targets: list[tuple[int, str]] = [
            (socket.AF_INET, "0.0.0.0"),
            (socket.AF_INET6, "::"),
        ]
    else:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
        targets = []
        for info_family, _, _, _, sockaddr in infos:
            target = (int(info_family), str(sockaddr[0]))
            if target not in targets:
                targets.append(target)
    socks: list[socket.socket] = []
    try:
        for family, address in targets:
            try:
                sock = socket.socket(family, kind)
            except OSError as exc:
                # No IPv6 in this kernel/container: serve IPv4 alone.
                if host is None and exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                    continue
                raise
            try:
                _configure_and_bind(sock, family, address, port, socks, reuse_port)
            except BaseException:
                sock.close()
                raise
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise OSError(errno.EADDRNOTAVAIL, f"no address to bind for host {host!r}")
    return socks


def _configure_and_bind(
    sock: socket.socket,
    family: int,
    address: str,
    port: int,
    earlier: list[socket.socket],
    reuse_port: bool,
) -> None:
    """Set the options every listener needs, then bind (and listen, for TCP)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Several processes (``serve --workers N``) share the port; the
        # kernel spreads connections and datagrams across them. Off by
        # default so that a second server on a taken port is an error.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    bound = False
    if port == 0 and earlier:
        # Same ephemeral port on IPv4 and IPv6 when the OS allows it; if it
        # is taken on this family, any port will do (API: read it back).
        try:
            sock.bind((address, earlier[0].getsockname()[1]))
            bound = True
        except OSError:
            bound = False
    if not bound:
        sock.bind((address, port))
    if sock.type == socket.SOCK_STREAM:
        sock.listen(_BACKLOG)
    sock.setblocking(False)


def _names(socks: Sequence[socket.socket]) -> str:
    parts = []
    for sock in socks:
        host, port = sock.getsockname()[:2]
        parts.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return ", ".join(parts)


# --------------------------------------------------------------------------
# TCP


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


async def _answer_connection(conn: _socket.socket, clock: Clock, slots: _Slots) -> None:
    """The task every TCP connection gets: 4 bytes, then close.

    ``conn`` is the C-level ``_socket.socket`` (see `_accept_loop`): its
    ``send`` and ``close`` are direct C calls, where ``socket.socket.close``
    runs two Python frames first.
    """
    try:
        data = encode_time(clock())
        try:
            conn.send(data, _ANSWER_FLAGS)
        except BlockingIOError:
            # Cannot happen with an empty send buffer and 4 bytes, but a
            # server must not assume: wait a bounded time for room, then drop.
            with trio.move_on_after(_SEND_TIMEOUT):
                await trio.lowlevel.wait_writable(conn)
                conn.send(data, _ANSWER_FLAGS)
    except OSError as exc:
        # The client reset or vanished before its answer: its business.
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
        slots.release()


class _ErrorLog:
    """Rate-limits the ERROR line about exhausted resources (one per interval)."""

    __slots__ = ("_last", "_suppressed")

    def __init__(self) -> None:
        self._last = -math.inf
        self._suppressed = 0

    def report(self, exc: OSError, where: str) -> None:
        now = time.monotonic()
        if now - self._last < _RESOURCE_LOG_INTERVAL:
            self._suppressed += 1
            return
        logger.error(
            "accept on %s failed: %s; pausing %.1f s, serving on (%d similar errors suppressed)",
            where,
            exc,
            _RESOURCE_BACKOFF,
            self._suppressed,
        )
        self._last = now
        self._suppressed = 0


async def _accept_loop(
    sock: socket.socket,
    where: str,
    nursery: trio.Nursery,
    clock: Clock,
    slots: _Slots,
    errors: _ErrorLog,
) -> None:
    """Accept connections on one listening socket until cancelled or the socket is closed."""
    # Per connection this loop makes one C call to accept and one to wrap
    # the descriptor. ``socket.socket.accept`` would add a Python frame and
    # read ``self.family``/``self.type``, properties that build IntEnum
    # members on every call, then run ``socket.socket.__init__`` in Python:
    # with the constant task name below, this cut our user-space
    # instructions per connection from 78.8k to 58.7k (callgrind, 50
    # concurrent connections from bench/loadgen.c).
    # The family/type/proto of an accepted socket are the listener's.
    # ``_accept`` is the C method ``socket.socket.accept`` itself calls
    # (stable since Python 3.3, absent from typeshed): it returns (fd, addr).
    accept: Callable[[], tuple[int, Any]] = sock._accept  # type: ignore[attr-defined]
    wrap = _wrap_fd
    family, kind, proto = int(sock.family), int(sock.type), sock.proto
    start_soon = nursery.start_soon
    # Looked up once per server start, so tests can observe the bound by
    # substituting a slower answer (see tests/test_timeserver.py).
    answer = _answer_connection
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
                if exc.errno in _RESOURCE_ERRNOS:
                    errors.report(exc, where)
                    await trio.sleep(_RESOURCE_BACKOFF)
                    break
                if exc.errno == errno.EBADF:
                    return  # the listener was closed under us
                # ECONNABORTED, EPROTO, EPERM (firewall), ...: that one
                # connection is lost, the listener is fine.
                if debug:
                    logger.debug("accept on %s: %s", where, exc)
                continue
            try:
                conn = wrap(family, kind, proto, fd)
            except OSError:  # pragma: no cover - fd is fresh from accept()
                os.close(fd)
                raise
            accepted += 1
            if debug:
                logger.debug("connection from %s", addr)
            slots.active += 1
            start_soon(answer, conn, clock, slots, name=_TASK_NAME)
        try:
            if accepted == _BATCH:
                # More may be queued: let the answers and others run, then
                # drain on without an epoll round.
                await checkpoint()
            else:
                await wait_readable(sock)
        except trio.ClosedResourceError:
            return  # the SocketListener we handed out was closed


async def _run_tcp(
    socks: list[socket.socket], clock: Clock, max_connections: int | None
) -> NoReturn:
    slots = _Slots(max_connections)
    errors = _ErrorLog()
    names = _names_safe(socks)  # now: a closed socket has no name to log
    try:
        async with trio.open_nursery() as nursery:
            for sock in socks:
                where = _names([sock])
                nursery.start_soon(_accept_loop, sock, where, nursery, clock, slots, errors)
    finally:
        for sock in socks:
            sock.close()
        logger.info("time service stopped on tcp %s", names)
    # Every accept loop ended because its listener was closed by the caller.
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


def _names_safe(socks: Sequence[socket.socket]) -> str:
    try:
        return _names(socks)
    except OSError:
        return f"{len(socks)} socket(s)"


async def serve_time_tcp(
    port: int = 37,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    max_connections: int | None = 1024,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over TCP until cancelled.

    Each connection gets ``encode_time(clock())`` and is closed; at most
    ``max_connections`` are answered at once (``None``: no bound), the rest
    wait in the listen backlog. ``task_status.started()`` gets the
    ``trio.SocketListener``s (one per address; with ``host=None`` IPv4 and
    IPv6). Bind errors propagate as the plain ``OSError``. Running out of
    file descriptors is logged and survived.
    """
    socks = _bind_sockets(host, port, socket.SOCK_STREAM, reuse_port)
    # The listeners wrap the very same sockets; the accept loop itself uses
    # the stdlib objects (cheaper per call). Closing a listener stops its loop.
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    logger.info("time service listening on tcp %s", _names(socks))
    task_status.started(listeners)
    await _run_tcp(socks, clock, max_connections)


# --------------------------------------------------------------------------
# UDP


class _RateLimiter:
    """Token bucket per source (IPv4 address, or IPv6 /64), using Trio's clock.

    ``trio.current_time()`` rather than the wall clock, so tests with a
    MockClock are deterministic and a wall-clock step changes nothing.
    """

    __slots__ = ("_buckets", "_burst", "_max", "_rate")

    def __init__(self, per_second: float, burst: int, max_buckets: int = _MAX_BUCKETS) -> None:
        if per_second < 0 or burst < 1:
            raise ValueError("rate_limit needs per_second >= 0 and burst >= 1")
        self._rate = float(per_second)
        self._burst = float(burst)
        self._max = max_buckets
        # key -> [tokens, last update]; dict order = insertion order, used for eviction.
        self._buckets: dict[Any, list[float]] = {}

    def allow(self, key: Any, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._make_room(now)
            self._buckets[key] = [self._burst - 1.0, now]
            return True
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _make_room(self, now: float) -> None:
        # First forget sources whose bucket has refilled: they are the same
        # as unknown ones. Only if every source is active do we drop the
        # oldest half (those may then get one more burst: a bounded cost).
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max:
            for key in list(self._buckets)[: max(1, self._max // 2)]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def _source_key(family: int, address: str) -> Any:
    """Rate-limit key: the IPv4 address, or the /64 of an IPv6 one (one site's allocation)."""
    if family != socket.AF_INET6:
        return address
    packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    if packed[:12] == _V4_MAPPED:
        return packed
    return packed[:8]


async def _udp_loop(sock: socket.socket, clock: Clock, limiter: _RateLimiter | None) -> None:
    """Answer datagrams on one socket, in batches, until cancelled or the socket is closed.

    A wake-up normally reads until the socket would block. But a failed
    ``recvfrom`` is a syscall plus an ``OSError`` built and caught (8 % of
    our user-space instructions per datagram when clients send one at a
    time, callgrind), and with one datagram in flight it fails on every
    wake-up. So when the last drain found nothing behind the datagram that
    woke us, the next wake-ups read one datagram each and wait again without
    probing ("lean"); every ``_PROBE_EVERY``-th wake-up drains again, and a
    drain that finds more than one stays in drain mode. Nothing is ever
    stranded: Trio's epoll waits are level-triggered (re-armed on every
    wait), so a datagram still queued wakes us again at once -- lean mode
    only costs an epoll round for it instead of a failed ``recvfrom``.
    """
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    family = sock.family
    # An int, not the socket: saves wait_readable a fileno() call. Safe
    # because every wait follows a recvfrom on the same open socket in the
    # same step (a closed socket fails it with EBADF and we return first).
    fd = sock.fileno()
    checkpoint = trio.lowlevel.checkpoint
    wait_readable = trio.lowlevel.wait_readable
    current_time = trio.current_time
    debug = logger.isEnabledFor(logging.DEBUG)
    drain = True
    lean_wakeups = 0
    while True:
        handled = 0
        limit = _BATCH if drain else 1
        now = current_time() if limiter is not None else 0.0
        while handled < limit:
            try:
                data, addr = recvfrom(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return
                # e.g. an ICMP error for an earlier reply: nothing to do.
                handled += 1
                continue
            handled += 1
            size = len(data)
            # RFC 868's request is empty; 4 or 8 bytes look like another
            # time server's reply (answering it is how two services
            # ping-pong forever); > 512 is not a time request.
            if size > _MAX_REQUEST or size == 4 or size == 8 or addr[1] < 1024:
                if debug:
                    logger.debug("ignored %d-byte datagram from %s", size, addr)
                continue
            if limiter is not None and not limiter.allow(_source_key(family, addr[0]), now):
                if debug:
                    logger.debug("rate limit: no reply to %s", addr)
                continue
            try:
                sendto(encode_time(clock()), _SEND_FLAGS, addr)
            except OSError as exc:
                # Full send buffer or an unroutable source: UDP may drop.
                if debug:
                    logger.debug("reply to %s dropped: %s", addr, exc)
        try:
            if handled == _BATCH:
                await checkpoint()
                continue
            if drain:
                drain = handled > 1
                lean_wakeups = 0
            else:
                lean_wakeups += 1
                drain = lean_wakeups >= _PROBE_EVERY
            await wait_readable(fd)
        except trio.ClosedResourceError:
            return


async def _run_udp(
    socks: list[socket.socket], clock: Clock, rate_limit: tuple[float, int] | None
) -> None:
    names = _names_safe(socks)  # now: a closed socket has no name to log
    try:
        async with trio.open_nursery() as nursery:
            for sock in socks:
                limiter = None if rate_limit is None else _RateLimiter(*rate_limit)
                nursery.start_soon(_udp_loop, sock, clock, limiter)
    finally:
        for sock in socks:
            sock.close()
        logger.info("time service stopped on udp %s", names)


def _check_rate_limit(rate_limit: tuple[float, int] | None) -> None:
    if rate_limit is not None:
        _RateLimiter(*rate_limit)  # validates, raising ValueError early


async def serve_time_udp(
    port: int = 37,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    rate_limit: tuple[float, int] | None = (10.0, 20),
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.socket.SocketType]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over UDP until cancelled.

    Every datagram of 0 to 512 bytes gets one 4-byte reply, except those
    from source ports below 1024, those of exactly 4 or 8 bytes (another
    time server's reply), and those over ``rate_limit = (per_second, burst)``
    for their source (IPv6 by /64; ``None``: no limit). ``task_status.started()``
    gets the bound Trio sockets. Bind errors propagate as the plain ``OSError``.
    """
    _check_rate_limit(rate_limit)
    socks = _bind_sockets(host, port, socket.SOCK_DGRAM, reuse_port)
    trio_socks = [trio.socket.from_stdlib_socket(s) for s in socks]
    logger.info("time service listening on udp %s", _names(socks))
    task_status.started(trio_socks)
    await _run_udp(socks, clock, rate_limit)
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------
# both


async def serve_time(
    port: int = 37,
    *,
    host: str | None = None,
    tcp: bool = True,
    udp: bool = True,
    clock: Clock = time.time,
    max_connections: int | None = 1024,
    rate_limit: tuple[float, int] | None = (10.0, 20),
    reuse_port: bool = False,
    task_status: trio.TaskStatus[
        tuple[list[trio.SocketListener], list[trio.socket.SocketType]]
    ] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over TCP and UDP at once, under one nursery, until cancelled.

    ``task_status.started((listeners, sockets))``; with ``port=0`` every
    socket may get its own port -- read them from what ``started()`` gives.
    All sockets are bound before anything runs, so a bind error is the plain
    ``OSError`` and nothing is left open. ``reuse_port=True`` sets
    SO_REUSEPORT, so several processes can serve one port (the service is
    stateless: the kernel spreads the load across them).
    """
    if not (tcp or udp):
        raise ValueError("serve_time needs tcp or udp (or both)")
    _check_rate_limit(rate_limit)
    tcp_socks = _bind_sockets(host, port, socket.SOCK_STREAM, reuse_port) if tcp else []
    try:
        udp_socks = _bind_sockets(host, port, socket.SOCK_DGRAM, reuse_port) if udp else []
    except BaseException:
        for sock in tcp_socks:
            sock.close()
        raise
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in tcp_socks]
    trio_socks = [trio.socket.from_stdlib_socket(s) for s in udp_socks]
    if tcp_socks:
        logger.info("time service listening on tcp %s", _names(tcp_socks))
    if udp_socks:
        logger.info("time service listening on udp %s", _names(udp_socks))
    task_status.started((listeners, trio_socks))
    async with trio.open_nursery() as nursery:
        if tcp_socks:
            nursery.start_soon(_run_tcp, tcp_socks, clock, max_connections)
        if udp_socks:
            nursery.start_soon(_run_udp, udp_socks, clock, rate_limit)
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
