"""The RFC 868 time server, over real loopback sockets.

Rules: port 0 and ``nursery.start`` for readiness, never a sleep; a clock that
counts its calls (``Counter``) tells exactly which requests were answered, so
"ignored" is proved by order (a later request's answer arrives first), not by
waiting; ``mock_clock`` (frozen Trio time) makes the rate limiter deterministic.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import trio
import trio.testing

from trio_timehttp import (
    _fastsock,
    _serverstats,
    _tcpserver,
    _udpserver,
    decode_time,
    encode_time,
    serve_time,
    serve_time_tcp,
    serve_time_udp,
)

from helpers import bound_trio_socket
from peerutil import Lines

FIXED = 1_800_000_000  # 2027-01-15, an arbitrary clock for the server


class Counter:
    """A server clock whose n-th call returns ``base + n``: each reply names its request."""

    def __init__(self, base: int = FIXED) -> None:
        self.base = base
        self.calls = 0

    def __call__(self) -> float:
        value = self.base + self.calls
        self.calls += 1
        return float(value)


def port_of(sock: trio.socket.SocketType | socket.socket) -> int:
    return int(sock.getsockname()[1])


async def tcp_read(host: str, port: int) -> bytes:
    """Everything a TCP server sends before it closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_STREAM) as sock:
        await sock.connect((host, port))
        data = b""
        while chunk := await sock.recv(100):
            data += chunk
        return data


def udp_client(host: str = "127.0.0.1", port: int = 0) -> trio.socket.SocketType:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return bound_trio_socket(family, socket.SOCK_DGRAM, (host, port))


async def udp_reply_value(sock: trio.socket.SocketType) -> int:
    data, _ = await sock.recvfrom(100)
    assert len(data) == 4
    return decode_time(data, now=FIXED)


def nothing_queued(sock: trio.socket.SocketType) -> bool:
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return not readable


# --------------------------------------------------------------------------- TCP


async def test_tcp_answers_on_ipv4_and_ipv6(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, clock=lambda: FIXED + 0.9)
    )
    families = {listener.socket.family for listener in listeners}
    assert families == {socket.AF_INET, socket.AF_INET6}
    for listener in listeners:
        assert isinstance(listener, trio.SocketListener)
        host = "::1" if listener.socket.family == socket.AF_INET6 else "127.0.0.1"
        data = await tcp_read(host, port_of(listener.socket))
        assert data == encode_time(FIXED)  # floored, exactly 4 bytes, then closed
    v6 = next(li for li in listeners if li.socket.family == socket.AF_INET6)
    assert v6.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


async def test_tcp_host_and_logging(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_timehttp.server")
    scope = trio.CancelScope()
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        with scope:
            await serve_time_tcp(0, host="127.0.0.1", clock=lambda: FIXED, task_status=task_status)
        done.set()

    listeners = await nursery.start(run)
    assert [li.socket.getsockname()[0] for li in listeners] == ["127.0.0.1"]
    assert await tcp_read("127.0.0.1", port_of(listeners[0].socket)) == encode_time(FIXED)
    scope.cancel()
    await done.wait()
    messages = [r.getMessage() for r in caplog.records]
    assert any("listening on tcp 127.0.0.1:" in m for m in messages)
    assert any("stopped on tcp" in m for m in messages)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
async def test_bind_error_is_a_plain_oserror(kind: int) -> None:
    with socket.socket(socket.AF_INET, kind) as blocker:
        blocker.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            blocker.listen()
        port = blocker.getsockname()[1]
        serve = serve_time_tcp if kind == socket.SOCK_STREAM else serve_time_udp
        with pytest.raises(OSError, match="in use") as info:
            await serve(port, host="127.0.0.1")
        assert info.type is OSError
        assert info.value.errno == errno.EADDRINUSE
        # serve_time binds everything before it starts anything: same plain error.
        with pytest.raises(OSError, match="in use") as info:
            await serve_time(port, host="127.0.0.1")
        assert info.value.errno == errno.EADDRINUSE


async def test_reuse_port_lets_two_servers_share_a_port(nursery: trio.Nursery) -> None:
    first = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", reuse_port=True)
    )
    tcp_port, udp_port = port_of(first[0][0].socket), port_of(first[1][0])
    # Without reuse_port the port is taken ...
    with pytest.raises(OSError, match="in use"):
        await serve_time_tcp(tcp_port, host="127.0.0.1")
    # ... with it, a second server (a second worker) binds the same ports.
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, tcp_port, host="127.0.0.1", reuse_port=True)
    )
    sockets = await nursery.start(
        functools.partial(serve_time_udp, udp_port, host="127.0.0.1", reuse_port=True)
    )
    assert port_of(listeners[0].socket) == tcp_port
    assert port_of(sockets[0]) == udp_port
    for _ in range(8):
        assert len(await tcp_read("127.0.0.1", tcp_port)) == 4


