"""An answer that comes while the request body is still being sent (RFC 9112 section 9.5).

"A client sending a message body SHOULD monitor the network connection for
an error response while it is transmitting the request." The servers here
are raw trio sockets (plain and trustme TLS) that answer after the head and
then stop reading without closing: the upload blocks, and the answer must
still be delivered (not a Timeout), on a connection that is not reused.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

import trio_timehttp as t

from helpers import Recorder, pool_stats

BIG = 30_000_000  # far more than loopback socket buffers hold

Serve = Callable[[trio.abc.Stream, bytes], Awaitable[None]]


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


class RawServer:
    """Reads each connection's request head, then runs ``serve(stream, rest)``."""

    def __init__(self, serve: Serve, ssl_context: ssl.SSLContext | None) -> None:
        self.serve = serve
        self.ssl_context = ssl_context
        self.connections = 0
        self.port = 0
        self.done = trio.Event()  # set at the end: servers that hold the socket let go

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._on_connection, listeners)

    async def _on_connection(self, tcp: trio.SocketStream) -> None:
        self.connections += 1
        stream: trio.abc.Stream = tcp
        if self.ssl_context is not None:
            stream = trio.SSLStream(tcp, self.ssl_context, server_side=True)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            await self.serve(stream, buf.split(b"\r\n\r\n", 1)[1])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()


def holding(reply: bytes) -> Callable[[RawServer], Serve]:
    """Answer ``reply`` at once, then neither read nor close until the test ends."""

    def make(server: RawServer) -> Serve:
        async def serve(stream: trio.abc.Stream, rest: bytes) -> None:
            await stream.send_all(reply)
            await server.done.wait()

        return serve

    return make


async def _unset(stream: trio.abc.Stream, rest: bytes) -> None:  # replaced by start()
    raise AssertionError


async def start(
    nursery: trio.Nursery, make: Callable[[RawServer], Serve], ctx: ssl.SSLContext | None
) -> RawServer:
    server = RawServer(_unset, ctx)
    server.serve = make(server)
    await nursery.start(server.run)
    return server


async def chunks(n: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


TOO_BIG = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig"


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_early_413_is_delivered_while_the_upload_blocks(
    nursery: trio.Nursery,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    scheme: str,
    streamed: bool,
) -> None:
    server_ctx, client_ctx = tls
    srv = await start(nursery, holding(TOO_BIG), server_ctx if scheme == "https" else None)
    stream = chunks(30)
    body: object = stream if streamed else b"x" * BIG
    async with (
        contextlib.aclosing(stream),
        t.Client(ssl_context=client_ctx, timeout=None) as client,
    ):
        c = Recorder()
        with trio.fail_after(10):  # the old behaviour: blocked until the timeout
            r = await client.fetch(srv.url(), c, method="POST", body=body)  # type: ignore[arg-type]
        assert r.status_code == 413
        assert bytes(c.body) == b"big"
        assert c.events == [("header", 413), "close"]
        assert pool_stats(client).open == 0  # the upload was cut short: never reused
    srv.done.set()


async def test_early_413_then_next_request_uses_a_new_connection(nursery: trio.Nursery) -> None:
    srv = await start(nursery, holding(TOO_BIG), None)
    async with t.Client(timeout=None) as client:
        with trio.fail_after(10):
            for _ in range(2):
                r = await client.fetch(srv.url(), Recorder(), method="POST", body=b"x" * BIG)
                assert r.status_code == 413
    assert srv.connections == 2
    srv.done.set()


async def test_garbage_answer_during_upload_is_a_protocol_error(nursery: trio.Nursery) -> None:
    srv = await start(nursery, holding(b"SSH-2.0-OpenSSH_9.6\r\n"), None)
    c = Recorder()
    with trio.fail_after(10), pytest.raises(t.ProtocolError, match="status line"):
        await t.fetch(srv.url(), c, method="POST", body=b"x" * BIG, timeout=None)
    assert c.closed == 1
    srv.done.set()


def reading(reply_first: bytes, reply_last: bytes) -> Callable[[RawServer], Serve]:
    """Send ``reply_first`` at once, read the whole body, then send ``reply_last``."""

    def make(server: RawServer) -> Serve:
        async def serve(stream: trio.abc.Stream, rest: bytes) -> None:
            await stream.send_all(reply_first)
            got = len(rest)
            while got < BIG:
                data = await stream.receive_some(1 << 20)
                if not data:
                    return
                got += len(data)
            server.received = got  # type: ignore[attr-defined]
            await stream.send_all(reply_last)
            await server.done.wait()

        return serve

    return make


async def test_unsolicited_100_continue_does_not_stop_the_upload(nursery: trio.Nursery) -> None:
    srv = await start(
        nursery,
        reading(
            b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ),
        None,
    )
    c = Recorder()
    with trio.fail_after(20):
        r = await t.fetch(srv.url(), c, method="POST", body=b"x" * BIG, timeout=None)
    assert r.status_code == 200
    assert bytes(c.body) == b"ok"
    assert srv.received == BIG  # type: ignore[attr-defined]
    srv.done.set()


async def test_early_2xx_head_keeps_the_upload_going(nursery: trio.Nursery) -> None:
    # A 2xx before the body was read: the server may still want it all.
    srv = await start(
        nursery, reading(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"done"), None
    )
    c = Recorder()
    with trio.fail_after(20):
        r = await t.fetch(srv.url(), c, method="PUT", body=b"x" * BIG, timeout=None)
    assert r.status_code == 200
    assert bytes(c.body) == b"done"
    assert srv.received == BIG  # type: ignore[attr-defined]
    srv.done.set()


async def test_close_while_uploading_without_an_answer_is_an_error(nursery: trio.Nursery) -> None:
    def make(server: RawServer) -> Serve:
        async def serve(stream: trio.abc.Stream, rest: bytes) -> None:
            await trio.lowlevel.checkpoint()  # returns: the server closes unread

        return serve

    srv = await start(nursery, make, None)
    c = Recorder()
    with trio.fail_after(10), pytest.raises(t.ProtocolError):
        await t.fetch(srv.url(), c, method="POST", body=b"x" * BIG, timeout=None)
    assert c.closed == 1
