"""The RFC 868 time service on Trio: the public serve functions.

Shape (as ``trio.serve_tcp`` is ``open_tcp_listeners`` + ``serve_listeners``):
one *open* step -- bind the sockets, or adopt the ``sockets=`` a caller (or
systemd, or a ``serve --workers`` supervisor) bound -- before any task runs,
so a bind error is the plain ``OSError`` and nothing is left open; then
``task_status.started()``; then one *serve* step running the TCP accept loops
(`_tcpserver`) and the UDP loops (`_udpserver`) under a nursery it owns,
until cancelled. The three public functions differ only in what they open
and what they hand to ``started()``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import trio

from ._access import AllowList
from ._binding import adopt_sockets, bind_sockets, close_all, names, split_by_kind
from ._serverstats import ServerStats
from ._tcpserver import TCPService, check_max_connections
from ._udpserver import UDPService, check_rate_limit

__all__ = ["serve_time", "serve_time_tcp", "serve_time_udp"]

logger = logging.getLogger("trio_timehttp.server")

Clock = Callable[[], float]
_Listeners = list[trio.SocketListener]
_TrioSockets = list[trio.socket.SocketType]


@dataclass(frozen=True)
class _Options:
    """Everything the serve step needs besides the sockets (validated once, up front)."""

    clock: Clock = time.time
    max_connections: int | None = 1024
    rate_limit: tuple[float, int] | None = (10.0, 20)
    allow: AllowList | None = None
    stats: ServerStats = field(default_factory=ServerStats)

    @classmethod
    def make(
        cls,
        clock: Clock,
        max_connections: int | None,
        rate_limit: tuple[float, int] | None,
        allow: Sequence[str] | None,
        stats: ServerStats | None,
    ) -> _Options:
        check_max_connections(max_connections)
        check_rate_limit(rate_limit)
        return cls(
            clock,
            max_connections,
            rate_limit,
            None if allow is None else AllowList.parse(allow),
            ServerStats() if stats is None else stats,
        )


def _open(
    host: str | None,
    port: int,
    kind: int,
    reuse_port: bool,
    sockets: Iterable[socket.socket] | None,
) -> list[socket.socket]:
    """The open step for one kind: adopt ``sockets`` if given, else bind ``host``:``port``."""
    if sockets is not None:
        return adopt_sockets(sockets, kind)
    return bind_sockets(host, port, kind, reuse_port)


def _split(
    sockets: Iterable[socket.socket], tcp: bool, udp: bool
) -> tuple[list[socket.socket], list[socket.socket]]:
    """``serve_time(sockets=...)``: the stream and datagram sockets, checked against tcp/udp."""
    streams, datagrams = split_by_kind(sockets)
    if not (streams or datagrams):
        raise ValueError("sockets: no socket given (None binds host and port instead)")
    if streams and not tcp:
        raise ValueError("sockets: a tcp socket given with tcp=False")
    if datagrams and not udp:
        raise ValueError("sockets: a udp socket given with udp=False")
    return streams, datagrams


async def _serve(
    tcp_socks: list[socket.socket], udp_socks: list[socket.socket], options: _Options
) -> NoReturn:
    """The serve step: run until cancelled; every socket is closed on the way out."""
    try:
        if options.allow is not None:
            logger.info("time service answers only %s", options.allow)
        async with trio.open_nursery() as nursery:
            if tcp_socks:
                tcp = TCPService(options.clock, options.max_connections, options.allow,
                                 options.stats)  # fmt: skip
                nursery.start_soon(tcp.run, tcp_socks)
            if udp_socks:
                udp = UDPService(options.clock, options.rate_limit, options.allow, options.stats)
                nursery.start_soon(udp.run, udp_socks)
    finally:
        close_all(tcp_socks + udp_socks)  # idempotent: for a cancel before the tasks ran
    # Every loop ended because its socket was closed by the caller.
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


def _announce(tcp_socks: list[socket.socket], udp_socks: list[socket.socket]) -> None:
    if tcp_socks:
        logger.info("time service listening on tcp %s", names(tcp_socks))
    if udp_socks:
        logger.info("time service listening on udp %s", names(udp_socks))


def _listeners(socks: list[socket.socket]) -> _Listeners:
    # The listeners wrap the very same sockets; the accept loop itself uses
    # the stdlib objects (cheaper per call). Closing a listener stops its loop.
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]


def _trio_sockets(socks: list[socket.socket]) -> _TrioSockets:
    return [trio.socket.from_stdlib_socket(s) for s in socks]


async def serve_time_tcp(
    port: int = 37,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    max_connections: int | None = 1024,
    reuse_port: bool = False,
    sockets: Iterable[socket.socket] | None = None,
    allow: Sequence[str] | None = None,
    stats: ServerStats | None = None,
    task_status: trio.TaskStatus[_Listeners] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over TCP until cancelled.

    Each connection gets ``encode_time(clock())`` and is closed; at most
    ``max_connections`` (a whole number >= 1, default ``1024``; ``None``: no
    bound) are answered at once, the rest wait in the listen backlog.
    ``task_status.started()`` gets the ``trio.SocketListener``s (one per
    address; with ``host=None`` IPv4 and IPv6).

    ``sockets``: already-bound stdlib TCP sockets to serve instead of binding
    ``host``/``port`` (which are then ignored) -- systemd's, or your own; one
    not yet listening is put to listen. From the call on the server owns
    them and closes them when it stops. ``allow``: CIDR strings
    (``["127.0.0.0/8", "::1"]``); a connection from any other source is
    closed at once without an answer, counted and logged at a bounded rate
    (default ``None``: everybody). ``stats`` (default ``None``: counters of
    its own): the counters the server adds to, which the command line's
    metrics read (their type is internal: leave it out).
    ``reuse_port=True`` (default ``False``) sets SO_REUSEPORT so several
    processes can serve one port.

    Raises before binding: ``ValueError`` for ``max_connections`` below 1,
    an unparsable ``allow`` entry, or a ``sockets`` entry that is not a bound
    TCP socket. Bind errors propagate as the plain ``OSError``. Running out
    of file descriptors is logged and survived.
    """
    options = _Options.make(clock, max_connections, None, allow, stats)
    socks = _open(host, port, socket.SOCK_STREAM, reuse_port, sockets)
    _announce(socks, [])
    task_status.started(_listeners(socks))
    await _serve(socks, [], options)