async def test_peer_reset_before_the_answer_is_swallowed(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_timehttp.server")
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="127.0.0.1", clock=lambda: FIXED)
    )
    port = port_of(listeners[0].socket)
    # Connect and reset without yielding: the server accepts a dead connection.
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_client_that_talks_first_still_gets_the_answer(nursery: trio.Nursery) -> None:
    # The answer is sent with MSG_MORE and pushed out with the FIN by
    # shutdown(). A client whose bytes the server never reads makes close()
    # send a reset, which would discard an answer still held by MSG_MORE:
    # shutdown() before close() is what delivers it. (Fails if the shutdown
    # is dropped.)
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="127.0.0.1", clock=lambda: FIXED)
    )
    port = port_of(listeners[0].socket)
    for _ in range(5):
        # Blocking connect + send without yielding: the request line is in
        # the server's receive queue before the server accepts.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"what time is it?\r\n")
            s.setblocking(False)
            await trio.lowlevel.wait_readable(s)
            assert s.recv(100) == encode_time(FIXED)


async def test_answer_and_fin_arrive_together(nursery: trio.Nursery) -> None:
    # MSG_MORE + shutdown: once the 4 bytes are readable, so is the end of
    # the stream (one segment), and every connection gets exactly 4 bytes.
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="127.0.0.1", clock=lambda: FIXED)
    )
    port = port_of(listeners[0].socket)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setblocking(False)
        await trio.lowlevel.wait_readable(s)
        await trio.testing.wait_all_tasks_blocked()
        assert s.recv(100) == encode_time(FIXED)
        assert s.recv(100) == b""


async def start_tcp_service(
    nursery: trio.Nursery, calls: _tcpserver.ConnectionCalls, max_connections: int | None = None
) -> int:
    """A TCP time service on 127.0.0.1 (clock FIXED) answering as ``calls`` say; its port.

    The socket listens before the loop starts, so clients may connect at once.
    """
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    sock.setblocking(False)
    stats = _serverstats.ServerStats()
    service = _tcpserver.TCPService(lambda: FIXED, max_connections, None, stats, calls)
    nursery.start_soon(service.run, [sock])
    return int(sock.getsockname()[1])


async def test_answer_waits_when_the_send_would_block(nursery: trio.Nursery) -> None:
    # The slow path of the per-connection task: the first send would block,
    # the task waits for room and sends then. Simulated with a socket class
    # whose first send says EAGAIN (``ConnectionCalls.wrap``).
    refused: list[int] = []
    base: Any = _fastsock.fd_wrapper()

    class Busy(base):  # type: ignore[misc]
        def send(self, data: bytes, flags: int = 0) -> int:  # type: ignore[override]
            if not refused:
                refused.append(flags)
                raise BlockingIOError(errno.EAGAIN, "send buffer full")
            return super().send(data, flags)

    port = await start_tcp_service(nursery, _tcpserver.ConnectionCalls(wrap=Busy))
    assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)
    assert refused


