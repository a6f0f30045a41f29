"""The transport and pool seams on their own: real sockets, real TLS, memory streams."""

from __future__ import annotations

import contextlib
import socket
import ssl
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from trio_timehttp._exchange import Exchange, Hooks
from trio_timehttp._headreader import HeadLimits, HeadMemo
from trio_timehttp._models import Request
from trio_timehttp._pool import Pool
from trio_timehttp._prepare import Preparer
from trio_timehttp._transport import (
    RCVLOWAT,
    HandshakeError,
    SocketTransport,
    StreamTransport,
    TLSPlan,
    TLSTransport,
    Transport,
    TransportPlan,
    _LowWater,
    open_transport,
)

from helpers import Recorder, count_open_sockets


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_low_water_mark_rule_on_a_real_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        mark = _LowWater(a, slack=100)

        def kernel() -> int:
            return a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

        mark.before_wait(1_000_000)  # no burst yet: the body may be dripping
        assert kernel() == 1
        mark.read(70_000)  # a bulk burst
        mark.before_wait(1_000_000)
        assert kernel() == RCVLOWAT
        mark.before_wait(5_000)  # never more than is still missing (less the slack)
        assert kernel() == 4_900
        mark.before_wait(50)
        assert kernel() == 1
        mark.reset()
        assert kernel() == 1


def test_an_unknown_need_puts_the_mark_back_to_one() -> None:
    # A drain or a chunked body does not know how much is left: a mark raised
    # by an earlier wait must not make the kernel hold back the last bytes.
    a, b = socket.socketpair()
    with a, b:
        mark = _LowWater(a)
        mark.read(70_000)
        mark.before_wait(1_000_000)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == RCVLOWAT
        mark.before_wait(0)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


