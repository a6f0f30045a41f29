"""Promises of the requester attacked from outside (issue 9, items 1-8 and 11).

Real sockets on loopback and real TLS (trustme); in-process servers started
with ``nursery.start`` on port 0; no sleeps for readiness. Each class of
defect is attacked with several inputs.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_timehttp as t
from trio_timehttp._timing import ExchangeTimes
from trio_timehttp._transport import TLSPlan, TLSTransport, TransportPlan, open_transport

from helpers import (
    EvilConnection,
    Recorder,
    ServerRequest,
    count_open_sockets,
    pool_stats,
    serve_evil,
    serve_http,
)

OK2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


class Withholding(trio.abc.Stream):
    """A TCP stream that can send only the start of its next write (a TLS record cut short)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.cut: int | None = None
        self.held = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if self.cut is not None:
            data, self.held, self.cut = data[: self.cut], data[self.cut :], None
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


class TLSConn:
    """One accepted TLS connection for a script: the TLS stream and its TCP socket."""

    def __init__(self, tls: trio.SSLStream[Withholding]) -> None:
        self.tls = tls
        self.buf = b""

    async def recv_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            try:
                data = await self.tls.receive_some(65536)
            except trio.BrokenResourceError:
                return b""
            if not data:
                return b""
            self.buf += data
        head, sep, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + sep

    async def send(self, data: bytes) -> None:
        await self.tls.send_all(data)

    async def close_notify(self) -> None:
        """A clean TLS close: close_notify, then FIN."""
        await self.tls.aclose()

    def fin_only(self) -> None:
        """A TCP FIN with no close_notify (a truncation attack or a sloppy server)."""
        self.tls.transport_stream.stream.socket.close()

    async def send_partial(self, data: bytes, cut: int = 10) -> None:
        """Send ``data`` as one record of which only ``cut`` bytes leave now."""
        self.tls.transport_stream.cut = cut
        await self.tls.send_all(data)


TLSScript = Callable[[TLSConn], Awaitable[None]]