@pytest.mark.parametrize("fast", [True, False])
def test_fastsock_accept_and_wrap_give_working_sockets(fast: bool) -> None:
    # The fast route (CPython's C accept and socket type) and the public
    # fallback give the same thing: a descriptor, the peer, and a socket
    # object that sends, shuts down and closes.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accept = _fastsock.accept_call(listener, fast=fast)
        wrap = _fastsock.fd_wrapper(fast=fast)
        with socket.create_connection(listener.getsockname()) as client:
            fd, address = accept()
            assert address == client.getsockname()
            conn = wrap(int(listener.family), int(listener.type), listener.proto, fd)
            assert conn.send(b"1234") == 4
            conn.shutdown(socket.SHUT_WR)
            conn.close()
            assert client.recv(8) == b"1234"
            assert client.recv(8) == b""


async def test_server_answers_on_the_public_socket_route(nursery: trio.Nursery) -> None:
    # Where CPython's details are missing, the server runs on the public
    # accept() and socket.socket: same answers.
    port = await start_tcp_service(nursery, _tcpserver.ConnectionCalls(fast=False))
    for _ in range(5):
        assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)


async def test_max_connections_bound_holds(nursery: trio.Nursery) -> None:
    # The real per-connection task never waits, so the bound is unobservable
    # with it; substitute one that holds its slot until released, then hands
    # over to the real answer. The accept loop under test is unchanged.
    gate = trio.Event()
    active: list[int] = []
    peak = 0
    real = _tcpserver.answer_connection

    async def held(conn: socket.socket, service: _tcpserver.TCPService) -> None:
        nonlocal peak
        active.append(1)
        peak = max(peak, len(active))
        await gate.wait()
        active.pop()
        await real(conn, service)

    port = await start_tcp_service(nursery, _tcpserver.ConnectionCalls(answer=held), 2)
    results: list[bytes] = []

    async def client() -> None:
        results.append(await tcp_read("127.0.0.1", port))

    async with trio.open_nursery() as clients:
        for _ in range(5):
            clients.start_soon(client)
        # Let every connection reach the server's backlog and the loop settle.
        await trio.testing.wait_all_tasks_blocked(cushion=0.2)
        assert len(active) == 2  # three more wait in the kernel's backlog
        gate.set()
    assert results == [encode_time(FIXED)] * 5
    assert peak == 2


async def test_closing_a_listener_stops_only_that_one(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(functools.partial(serve_time_tcp, 0, clock=lambda: FIXED))
    v4 = next(li for li in listeners if li.socket.family == socket.AF_INET)
    v6 = next(li for li in listeners if li.socket.family == socket.AF_INET6)
    v4_port = port_of(v4.socket)
    await v4.aclose()
    with pytest.raises(OSError, match="refused"):
        await tcp_read("127.0.0.1", v4_port)
    assert await tcp_read("::1", port_of(v6.socket)) == encode_time(FIXED)


# --------------------------------------------------------------------------- UDP


async def test_udp_answers_empty_datagram_on_both_families(nursery: trio.Nursery) -> None:
    socks = await nursery.start(functools.partial(serve_time_udp, 0, clock=lambda: FIXED + 0.5))
    assert {s.family for s in socks} == {socket.AF_INET, socket.AF_INET6}
    for server in socks:
        host = "::1" if server.family == socket.AF_INET6 else "127.0.0.1"
        with udp_client(host) as client:
            await client.sendto(b"", (host, port_of(server)))
            data, source = await client.recvfrom(100)
            assert data == encode_time(FIXED)
            assert source[1] == port_of(server)


@pytest.mark.parametrize(
    ("size", "answered"),
    [
        (0, True),
        (1, True),
        (3, True),
        (4, False),
        (5, True),
        (7, True),
        (8, False),
        (9, True),
        (512, True),
        (513, False),
        (1000, False),
        (9000, False),
    ],
)
async def test_udp_size_rules(nursery: trio.Nursery, size: int, answered: bool) -> None:
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="127.0.0.1", clock=clock, rate_limit=None)
    )
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client() as client:
        await client.sendto(b"x" * size, address)
        await client.sendto(b"", address)  # marker: always answered
        first = await udp_reply_value(client)
        if answered:
            assert first == FIXED
            assert await udp_reply_value(client) == FIXED + 1
        else:
            assert first == FIXED  # the marker got the first clock reading
            assert nothing_queued(client)


