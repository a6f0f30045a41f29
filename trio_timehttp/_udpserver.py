"""The UDP side of the time service: one loop per socket, answering datagrams in batches.

What must stay true:

- Only datagrams of 0 to 512 bytes from source ports >= 1024 are answered,
  never one of exactly 4 or 8 bytes (another time server's reply: answering
  it is how two services ping-pong forever); at most ``rate_limit`` replies
  per source (an IPv6 source counts by its /64); nothing to a source outside
  ``allow``.
- The reply leaves from the address the request was sent to (RFC 1122
  4.1.3.5). A socket bound to one address gets that for free; on a wildcard
  socket (``0.0.0.0`` or ``::``) the kernel would pick the source by route
  (asked at 127.0.0.2, it answered from 127.0.0.1, and a careful client
  drops that reply). So a wildcard socket asks for each datagram's
  destination (``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``) with ``recvmsg`` and
  names it as the reply's source with ``sendmsg``.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import trio

from ._access import AllowList
from ._binding import format_address, is_wildcard, names
from ._rfc868 import encode_time
from ._serverstats import BoundedLog, ServerStats

__all__ = ["RateLimiter", "UDPService", "check_rate_limit"]

logger = logging.getLogger("trio_timehttp.server")

Clock = Callable[[], float]

#: Datagrams handled before a checkpoint: a flood must not starve the other
#: tasks of the event loop.
_BATCH = 64

#: A datagram longer than RFC 868 could mean; reading one byte past it is how
#: an oversized one is detected.
_MAX_REQUEST = 512
_RECV_SIZE = _MAX_REQUEST + 1

#: In lean mode (see `udp_loop`) one wake-up in this many drains the socket
#: again, to notice when datagrams start arriving faster than one per wake-up.
_PROBE_EVERY = 8

#: Bound on the rate limiter's table: a flood with spoofed sources must not
#: grow memory without limit.
_MAX_BUCKETS = 65536

_SEND_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)

#: Linux's IP_PKTINFO (``<linux/in.h>``); Python 3.11's socket module lacks the name.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
#: Room for one ``in_pktinfo`` (12 bytes) or ``in6_pktinfo`` (20 bytes) message.
_ANC_SIZE = socket.CMSG_SPACE(20)
_NO_IFINDEX = b"\x00\x00\x00\x00"


class RateLimiter:
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


def check_rate_limit(rate_limit: tuple[float, int] | None) -> None:
    """``ValueError`` for a rate limit `RateLimiter` would refuse (checked before binding)."""
    if rate_limit is not None:
        RateLimiter(*rate_limit)


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def _source_key(family: int, address: str) -> Any:
    """Rate-limit key: the IPv4 address, or the /64 of an IPv6 one (one site's allocation)."""
    if family != socket.AF_INET6:
        return address
    packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    if packed[:12] == _V4_MAPPED:
        return packed
    return packed[:8]


class _ReplySource:
    """How a wildcard socket names its reply's source: the cmsg level and type, and a fix-up.

    IPv4: the received ``in_pktinfo`` is sent back with its interface index
    zeroed, so ``ipi_spec_dst`` (the local address the datagram was for; the
    interface's address for a broadcast) is the source and the routing table
    picks the way out. IPv6: the received ``in6_pktinfo`` unchanged (its
    address is the destination; its interface index is what a link-local
    address needs). An IPv4 datagram on a dual-stack IPv6 socket arrives with
    an IPv4-mapped ``in6_pktinfo``, which Linux accepts back for the reply.
    """

    __slots__ = ("level", "type", "v4")

    def __init__(self, family: int) -> None:
        self.v4 = family == socket.AF_INET
        if self.v4:
            self.level, self.type = socket.IPPROTO_IP, _IP_PKTINFO
        else:
            self.level, self.type = socket.IPPROTO_IPV6, socket.IPV6_PKTINFO

    def ancillary(self, received: bytes) -> list[tuple[int, int, bytes]]:
        data = _NO_IFINDEX + received[4:] if self.v4 else received
        return [(self.level, self.type, data)]


def _reply_source(sock: socket.socket) -> _ReplySource | None:
    """Ask the kernel for datagram destinations on a wildcard socket; None when not needed."""
    if not sys.platform.startswith("linux") or not is_wildcard(sock):
        return None
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    return _ReplySource(sock.family)


class UDPService:
    """What the UDP loops of one server share: clock, limits, allow list, counters."""

    __slots__ = ("allow", "clock", "denied_log", "rate_limit", "stats")

    def __init__(
        self,
        clock: Clock,
        rate_limit: tuple[float, int] | None,
        allow: AllowList | None,
        stats: ServerStats,
    ) -> None:
        check_rate_limit(rate_limit)
        self.clock = clock
        self.rate_limit = rate_limit
        self.allow = allow
        self.stats = stats
        self.denied_log = BoundedLog(logger, logging.WARNING)

    async def run(self, socks: list[socket.socket]) -> None:
        """Answer on every socket until cancelled; close them all on the way out."""
        where = names(socks)  # now: a closed socket has no name to log
        try:
            async with trio.open_nursery() as nursery:
                for sock in socks:
                    limiter = None if self.rate_limit is None else RateLimiter(*self.rate_limit)
                    nursery.start_soon(udp_loop, sock, self, limiter, _reply_source(sock))
        finally:
            for sock in socks:
                sock.close()
            logger.info("time service stopped on udp %s", where)

    def ignore(self, size: int, addr: Any) -> None:
        self.stats.ignored += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("ignored %d-byte datagram from %s", size, format_address(addr))

    def deny(self, addr: Any) -> None:
        self.stats.denied += 1
        self.denied_log("denied udp datagram from %s (not in --allow)", format_address(addr))

    def limited(self, addr: Any) -> None:
        self.stats.rate_limited += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("rate limit: no reply to %s", format_address(addr))

    def dropped(self, addr: Any, exc: OSError) -> None:
        self.stats.send_errors += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("reply to %s dropped: %s", format_address(addr), exc)


async def udp_loop(
    sock: socket.socket,
    service: UDPService,
    limiter: RateLimiter | None,
    source: _ReplySource | None,
) -> None:
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

    With ``source`` (a wildcard socket) each datagram is read with
    ``recvmsg`` and answered with ``sendmsg`` naming its destination as the
    source; the ancillary list is rebuilt only when the destination changes.
    The admission rules and the batching are the same on both paths. (One
    function on purpose: a call per datagram would cost more than the rules.)
    """
    recvfrom, sendto = sock.recvfrom, sock.sendto
    recvmsg, sendmsg = sock.recvmsg, sock.sendmsg
    family = sock.family
    clock, allow, stats = service.clock, service.allow, service.stats
    # An int, not the socket: saves wait_readable a fileno() call. Safe
    # because every wait follows a recv on the same open socket in the
    # same step (a closed socket fails it with EBADF and we return first).
    fd = sock.fileno()
    checkpoint = trio.lowlevel.checkpoint
    wait_readable = trio.lowlevel.wait_readable
    current_time = trio.current_time
    debug = logger.isEnabledFor(logging.DEBUG)
    received = b""
    ancillary: list[tuple[int, int, bytes]] = []
    drain = True
    lean_wakeups = 0
    while True:
        handled = answered = 0
        limit = _BATCH if drain else 1
        now = current_time() if limiter is not None else 0.0
        while handled < limit:
            try:
                if source is None:
                    data, addr = recvfrom(_RECV_SIZE)
                else:
                    data, anc, _, addr = recvmsg(_RECV_SIZE, _ANC_SIZE)
                    if anc and anc[0][2] != received:
                        received = anc[0][2]
                        ancillary = source.ancillary(received)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    stats.udp_answers += answered
                    return
                # e.g. an ICMP error for an earlier reply: nothing to do.
                handled += 1
                continue
            handled += 1
            size = len(data)
            if allow is not None and not allow.allows(addr[0]):
                service.deny(addr)
                continue
            if size > _MAX_REQUEST or size == 4 or size == 8 or addr[1] < 1024:
                service.ignore(size, addr)
                continue
            if limiter is not None and not limiter.allow(_source_key(family, addr[0]), now):
                service.limited(addr)
                continue
            try:
                if source is None or not anc:
                    sendto(encode_time(clock()), _SEND_FLAGS, addr)
                else:
                    sendmsg([encode_time(clock())], ancillary, _SEND_FLAGS, addr)
                answered += 1
                if debug:
                    logger.debug("udp answer to %s", format_address(addr))
            except OSError as exc:
                # Full send buffer or an unroutable source: UDP may drop.
                service.dropped(addr, exc)
        stats.udp_answers += answered
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