async def serve_time_udp(
    port: int = 37,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    rate_limit: tuple[float, int] | None = (10.0, 20),
    reuse_port: bool = False,
    sockets: Iterable[socket.socket] | None = None,
    allow: Sequence[str] | None = None,
    stats: ServerStats | None = None,
    task_status: trio.TaskStatus[_TrioSockets] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over UDP until cancelled.

    Every datagram of 0 to 512 bytes gets one 4-byte reply, except those
    from source ports below 1024, those of exactly 4 or 8 bytes (another
    time server's reply), those over ``rate_limit = (per_second, burst)``
    for their source (IPv6 by /64; ``None``: no limit) and those from a
    source outside ``allow`` (dropped, counted, logged at a bounded rate).
    The reply leaves from the address the datagram was sent to, on wildcard
    sockets too (RFC 1122 4.1.3.5). ``task_status.started()`` gets the bound
    Trio sockets. ``sockets``, ``allow``, ``stats`` and ``reuse_port`` as for
    `serve_time_tcp` (``sockets`` are UDP sockets here). Bind errors
    propagate as the plain ``OSError``; bad arguments raise ``ValueError``
    before anything is bound.
    """
    options = _Options.make(clock, None, rate_limit, allow, stats)
    socks = _open(host, port, socket.SOCK_DGRAM, reuse_port, sockets)
    _announce([], socks)
    task_status.started(_trio_sockets(socks))
    await _serve([], socks, options)


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
    sockets: Iterable[socket.socket] | None = None,
    allow: Sequence[str] | None = None,
    stats: ServerStats | None = None,
    task_status: trio.TaskStatus[tuple[_Listeners, _TrioSockets]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve RFC 868 time over TCP and UDP at once, under one nursery, until cancelled.

    ``task_status.started((listeners, sockets))``; with ``port=0`` every
    socket may get its own port -- read them from what ``started()`` gives.
    All sockets are bound before anything runs, so a bind error is the plain
    ``OSError`` and nothing is left open. ``sockets``: already-bound stdlib
    sockets of both kinds, told apart by ``SO_TYPE`` (stream: TCP, datagram:
    UDP), served instead of binding; a kind switched off with ``tcp=False``
    or ``udp=False`` must not be among them. The other keywords are those of
    `serve_time_tcp` and `serve_time_udp`.
    """
    if not (tcp or udp):
        raise ValueError("serve_time needs tcp or udp (or both)")
    options = _Options.make(clock, max_connections, rate_limit, allow, stats)
    if sockets is not None:
        streams, datagrams = _split(sockets, tcp, udp)
        tcp_socks = adopt_sockets(streams, socket.SOCK_STREAM)
        udp_socks = adopt_sockets(datagrams, socket.SOCK_DGRAM)
    else:
        tcp_socks = bind_sockets(host, port, socket.SOCK_STREAM, reuse_port) if tcp else []
        try:
            udp_socks = bind_sockets(host, port, socket.SOCK_DGRAM, reuse_port) if udp else []
        except BaseException:
            close_all(tcp_socks)
            raise
    _announce(tcp_socks, udp_socks)
    task_status.started((_listeners(tcp_socks), _trio_sockets(udp_socks)))
    await _serve(tcp_socks, udp_socks, options)