def bind_low_port(host: str = "127.0.0.1") -> socket.socket:
    """A UDP socket on a free source port below 1024 (these tests run as root)."""
    for port in range(1023, 600, -1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except PermissionError:
            sock.close()
            pytest.skip("binding a port below 1024 needs root")
        except OSError:
            sock.close()
            continue
        return sock
    pytest.skip("no free port below 1024")


async def test_udp_ignores_source_ports_below_1024(nursery: trio.Nursery) -> None:
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="127.0.0.1", clock=clock, rate_limit=None)
    )
    address = ("127.0.0.1", port_of(socks[0]))
    with trio.socket.from_stdlib_socket(bind_low_port()) as low, udp_client() as high:
        assert low.getsockname()[1] < 1024
        await low.sendto(b"", address)
        await high.sendto(b"", address)
        assert await udp_reply_value(high) == FIXED  # the marker came first
        assert nothing_queued(low)
    assert clock.calls == 1


async def test_udp_rate_limit_per_source(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    # mock_clock: Trio time stands still unless we jump it, so the token
    # buckets refill exactly when the test says.
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="127.0.0.1", clock=clock, rate_limit=(2.0, 3))
    )
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client("127.0.0.1") as flood, udp_client("127.0.0.2") as other:
        for _ in range(10):
            await flood.sendto(b"", address)
        await other.sendto(b"", address)  # another source is still served
        # Replies carry the clock's call number: the burst of 3, then other.
        assert await udp_reply_value(other) == FIXED + 3
        assert [await udp_reply_value(flood) for _ in range(3)] == [FIXED, FIXED + 1, FIXED + 2]
        assert nothing_queued(flood)
        mock_clock.jump(1.0)  # two more tokens at 2 per second
        for _ in range(3):
            await flood.sendto(b"", address)
        await other.sendto(b"", address)
        assert await udp_reply_value(other) == FIXED + 6
        assert [await udp_reply_value(flood) for _ in range(2)] == [FIXED + 4, FIXED + 5]
        assert nothing_queued(flood)


async def test_udp_rate_limit_ipv6(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="::1", clock=clock, rate_limit=(1.0, 2))
    )
    address = ("::1", port_of(socks[0]))
    with udp_client("::1") as a, udp_client("::1") as b:
        # Two sockets, one /64: they share one bucket.
        for sock in (a, b, a, b):
            await sock.sendto(b"", address)
        mock_clock.jump(1.0)
        await b.sendto(b"", address)
        assert await udp_reply_value(a) == FIXED
        assert await udp_reply_value(b) == FIXED + 1
        assert await udp_reply_value(b) == FIXED + 2  # the two over the burst got nothing
        assert nothing_queued(a)
        assert nothing_queued(b)


async def test_udp_no_rate_limit(nursery: trio.Nursery) -> None:
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="127.0.0.1", clock=clock, rate_limit=None)
    )
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client() as client:
        for _ in range(100):  # more than one batch of the server's loop
            await client.sendto(b"", address)
        values = [await udp_reply_value(client) for _ in range(100)]
    assert values == [FIXED + i for i in range(100)]