async def test_tunnel_runs_on_the_plain_connection_before_tls(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    # A CONNECT-like step: the "proxy" answers on the raw connection, then the
    # origin's TLS runs inside it. This is the seam a proxy tunnel uses.
    server_ctx, client_ctx = tls
    seen: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        seen.append(await stream.receive_some(100))
        await stream.send_all(b"GO\r\n")
        tls_stream = trio.SSLStream(stream, server_ctx, server_side=True)
        await tls_stream.do_handshake()
        seen.append(await tls_stream.receive_some(100))
        await tls_stream.send_all(b"inside")
        await trio.sleep_forever()

    (listener,) = await nursery.start(partial(trio.serve_tcp, server, 0, host="127.0.0.1"))
    port = listener.socket.getsockname()[1]

    async def tunnel(plain: Transport) -> None:
        await plain.send_all(b"OPEN origin:443\r\n")
        assert await plain.recv(100) == b"GO\r\n"

    transport = await open_transport(
        TransportPlan("127.0.0.1", port, TLSPlan(client_ctx, "127.0.0.1"), tunnel)
    )
    try:
        assert isinstance(transport, TLSTransport)
        await transport.send_all(b"hello")
        assert await transport.recv(100) == b"inside"
    finally:
        transport.close()
    assert seen == [b"OPEN origin:443\r\n", b"hello"]


async def test_a_failing_tunnel_or_handshake_leaves_no_socket(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _ = tls

    async def server(stream: trio.SocketStream) -> None:
        tls_stream = trio.SSLStream(stream, server_ctx, server_side=True)
        with contextlib.suppress(trio.BrokenResourceError):
            await tls_stream.do_handshake()

    (listener,) = await nursery.start(partial(trio.serve_tcp, server, 0, host="127.0.0.1"))
    port = listener.socket.getsockname()[1]
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()

    async def refuse(plain: Transport) -> None:
        raise LookupError("the proxy said no")

    with pytest.raises(LookupError):
        await open_transport(TransportPlan("127.0.0.1", port, None, refuse))
    untrusted = ssl.create_default_context()  # the test CA is not trusted
    with pytest.raises(HandshakeError, match="certificate verify failed"):
        await open_transport(TransportPlan("127.0.0.1", port, TLSPlan(untrusted, "127.0.0.1")))
    await trio.testing.wait_all_tasks_blocked()
    assert count_open_sockets() <= before


async def test_an_exchange_over_a_memory_stream() -> None:
    # The exchange phases need only a Transport: here trio's in-memory streams.
    client_stream, server_stream = trio.testing.memory_stream_pair()
    pool = Pool(2, 5.0)
    memo = HeadMemo(HeadLimits())
    prepared = Preparer().prepare(Request("GET", "http://example.test/x"))

    async def connect() -> Transport:
        return StreamTransport(client_stream)

    async def server() -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await server_stream.receive_some(1000)
        assert head.startswith(b"GET /x HTTP/1.1\r\nhost: example.test\r\n")
        await server_stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
        await server_stream.send_all(b"lo")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        conn = await pool.checkout("key", connect)
        ex = Exchange(conn, prepared, memo, None)
        await ex.send_request()
        head = await ex.receive_head()
        consumer = Recorder()

        await ex.stream_body(Hooks(consumer))
        ex.release(pool, True)
    assert head.status == 200
    assert bytes(consumer.body) == b"hello"
    assert ex.complete
    # A stream cannot be checked while idle, so it is never kept.
    assert pool.stats() == (0, 0)


async def test_pool_bound_expiry_and_eviction(autojump_clock: trio.abc.Clock) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    port = listener.getsockname()[1]
    pool = Pool(2, keepalive_expiry=5.0)

    async def connect() -> Transport:
        sock = socket.create_connection(("127.0.0.1", port))
        accepted.append(listener.accept()[0])
        return SocketTransport(sock)

    try:
        a = await pool.checkout("a", connect)
        b = await pool.checkout("b", connect)
        assert pool.stats() == (2, 0)
        pool.put(a)
        pool.put(b)
        assert pool.stats() == (2, 2)
        again = await pool.checkout("a", connect)  # quiet and fresh: reused
        assert again is a
        assert again.reused
        pool.put(again)
        # At the bound, a new key evicts the oldest idle connection of another key.
        c = await pool.checkout("c", connect)
        assert pool.stats() == (2, 1)
        c.close()
        assert pool.stats() == (1, 1)
        # Past keepalive_expiry nothing idle is reused: it is closed instead.
        await trio.sleep(10)
        fresh = await pool.checkout("a", connect)
        assert not fresh.reused
        assert pool.stats() == (1, 0)
        fresh.close()
        pool.close_all()
        assert pool.stats() == (0, 0)
    finally:
        listener.close()
        for s in accepted:
            s.close()


async def test_recv_answer_on_plain_tcp_waits_first_and_misses_nothing() -> None:
    # The first read of an answer waits before it reads: bytes already in the
    # kernel are returned at once, later ones wake it, and it is a checkpoint
    # either way (a cancel point even when the bytes are there).
    a, b = socket.socketpair()
    transport = SocketTransport(a)
    with b:
        b.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        assert await transport.recv_answer(65536) == b"HTTP/1.1 200 OK\r\n\r\n"

        async def answer_later() -> None:
            await trio.testing.wait_all_tasks_blocked()  # recv_answer is waiting
            b.sendall(b"later")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_later)
            assert await transport.recv_answer(65536) == b"later"

        b.sendall(b"ready")
        with trio.CancelScope() as scope:
            scope.cancel()
            await transport.recv_answer(65536)
        assert scope.cancelled_caught
        assert await transport.recv_answer(65536) == b"ready"  # nothing was lost
        b.close()
        assert await transport.recv_answer(65536) == b""
        assert transport.clean_eof
    transport.close()


async def test_idle_check_follows_the_socket_across_checks() -> None:
    # One poll object per socket serves every idle check: each check still
    # sees the socket as it is now (quiet, data, quiet again, the peer's close).
    a, b = socket.socketpair()
    transport = SocketTransport(a)
    with b:
        assert transport.fit_for_reuse()
        assert transport.fit_for_reuse()
        b.sendall(b"x")
        assert not transport.fit_for_reuse()
        assert await transport.recv(10) == b"x"
        assert transport.fit_for_reuse()
        b.shutdown(socket.SHUT_WR)
        assert not transport.fit_for_reuse()
    transport.close()
    assert not transport.fit_for_reuse()


async def test_tls_idle_check_across_checks_on_one_connection(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        sock, _ = listener.accept()
        accepted.append(server_ctx.wrap_socket(sock, server_side=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, accept))
        plan = TransportPlan("127.0.0.1", port, TLSPlan(client_ctx, "127.0.0.1"))
        transport = await open_transport(plan)
    listener.close()
    server = accepted[0]
    try:
        assert isinstance(transport, TLSTransport)
        assert transport.fit_for_reuse()  # session tickets, if any, are not data
        server.sendall(b"pushed")
        await trio.lowlevel.wait_readable(transport.socket)  # the record is in
        assert not transport.fit_for_reuse()
    finally:
        server.close()
        transport.close()


class _TwoAddresses(trio.abc.HostnameResolver):
    """Resolves every name to 127.0.0.1 and 127.0.0.2 (Trio's public resolver hook)."""

    async def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:  # fmt: skip
        tcp = socket.SOCK_STREAM
        return [(socket.AF_INET, tcp, 6, "", (a, int(port))) for a in ("127.0.0.1", "127.0.0.2")]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:  # pragma: no cover
        raise NotImplementedError


class _Pending(trio.socket.SocketType):
    """A socket whose connect never completes (a SYN nobody answers); Trio's tests fake so."""

    def __init__(self) -> None:
        self.closed = False

    def setsockopt(self, *args: Any) -> None:
        pass

    async def connect(self, address: Any) -> None:
        await trio.sleep_forever()

    def close(self) -> None:
        self.closed = True


class _PendingFactory(trio.abc.SocketFactory):
    def __init__(self) -> None:
        self.made: list[_Pending] = []

    def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
        sock = _Pending()
        self.made.append(sock)
        return sock


async def test_a_cancel_while_two_addresses_are_tried_is_one_plain_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Two connection attempts pending (Happy Eyeballs starts the second after
    # 0.25 s; sockets from Trio's public factory hook), then an outer cancel:
    # Trio's nursery would raise a group of two Cancelled; the caller must see
    # one plain Cancelled.
    factory = _PendingFactory()
    trio.socket.set_custom_hostname_resolver(_TwoAddresses())
    trio.socket.set_custom_socket_factory(factory)
    seen: list[type[BaseException]] = []
    try:
        with trio.move_on_after(0.4) as scope:
            try:
                await open_transport(TransportPlan("two.test", 80))
            except BaseException as exc:
                seen.append(type(exc))
                raise
    finally:
        trio.socket.set_custom_hostname_resolver(None)
        trio.socket.set_custom_socket_factory(None)
    assert scope.cancelled_caught
    assert seen == [trio.Cancelled]
    assert len(factory.made) == 2  # both attempts had started
    assert all(sock.closed for sock in factory.made)