async def serve_tls(
    server_ctx: ssl.SSLContext,
    scripts: list[TLSScript],
    *,
    task_status: trio.TaskStatus[tuple[int, list[int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """TLS server running ``scripts[i]`` on the i-th connection (the last repeats)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    count = [0]

    async def on_connection(stream: trio.SocketStream) -> None:
        index = count[0]
        count[0] += 1
        tls = trio.SSLStream(Withholding(stream), server_ctx, server_side=True)
        try:
            await tls.do_handshake()
            await scripts[min(index, len(scripts) - 1)](TLSConn(tls))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            stream.socket.close()

    async with trio.open_nursery() as nursery:
        task_status.started((listeners[0].socket.getsockname()[1], count))
        await trio.serve_listeners(on_connection, listeners, handler_nursery=nursery)


def answer(*responses: bytes, then: str = "forever") -> TLSScript:
    """Answer one request per response, then close cleanly, FIN only, or hang."""

    async def script(conn: TLSConn) -> None:
        for response in responses:
            await conn.recv_request()
            await conn.send(response)
        if then == "close_notify":
            await conn.close_notify()
        elif then == "fin":
            conn.fin_only()
        elif then == "push":
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
            await trio.sleep_forever()
        elif then == "partial":  # the start of a record only: OpenSSL would swallow it
            await conn.send_partial(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
            await trio.sleep_forever()
        else:
            await trio.sleep_forever()

    return script


# ---------------------------------------------------------------- 9.1 TLS reuse


@pytest.mark.parametrize("then", ["close_notify", "fin", "push", "partial"])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_tls_idle_connection_closed_or_poisoned_is_never_reused(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext], then: str, method: str
) -> None:
    server_ctx, client_ctx = tls
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
    port, count = await nursery.start(
        serve_tls, server_ctx, [answer(OK2, then=then), answer(good)]
    )
    async with t.Client(ssl_context=client_ctx) as client:
        first = Recorder()
        await client.fetch(f"https://127.0.0.1:{port}/", first)
        assert bytes(first.body) == b"ok"
        # Let the server's close / push reach our socket while the connection is idle.
        await trio.testing.wait_all_tasks_blocked(cushion=0.02)
        second = Recorder()
        r = await client.fetch(f"https://127.0.0.1:{port}/", second, method=method, body=b"x")
        assert r.status_code == 200
        assert bytes(second.body) == b"good"  # never the pushed EVIL
    assert count[0] == 2


async def test_tls_session_tickets_do_not_prevent_reuse(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    assert server_ctx.num_tickets > 0  # TLS 1.3 tickets follow the handshake
    port, count = await nursery.start(serve_tls, server_ctx, [answer(OK2, OK2, OK2)])
    async with t.Client(ssl_context=client_ctx) as client:
        for _ in range(3):
            c = Recorder()
            await client.fetch(f"https://127.0.0.1:{port}/", c)
            assert bytes(c.body) == b"ok"
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)
    assert count[0] == 1


async def serve_tickets_then_answer(
    server_ctx: ssl.SSLContext, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A TLS 1.3 server on memory BIOs that flushes its session tickets right
    after the handshake, then answers one request with ``OK2``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        task_status.started(listeners[0].socket.getsockname()[1])
        stream = await listeners[0].accept()
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = server_ctx.wrap_bio(incoming, outgoing, server_side=True)

    async def pump(op: Callable[[], Any]) -> Any:
        while True:
            try:
                result = op()
            except ssl.SSLWantReadError:
                result = None
            else:
                await stream.send_all(outgoing.read())
                return result
            if outgoing.pending:
                await stream.send_all(outgoing.read())
            incoming.write(await stream.receive_some(65536))

    try:
        await pump(obj.do_handshake)  # the tickets go out with this flush
        request = b""
        while b"\r\n\r\n" not in request:
            request += await pump(lambda: obj.read(65536))
        obj.write(OK2)
        await stream.send_all(outgoing.read())
        await trio.sleep_forever()
    finally:
        stream.socket.close()
        for listener in listeners:
            listener.socket.close()


async def test_tls_idle_check_reads_tickets_through_the_tls_layer(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    # A connection idle right after its handshake has the server's session
    # tickets waiting on the socket: readable, yet fit for reuse.
    server_ctx, client_ctx = tls
    port = await nursery.start(serve_tickets_then_answer, server_ctx)
    transport = await open_transport(
        TransportPlan("127.0.0.1", port, TLSPlan(client_ctx, "127.0.0.1"))
    )
    try:
        assert isinstance(transport, TLSTransport)
        assert transport.socket.version() == "TLSv1.3"
        session = transport.socket.session
        assert session is None or not session.has_ticket
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(transport.socket)  # the tickets are in
        assert transport.fit_for_reuse()
        session = transport.socket.session
        assert session is not None
        assert session.has_ticket  # read through the TLS layer
        assert transport.fit_for_reuse()
        await transport.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while len(got) < len(OK2):
            got += await transport.recv(65536)
        assert got == OK2
    finally:
        transport.close()


# ------------------------------------------------------------ 9.2 truncation


@pytest.mark.parametrize("body", [b"", b"partial", b"x" * 100_000])
async def test_tls_until_close_body_without_close_notify_is_an_error(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path, body: bytes
) -> None:
    server_ctx, client_ctx = tls
    wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    port, _ = await nursery.start(serve_tls, server_ctx, [answer(wire, then="fin")])
    target = tmp_path / "out.bin"
    async with t.Client(ssl_context=client_ctx) as client:
        with pytest.raises(t.ProtocolError, match="close_notify"):
            await client.fetch(f"https://127.0.0.1:{port}/", t.FileConsumer(str(target)))
    assert not target.exists()
    assert os.listdir(tmp_path) == []  # no temporary file left either


@pytest.mark.parametrize("body", [b"", b"complete", b"y" * 100_000])
async def test_tls_until_close_body_with_close_notify_is_complete(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path, body: bytes
) -> None:
    server_ctx, client_ctx = tls
    wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    port, _ = await nursery.start(serve_tls, server_ctx, [answer(wire, then="close_notify")])
    target = tmp_path / "out.bin"
    async with t.Client(ssl_context=client_ctx) as client:
        r = await client.fetch(f"https://127.0.0.1:{port}/", t.FileConsumer(str(target)))
    assert r.status_code == 200
    assert target.read_bytes() == body


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ],
)
async def test_tls_framed_body_then_fin_keeps_its_tolerance(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext], wire: bytes
) -> None:
    server_ctx, client_ctx = tls
    port, _ = await nursery.start(serve_tls, server_ctx, [answer(wire, then="fin")])
    async with t.Client(ssl_context=client_ctx) as client:
        c = Recorder()
        r = await client.fetch(f"https://127.0.0.1:{port}/", c)
    assert (r.status_code, bytes(c.body)) == (200, b"hello")


async def test_tls_content_length_cut_by_fin_is_truncated(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello"
    port, _ = await nursery.start(serve_tls, server_ctx, [answer(wire, then="fin")])
    async with t.Client(ssl_context=client_ctx) as client:
        with pytest.raises(t.ProtocolError, match="after 5 of 50 body bytes"):
            await client.fetch(f"https://127.0.0.1:{port}/", Recorder())


# ------------------------------------------- 9.3 early response during upload


def early(response: bytes, end: str) -> Callable[[EvilConnection], Awaitable[None]]:
    async def script(conn: EvilConnection) -> None:
        await conn.recv_request()
        await conn.send(response)
        if end == "reset":
            conn.reset()
        else:
            conn.close()  # unread upload in the buffer: the kernel sends a reset

    return script


EARLY = [
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
    b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n8\r\ntoo big!\r\n0\r\n\r\n",
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\ntoo big!",
]


@pytest.mark.parametrize("end", ["close", "reset"])
@pytest.mark.parametrize("response", EARLY)
async def test_early_response_during_upload_is_returned(
    nursery: trio.Nursery, response: bytes, end: str
) -> None:
    evil = await nursery.start(serve_evil, early(response, end))
    status = int(response.split()[1])
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()
    c = Recorder()
    r = await t.fetch(evil.url("/upload"), c, method="PUT", body=b"u" * 30_000_000, timeout=10)
    assert r.status_code == status
    assert bytes(c.body) == b"too big!"
    assert c.closed == 1
    await trio.testing.wait_all_tasks_blocked()
    assert count_open_sockets() <= before + evil.open


async def test_early_response_over_tls(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls

    async def script(conn: TLSConn) -> None:
        await conn.recv_request()
        await conn.send(EARLY[0])
        conn.fin_only()  # unread upload: the kernel resets

    port, _ = await nursery.start(serve_tls, server_ctx, [script])
    async with t.Client(ssl_context=client_ctx) as client:
        c = Recorder()
        r = await client.fetch(
            f"https://127.0.0.1:{port}/", c, method="POST", body=b"u" * 30_000_000, timeout=10
        )
    assert (r.status_code, bytes(c.body)) == (413, b"too big!")


async def test_server_gone_before_any_response_is_still_an_error(nursery: trio.Nursery) -> None:
    async def script(conn: EvilConnection) -> None:
        await conn.recv_request()
        conn.reset()

    evil = await nursery.start(serve_evil, script)
    c = Recorder()
    with pytest.raises(t.ProtocolError, match=r"broke|closed the connection"):
        await t.fetch(evil.url("/"), c, method="POST", body=b"u" * 30_000_000, timeout=10)
    assert c.closed == 1


# ------------------------------------------------- 9.4, 9.5, 9.7 through sockets


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        b"\x00\x00\x12\x04\x00",
    ],
)
@pytest.mark.parametrize("upgrade", ["websocket", "h2c"])
async def test_101_after_an_upgrade_request(
    nursery: trio.Nursery, wire: bytes, upgrade: str
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("send", wire), ("forever",)])
    c = Recorder()
    headers = {"Upgrade": upgrade, "Connection": "Upgrade"}
    with pytest.raises(t.ProtocolError, match="switched protocols") as info:
        await t.fetch(evil.url(), c, headers=headers, timeout=5)
    assert not isinstance(info.value.__cause__, AssertionError)
    assert c.closed == 1


NON_HTTP = [
    b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nData\n",
    b"220 smtp.example ESMTP\r\n",
    b"* OK IMAP4rev1 ready\r\n",
]


@pytest.mark.parametrize("wire", NON_HTTP)
async def test_non_http_peer_that_then_waits_fails_at_once(
    nursery: trio.Nursery, wire: bytes
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("send", wire), ("forever",)])
    c = Recorder()
    start = trio.current_time()
    with pytest.raises(t.ProtocolError, match="malformed response head"):
        await t.fetch(evil.url(), c, timeout=20)
    assert trio.current_time() - start < 5  # not the deadline
    assert c.closed == 1


LIBRARY_WORDS = ("h11", "event type", "role=", "SEND_RESPONSE", "_SWITCH", "NEED_DATA")


@pytest.mark.parametrize(
    "script",
    [
        [("recv",), ("close",)],
        [("recv",), ("send", b"HTTP/1.1 200 OK\r\nContent-Le"), ("close",)],
        [("recv",), ("send", b"HTTP/1.1 101 Switching Protocols\r\n\r\n")],
        [("recv",), ("send", b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n")],
        [("recv",), ("send", b"HTTP/1.1 100 Continue\r\n\r\n"), ("close",)],
        [("recv",), ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"), ("reset",)],
    ],
)
async def test_error_messages_say_what_the_server_did(
    nursery: trio.Nursery, script: list[Any]
) -> None:
    evil = await nursery.start(serve_evil, script)
    with pytest.raises(t.ProtocolError) as info:
        await t.fetch(evil.url(), Recorder(), timeout=5)
    text = str(info.value)
    assert f"127.0.0.1:{evil.port}" in text
    assert not any(word in text for word in LIBRARY_WORDS), text


# --------------------------------------------- 9.8 Client default credentials


def echo_headers(req: ServerRequest) -> Any:
    if req.target.startswith("/go"):
        return 302, [("location", req.target.split("?to=", 1)[1])], b""
    return 200, [], "\n".join(f"{k}: {v}" for k, v in req.headers).encode()


@pytest.mark.parametrize(
    "defaults",
    [
        {"Authorization": "Bearer secret", "X-Keep": "k"},
        {"Cookie": "sid=secret", "X-Keep": "k"},
        {"Proxy-Authorization": "Basic c2VjcmV0", "X-Keep": "k"},
    ],
)
async def test_client_default_credentials_do_not_cross_origins(
    nursery: trio.Nursery, defaults: dict[str, str]
) -> None:
    a = await nursery.start(serve_http, echo_headers)
    b = await nursery.start(serve_http, echo_headers)  # another port: another origin
    name = next(k for k in defaults if k != "X-Keep").lower()
    async with t.Client(headers=defaults) as client:
        same = Recorder()
        await client.fetch(a.url("/go?to=" + a.url("/final")), t.RedirectingConsumer(same))
        other = Recorder()
        await client.fetch(a.url("/go?to=" + b.url("/final")), t.RedirectingConsumer(other))
        direct = Recorder()
        await client.fetch(b.url("/again"), direct)  # a new fetch: defaults apply again
    assert f"{name}: " in bytes(same.body).decode()
    assert f"{name}: " not in bytes(other.body).decode()
    assert "x-keep: k" in bytes(other.body).decode()
    assert f"{name}: " in bytes(direct.body).decode()


async def test_request_headers_override_client_defaults(nursery: trio.Nursery) -> None:
    a = await nursery.start(serve_http, echo_headers)
    async with t.Client(headers={"Authorization": "default"}) as client:
        c = Recorder()
        r = await client.fetch(a.url("/x"), c, headers={"authorization": "mine"})
    lines = bytes(c.body).decode().splitlines()
    assert "authorization: mine" in lines
    assert "authorization: default" not in lines
    assert r.request.headers["authorization"] == "mine"


# ---------------------------------------------------------- 9.11 caller's Host


@pytest.mark.parametrize("host", ["vhost.example", "vhost.example:8080", "127.0.0.1"])
async def test_callers_host_is_honoured_then_recomputed(nursery: trio.Nursery, host: str) -> None:
    a = await nursery.start(serve_http, echo_headers)
    c = Recorder()
    await t.fetch(a.url("/x"), c, headers={"Host": host})
    assert bytes(c.body).decode().splitlines().count(f"host: {host}") == 1
    follow = Recorder()
    await t.fetch(a.url("/go?to=/final"), t.RedirectingConsumer(follow), headers={"Host": host})
    assert f"host: 127.0.0.1:{a.port}" in bytes(follow.body).decode().splitlines()


# ------------------------------------------- http_complete and ExchangeTimes


class Completion(Recorder):
    def http_complete(self) -> None:
        self.events.append("complete")


@pytest.mark.parametrize(
    ("wire", "complete"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", True),  # a plain-TCP FIN ends it cleanly
        (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", False),
    ],
)
async def test_http_complete_only_after_a_proven_body(
    nursery: trio.Nursery, wire: bytes, complete: bool
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("send", wire), ("close",)])
    c = Completion()
    try:
        await t.fetch(evil.url(), c, timeout=5)
    except t.ProtocolError:
        assert not complete
    assert ("complete" in c.events) is complete
    if complete:
        assert c.events[-2:] == ["complete", "close"]
    assert c.closed == 1


async def test_http_complete_goes_through_redirecting_consumer(nursery: trio.Nursery) -> None:
    a = await nursery.start(serve_http, echo_headers)
    inner = Completion()
    await t.fetch(a.url("/go?to=/final"), t.RedirectingConsumer(inner))
    assert inner.events[-2:] == ["complete", "close"]
    assert inner.events.count("complete") == 1


async def test_fetch_timed_fills_exchange_times(nursery: trio.Nursery) -> None:
    accepted: list[float] = []

    async def script(conn: EvilConnection) -> None:
        accepted.append(time.time())
        for _ in range(2):
            await conn.recv_request()
            await conn.send(OK2)
        await trio.sleep_forever()

    evil = await nursery.start(serve_evil, script)
    async with t.Client() as client:
        first = ExchangeTimes()
        before = time.time()
        await client._fetch_timed(evil.url(), Recorder(), times=first)
        second = ExchangeTimes()
        between = time.time()
        await client._fetch_timed(evil.url(), Recorder(), method="HEAD", times=second)
    assert before <= first.start <= accepted[0]  # taken before connect
    assert first.start <= first.sent <= first.head
    assert not first.reused
    assert second.reused
    assert between <= second.start <= second.sent <= second.head


async def test_pool_stats_follow_reuse(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http)
    async with t.Client(max_connections=5) as client:
        async with trio.open_nursery() as inner:
            for i in range(3):
                inner.start_soon(client.fetch, srv.url(f"/{i}"), Recorder())
        stats = pool_stats(client)
        assert stats.open == stats.idle
        assert 1 <= stats.idle <= 3
    assert pool_stats(client) == (0, 0)


_MODULES = sorted(p.stem for p in Path(t.__file__).parent.glob("_*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", [m for m in _MODULES if m != "_fastsock"])
def test_no_module_uses_a_private_attribute_of_trio_h11_or_cpython(module: str) -> None:
    # Trio's socket is reached through its public detach(); h11 only
    # serialises requests through its public API; heads are parsed here.
    # The one exception is _fastsock: the time server's two CPython
    # details, each looked up once with the public route as fallback.
    source = (Path(t.__file__).parent / f"{module}.py").read_text()
    for private in ("._sock", "_socket.", "socket._", "_full_items", "_switch_upgrade", "._is_"):
        assert private not in source, private
    assert "import _socket" not in source


async def test_leaving_a_stream_early_drains_the_rest_despite_a_raised_low_water_mark(
    nursery: trio.Nursery,
) -> None:
    # A bulk burst raises SO_RCVLOWAT for the body's reads; the caller stops
    # reading with 34,464 bytes left, which come only after it left the block.
    # The drain must wake for them (the mark of 65,536 left from the body
    # would wait forever) and the connection be reused. (Over TLS the same
    # rule applies, in the same _LowWater: test_transport.py.)
    size, first = 200_000, 165_536
    left = trio.Event()
    served: list[int] = []

    async def server(stream: trio.abc.Stream) -> None:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(65536)
                if not data:
                    return
                head += data
            served.append(1)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            if len(served) == 1:
                await stream.send_all(b"a" * 100_000)
                await trio.sleep(0.05)  # a bulk burst, then a pause: the mark goes up
                await stream.send_all(b"a" * (first - 100_000))
                # The tail once the caller has left (or, should its reads wait
                # for the tail, a little later: the scenario is the drain's).
                with trio.move_on_after(0.5):
                    await left.wait()
                await stream.send_all(b"b" * (size - first))
            else:
                await stream.send_all(b"c" * size)

    async def on_connection(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await server(stream)

    (listener,) = await nursery.start(partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1"))
    url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/"
    async with t.Client(timeout=10) as client:
        got = 0
        async with client.stream(url) as response:
            async for piece in response.aiter_bytes():
                got += len(piece)
                if got >= first:
                    left.set()
                    break
        recorder = Recorder()
        await client.fetch(url, recorder)
        assert recorder.body == b"c" * size
        assert pool_stats(client).open == 1  # the drained connection was reused