async def test_udp_lean_mode_strands_nothing(nursery: trio.Nursery) -> None:
    # One datagram at a time puts the loop in lean mode (one read per
    # wake-up, no probe for more); a burst must then still be answered in
    # full and in order -- the level-triggered wait wakes it for the rest --
    # and the periodic probe brings it back to draining.
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="127.0.0.1", clock=clock, rate_limit=None)
    )
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client() as client:
        for i in range(3 * _udpserver._PROBE_EVERY):
            await client.sendto(b"", address)
            assert await udp_reply_value(client) == FIXED + i
        for _round in range(2):
            await trio.testing.wait_all_tasks_blocked()
            start = clock.calls
            for _ in range(150):  # more than two batches of the server's loop
                await client.sendto(b"", address)
            values = [await udp_reply_value(client) for _ in range(150)]
            assert values == [FIXED + start + i for i in range(150)]
            assert nothing_queued(client)


def test_source_keys() -> None:
    key = _udpserver._source_key
    assert key(socket.AF_INET, "192.0.2.1") != key(socket.AF_INET, "192.0.2.2")
    same = key(socket.AF_INET6, "2001:db8::1")
    assert key(socket.AF_INET6, "2001:db8::ffff:ffff:1") == same
    assert key(socket.AF_INET6, "2001:db8:0:0:1:2:3:4") == same
    assert key(socket.AF_INET6, "2001:db8:0:1::1") != same
    assert key(socket.AF_INET6, "fe80::1%lo") == key(socket.AF_INET6, "fe80::2")
    # v4-mapped addresses count per address, not per /64 (all of IPv4 would share one).
    assert key(socket.AF_INET6, "::ffff:192.0.2.1") != key(socket.AF_INET6, "::ffff:192.0.2.2")


def test_rate_limiter_table_is_bounded() -> None:
    limiter = _udpserver.RateLimiter(1.0, 2, max_buckets=1000)
    for i in range(5000):  # a spoofed-source flood, all at one instant
        assert limiter.allow(i, 0.0)
        assert len(limiter) <= 1000
    # Idle sources that refilled are forgotten first; busy ones are kept.
    assert limiter.allow("busy", 10.0)
    assert limiter.allow("busy", 10.0)
    assert not limiter.allow("busy", 10.0)
    for i in range(5000, 7000):
        limiter.allow(i, 10.0)
    assert len(limiter) <= 1000


@pytest.mark.parametrize("bad", [(-1.0, 5), (1.0, 0)])
async def test_bad_rate_limit_is_rejected_before_binding(bad: tuple[float, int]) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        await serve_time_udp(0, host="127.0.0.1", rate_limit=bad)


# --------------------------------------------------------------------------- both


async def test_serve_time_both(nursery: trio.Nursery) -> None:
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", clock=lambda: FIXED)
    )
    assert len(listeners) == 1
    assert len(socks) == 1
    assert await tcp_read("127.0.0.1", port_of(listeners[0].socket)) == encode_time(FIXED)
    with udp_client() as client:
        await client.sendto(b"", ("127.0.0.1", port_of(socks[0])))
        assert await udp_reply_value(client) == FIXED


async def test_serve_time_tcp_only(nursery: trio.Nursery) -> None:
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", udp=False, clock=lambda: FIXED)
    )
    assert socks == []
    assert await tcp_read("127.0.0.1", port_of(listeners[0].socket)) == encode_time(FIXED)


async def test_serve_time_needs_a_transport() -> None:
    with pytest.raises(ValueError, match="tcp or udp"):
        await serve_time(0, tcp=False, udp=False)


# --------------------------------------------------------------------------- load and faults


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
async def test_ten_thousand_connections(nursery: trio.Nursery) -> None:
    # Record how many answers are pending whenever one starts: the bound on
    # connections being answered at once must hold under a flood.
    pending_seen: list[int] = []
    real = _tcpserver.answer_connection

    async def counted(conn: socket.socket, service: _tcpserver.TCPService) -> None:
        pending_seen.append(service.slots.active)
        await real(conn, service)

    port = await start_tcp_service(nursery, _tcpserver.ConnectionCalls(answer=counted), 16)
    baseline = fd_count()

    def flood() -> tuple[int, int, int]:
        # Blocking client in a thread: the server keeps running in the Trio loop.
        hanging: list[socket.socket] = []
        answered = reset = 0
        for i in range(10_000):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if i % 4 == 0:  # reset at once, before the server got to it
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                reset += 1
            elif i % 4 == 1:  # left open and unread until the end
                hanging.append(s)
            else:
                data = b""
                while chunk := s.recv(100):
                    data += chunk
                assert data == encode_time(FIXED)
                s.close()
                answered += 1
        for s in hanging:
            s.close()
        return answered, reset, len(hanging)

    answered, reset, hanging = await trio.to_thread.run_sync(flood)
    assert (answered, reset, hanging) == (5000, 2500, 2500)
    # Accepts are FIFO: once this one is answered, all earlier ones were.
    assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)
    assert fd_count() == baseline
    assert len(pending_seen) == 10_001
    assert max(pending_seen) <= 16


CHILD = textwrap.dedent(
    """
    import functools, logging, os, resource, sys
    import trio
    from trio_timehttp import serve_time_tcp

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")

    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(serve_time_tcp, 0, host="127.0.0.1", clock=lambda: 1800000000)
            )
            print("port", listeners[0].socket.getsockname()[1], flush=True)
            fillers = []  # use up every file descriptor the process may have
            try:
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            print("full", len(fillers), flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            for fd in fillers:
                os.close(fd)
            print("freed", flush=True)

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    trio.run(main)
    """
)


@pytest.mark.slow
async def test_out_of_file_descriptors_is_survived() -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        lines = Lines(proc.stdout)
        with trio.fail_after(20):
            while not (line := await lines.next()).startswith("port "):
                pass  # the server's own start-up log line
            port = int(line.split()[1])
            assert (await lines.next()).startswith("full")
            # The kernel completes these from the backlog; the server can't accept.
            waiting = [trio.socket.socket() for _ in range(3)]
            for sock in waiting:
                await sock.connect(("127.0.0.1", port))
            line = await lines.next()
            assert line.startswith("ERROR accept on 127.0.0.1:")
            assert "Too many open files" in line
            await proc.stdin.send_all(b"go\n")
            assert await lines.next() == "freed"
            for sock in waiting:
                with sock:
                    assert await sock.recv(100) == encode_time(FIXED)
            assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)
            assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        await proc.wait()


# --------------------------------------------------------------------------- 0.2: service features


@pytest.mark.parametrize("bad", [0, -1, -1024])
async def test_max_connections_below_one_is_refused_at_start(bad: int) -> None:
    # 0 used to serve nobody forever; now the call fails before binding.
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        await serve_time_tcp(0, host="127.0.0.1", max_connections=bad)
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        await serve_time(0, host="127.0.0.1", max_connections=bad)


async def test_max_connections_none_is_unbounded(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="127.0.0.1", max_connections=None,
                          clock=lambda: FIXED)
    )  # fmt: skip
    assert await tcp_read("127.0.0.1", port_of(listeners[0].socket)) == encode_time(FIXED)


@pytest.mark.parametrize(
    ("host", "family"),
    [("0.0.0.0", socket.AF_INET), ("::", socket.AF_INET6)],
)
async def test_wildcard_udp_answers_from_the_address_asked(
    nursery: trio.Nursery, host: str, family: int
) -> None:
    # RFC 1122 4.1.3.5: asked at 127.0.0.2, the reply must come from
    # 127.0.0.2, not from the address the route would pick (127.0.0.1). The
    # client is connected to 127.0.0.2, so the kernel itself drops a reply
    # from anywhere else: receiving one at all is the proof.
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host=host, clock=clock, rate_limit=None)
    )
    port = port_of(socks[0])
    targets = ["127.0.0.2", "127.0.0.1", "127.0.0.3"] if family == socket.AF_INET else ["::1"]
    for i, target in enumerate(targets * 3):
        with trio.socket.socket(family, socket.SOCK_DGRAM) as client:
            await client.connect((target, port))
            await client.send(b"")
            with trio.fail_after(5):
                data, source = await client.recvfrom(100)
            assert source[:2] == (target, port)
            assert decode_time(data, now=FIXED) == FIXED + i


async def test_wildcard_udp_batches_keep_each_reply_source(nursery: trio.Nursery) -> None:
    # A batch mixing destinations: each reply names its own request's
    # destination (the ancillary data is rebuilt when the destination changes).
    clock = Counter()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="0.0.0.0", clock=clock, rate_limit=None)
    )
    port = port_of(socks[0])
    with udp_client("127.0.0.1") as client:
        sent = []
        for i in range(150):
            target = f"127.0.0.{1 + i % 3}"
            sent.append(target)
            await client.sendto(b"", (target, port))
        replies = [await client.recvfrom(100) for _ in range(150)]
    assert [source[0] for _, source in replies] == sent
    assert [decode_time(d, now=FIXED) for d, _ in replies] == [FIXED + i for i in range(150)]


async def test_dual_stack_inherited_socket_answers_ipv4_from_the_address_asked(
    nursery: trio.Nursery,
) -> None:
    # systemd binds [::] without V6ONLY by default: IPv4 clients then arrive
    # as ::ffff:a.b.c.d on an IPv6 socket, and the reply must still leave
    # from the IPv4 address they asked.
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    await nursery.start(
        functools.partial(serve_time_udp, sockets=[sock], clock=lambda: FIXED, rate_limit=None)
    )
    port = port_of(sock)
    for target in ("127.0.0.2", "127.0.0.1"):
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            await client.connect((target, port))
            await client.send(b"")
            with trio.fail_after(5):
                assert await client.recv(100) == encode_time(FIXED)


async def test_sockets_are_served_instead_of_binding(nursery: trio.Nursery) -> None:
    # Already-bound stdlib sockets (systemd's, a supervisor's): the server
    # takes them over, puts a TCP one to listen, and hands out wrappers of
    # the very same sockets.
    stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stream.bind(("127.0.0.1", 0))  # bound, not yet listening
    dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dgram.bind(("127.0.0.1", 0))
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 37, host="192.0.2.1", sockets=[dgram, stream],
                          clock=lambda: FIXED)
    )  # fmt: skip
    assert [li.socket.fileno() for li in listeners] == [stream.fileno()]
    assert [s.fileno() for s in socks] == [dgram.fileno()]
    assert await tcp_read("127.0.0.1", port_of(stream)) == encode_time(FIXED)
    with udp_client() as client:
        await client.sendto(b"", ("127.0.0.1", port_of(dgram)))
        assert await udp_reply_value(client) == FIXED


async def test_sockets_are_closed_when_the_server_stops() -> None:
    stream = socket.socket()
    stream.bind(("127.0.0.1", 0))
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_time_tcp, sockets=[stream]))
            scope.cancel()
    assert stream.fileno() == -1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "udp socket given where tcp"),
        (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), "not bound"),
        (lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), "not an IPv4 or IPv6"),
    ],
)
async def test_bad_sockets_are_refused(make: object, message: str) -> None:
    sock = make()  # type: ignore[operator]
    with sock:
        if sock.family == socket.AF_INET and sock.type == socket.SOCK_DGRAM:
            sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match=message):
            await serve_time_tcp(sockets=[sock])
        assert sock.fileno() != -1  # refused: still the caller's


async def test_a_connected_tcp_socket_is_refused_not_listened_on() -> None:
    # What inetd or systemd's Accept=yes hand over: one accepted connection.
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
    ):
        accepted, _ = listener.accept()
        with accepted:
            with pytest.raises(ValueError, match=r"connected to 127\.0\.0\.1:.*Accept=no"):
                await serve_time_tcp(sockets=[accepted])
            assert accepted.fileno() != -1  # refused: still the caller's
            accepted.sendall(b"ok")  # and still connected
            assert client.recv(2) == b"ok"


async def test_serve_time_sockets_must_match_tcp_and_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
        dgram.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="udp socket given with udp=False"):
            await serve_time(sockets=[dgram], udp=False)
    with pytest.raises(ValueError, match="no socket given"):
        await serve_time(sockets=[])


async def test_allow_list_closes_tcp_from_elsewhere_unanswered(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_timehttp.server")
    stats = _serverstats.ServerStats()
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="0.0.0.0", clock=lambda: FIXED,
                          allow=["127.0.0.1/32", "::1"], stats=stats)
    )  # fmt: skip
    port = port_of(listeners[0].socket)
    for _ in range(3):
        # Source 127.0.0.2: outside the list. Connected, then closed with nothing sent.
        with trio.socket.socket() as other:
            await other.bind(("127.0.0.2", 0))
            await other.connect(("127.0.0.1", port))
            assert await other.recv(100) == b""
    assert await tcp_read("127.0.0.1", port) == encode_time(FIXED)
    assert stats.denied == 3
    assert stats.tcp_answers == 1
    denied = [r.getMessage() for r in caplog.records if "denied" in r.getMessage()]
    # Bounded rate: one line for the three, naming the source as host:port.
    assert len(denied) == 1
    assert "denied tcp connection from 127.0.0.2:" in denied[0]
    assert any("answers only 127.0.0.1/32, ::1/128" in r.getMessage() for r in caplog.records)


async def test_allow_list_drops_udp_from_elsewhere(nursery: trio.Nursery) -> None:
    clock = Counter()
    stats = _serverstats.ServerStats()
    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host="0.0.0.0", clock=clock, rate_limit=None,
                          allow=["127.0.0.1"], stats=stats)
    )  # fmt: skip
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client("127.0.0.2") as other, udp_client("127.0.0.1") as allowed:
        await other.sendto(b"", address)
        await allowed.sendto(b"", address)  # marker: answered
        assert await udp_reply_value(allowed) == FIXED
        assert nothing_queued(other)
    assert clock.calls == 1
    assert (stats.denied, stats.udp_answers) == (1, 1)


@pytest.mark.parametrize("bad", [["10.0.0.0/33"], ["example.com"], [], "127.0.0.1"])
async def test_bad_allow_list_is_refused_before_binding(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="allow"):
        await serve_time(0, host="127.0.0.1", allow=bad)  # type: ignore[arg-type]


async def test_stats_count_every_outcome(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    stats = _serverstats.ServerStats()
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", clock=lambda: FIXED,
                          rate_limit=(1.0, 1), stats=stats)
    )  # fmt: skip
    for _ in range(2):
        assert await tcp_read("127.0.0.1", port_of(listeners[0].socket)) == encode_time(FIXED)
    address = ("127.0.0.1", port_of(socks[0]))
    with udp_client() as client:
        await client.sendto(b"xxxx", address)  # ignored: looks like a reply
        await client.sendto(b"", address)  # answered
        await client.sendto(b"", address)  # over the rate limit
        assert await udp_reply_value(client) == FIXED
        await trio.testing.wait_all_tasks_blocked()
    assert stats.snapshot() == {
        "tcp_answers": 2, "udp_answers": 1, "rate_limited": 1, "denied": 0, "ignored": 1,
        "accept_errors": 0, "send_errors": 0,
    }  # fmt: skip
    assert stats.active_connections == 0


async def test_our_client_reads_a_wildcard_server_at_a_second_address(
    nursery: trio.Nursery,
) -> None:
    # Issue 10.6 as a user met it: query_time believes only a reply from the
    # address it asked, so against a wildcard server at 127.0.0.2 it used to
    # time out. Now the reply comes from 127.0.0.2.
    from trio_timehttp import query_time

    socks = await nursery.start(
        functools.partial(serve_time_udp, 0, host=None, clock=lambda: FIXED + 0.5)
    )
    port = port_of(next(s for s in socks if s.family == socket.AF_INET))
    sample = await query_time(f"127.0.0.2:{port}", udp=True, timeout=5)
    assert sample.port == port
    assert abs(sample.server_time - (FIXED + 0.5)) <= 1.0
