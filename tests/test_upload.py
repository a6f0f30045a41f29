"""Request bodies on real sockets: Content-Length or chunked, streamed with
backpressure (memory flat), Expect: 100-continue, a body iterator that raises,
a server that stops reading, and redirects that would need a body again."""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator, Iterator

import h11
import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_timehttp import (
    BytesConsumer,
    Client,
    ProtocolError,
    RedirectError,
    RedirectingConsumer,
    Timeout,
    fetch,
)

from helpers import (
    EvilConnection,
    Recorder,
    ServerRequest,
    count_open_sockets,
    serve_evil,
    serve_http,
)

MiB = 1 << 20


def echo(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    framing = request.header("content-length") or f"chunked={request.header('transfer-encoding')}"
    return 200, [("x-framing", framing)], request.body


async def upload(body: object, **kw: object) -> tuple[str, bytes]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, echo)
        sink = BytesConsumer()
        response = await fetch(server.url("/up"), sink, method="POST", body=body, **kw)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    return response.headers["x-framing"], sink.body


async def test_bytes_and_lists_go_with_content_length() -> None:
    assert await upload(b"hello") == ("5", b"hello")
    assert await upload(bytearray(b"hello")) == ("5", b"hello")
    assert await upload([b"he", b"llo"]) == ("5", b"hello")


async def test_iterables_go_chunked() -> None:
    def gen() -> Iterator[bytes]:
        yield b"hel"
        yield b""
        yield b"lo"

    async def agen() -> AsyncIterator[bytes]:
        yield b"hel"
        await trio.lowlevel.checkpoint()
        yield b"lo"

    assert await upload(gen()) == ("chunked=chunked", b"hello")
    assert await upload(agen()) == ("chunked=chunked", b"hello")
    assert await upload(iter([])) == ("chunked=chunked", b"")


async def test_a_callers_content_length_frames_an_iterator() -> None:
    assert await upload(iter([b"hel", b"lo"]), headers={"Content-Length": "5"}) == ("5", b"hello")


async def test_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "payload"
    data = os.urandom(300_000)
    path.write_bytes(data)
    with path.open("rb") as f:
        f.seek(1000)
        assert await upload(f) == (str(len(data) - 1000), data[1000:])
    r, w = os.pipe()
    os.write(w, b"from a pipe")
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        assert await upload(pipe) == ("chunked=chunked", b"from a pipe")


async def test_str_body_is_refused_before_any_io(refused_port: int) -> None:
    consumer = Recorder()
    url = f"http://127.0.0.1:{refused_port}/"
    with pytest.raises(TypeError, match="encode it first"):
        await fetch(url, consumer, method="POST", body="text")  # type: ignore[arg-type]
    assert consumer.events == ["close"]


async def test_a_body_iterator_that_raises_propagates_unchanged() -> None:
    class Boom(Exception):
        pass

    def gen() -> Iterator[bytes]:
        yield b"x" * 1000
        raise Boom("the caller's own error")

    before = count_open_sockets()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, echo)
        consumer = Recorder()
        with pytest.raises(Boom, match="the caller's own error"):
            await fetch(server.url(), consumer, method="POST", body=gen())
        assert consumer.closed == 1
        nursery.cancel_scope.cancel()
    assert count_open_sockets() == before


async def test_a_file_read_error_is_not_taken_for_a_send_failure() -> None:
    class Broken:
        def read(self, n: int) -> bytes:
            raise OSError(5, "Input/output error")

        def seekable(self) -> bool:
            return False

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, echo)
        with pytest.raises(OSError, match="Input/output error"):
            await fetch(server.url(), Recorder(), method="PUT", body=Broken(), timeout=5)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# Redirects and replay


def redirect_then_echo(status: int) -> object:
    def handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.target == "/start":
            return status, [("location", "/end")], b""
        return echo(request)

    return handler


@pytest.mark.parametrize("status", [307, 308])
async def test_307_308_resend_a_replayable_body(status: int, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"file body")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_then_echo(status))
        for body in (b"bytes body", [b"list ", b"body"]):
            sink = BytesConsumer()
            await fetch(server.url("/start"), RedirectingConsumer(sink), method="POST", body=body)
            assert sink.body == b"".join(body) if isinstance(body, list) else body
        with path.open("rb") as f:
            sink = BytesConsumer()
            await fetch(server.url("/start"), RedirectingConsumer(sink), method="PUT", body=f)
            assert sink.body == b"file body"
        assert [r.body for r in server.requests if r.target == "/end"] == [
            b"bytes body",
            b"list body",
            b"file body",
        ]
        nursery.cancel_scope.cancel()


async def test_307_with_a_spent_iterator_is_a_redirect_error_never_an_empty_body() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_then_echo(307))
        consumer = Recorder()
        with pytest.raises(RedirectError, match="cannot send the request body again"):
            await fetch(
                server.url("/start"),
                RedirectingConsumer(consumer),
                method="POST",
                body=iter([b"once"]),
            )
        assert consumer.closed == 1
        assert [r.target for r in server.requests] == ["/start"]  # /end never asked
        nursery.cancel_scope.cancel()


async def test_303_drops_an_iterator_body() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_then_echo(303))
        sink = BytesConsumer()
        await fetch(
            server.url("/start"), RedirectingConsumer(sink), method="POST", body=iter([b"x"])
        )
        assert server.requests[-1].method == "GET"
        assert server.requests[-1].body == b""
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# Expect: 100-continue


def head_and_rest(conn: EvilConnection) -> tuple[bytes, bytes]:
    return bytes(conn.received), b""


async def read_body(conn: EvilConnection, length: int) -> bytes:
    while len(conn.received) < length:
        data = await conn.stream.receive_some(65536)
        if not data:
            break
        conn.received += data
    return bytes(conn.received)


async def test_expect_continue_waits_for_100(autojump_clock: trio.testing.MockClock) -> None:
    heads: list[bytes] = []

    async def script(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        assert not conn.received  # the body waits for our 100
        await trio.sleep(0.5)
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await read_body(conn, 5)
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, script)
        sink = BytesConsumer()
        start = trio.current_time()
        await fetch(server.url(), sink, method="PUT", body=b"hello", expect_continue=True)
        assert trio.current_time() - start == pytest.approx(0.5)
        assert sink.body == b"hello"
        assert b"expect: 100-continue" in heads[0].lower()
        nursery.cancel_scope.cancel()


async def test_expect_continue_sends_after_a_second_of_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, echo)  # h11 never sends 100 by itself
        sink = BytesConsumer()
        start = trio.current_time()
        await fetch(server.url(), sink, method="PUT", body=b"hello", expect_continue=True)
        assert trio.current_time() - start == pytest.approx(1.0)
        assert sink.body == b"hello"
        nursery.cancel_scope.cancel()


async def test_expect_continue_final_answer_first_holds_the_body_and_the_connection() -> None:
    received: list[bytes] = []

    async def script(conn: EvilConnection) -> None:
        await conn.recv_request()
        await conn.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
        with trio.move_on_after(0.5):  # anything the client sends now is the body
            data = await conn.stream.receive_some(65536)
            received.append(data)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, script)
        async with Client() as client:
            for _ in range(2):
                sink = BytesConsumer()
                response = await client.fetch(
                    server.url(), sink, method="PUT", body=b"secret" * 1000, expect_continue=True
                )
                assert response.status_code == 401
                assert sink.body == b"nope"
        assert server.connections == 2  # not reused: the server may want the body yet
        assert b"secret" not in b"".join(received)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# Backpressure, a server that stops reading, memory


async def test_a_server_that_stops_reading_cannot_outlast_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        while True:
            yield chunk

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, [("recv",), ("forever",)])
        consumer = Recorder()
        start = trio.current_time()
        with pytest.raises(Timeout):
            await fetch(server.url(), consumer, method="POST", body=endless(), timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
        assert consumer.closed == 1
        nursery.cancel_scope.cancel()


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def counting_sink(
    task_status: trio.TaskStatus[tuple[int, list[int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """An h11 server that counts body bytes and drops them; ``[count, peak RSS growth]``."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    state = [0, 0]
    base = rss()

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        seen = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(1 << 18))
            elif isinstance(event, h11.Data):
                seen += len(event.data)
                if seen % (32 * MiB) < len(event.data):
                    state[1] = max(state[1], rss() - base)
            elif isinstance(event, h11.EndOfMessage):
                break
        state[0] = seen
        body = b"%d" % seen
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(body)))]))
        )
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        task_status.started((listener.socket.getsockname()[1], state))
        await trio.serve_listeners(handle, [listener], handler_nursery=nursery)


@pytest.mark.parametrize("kind", ["file", "agen"])
async def test_a_256_mib_upload_keeps_memory_flat(kind: str, tmp_path: pathlib.Path) -> None:
    size = 256 * MiB
    path = tmp_path / "big"
    with path.open("wb") as f:
        f.truncate(size)  # sparse: reads are zeros from the page cache

    async def agen() -> AsyncIterator[bytes]:
        chunk = bytes(MiB)
        for _ in range(size // MiB):
            yield chunk

    async with trio.open_nursery() as nursery:
        port, state = await nursery.start(counting_sink)
        sink = BytesConsumer()
        with path.open("rb") as f:
            body = f if kind == "file" else agen()
            await fetch(f"http://127.0.0.1:{port}/", sink, method="POST", body=body)
        assert sink.body == b"%d" % size
        assert state[1] < 48 * MiB, state
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([("recv",), ("close",)], "closed|before"),
        ([("recv",), ("send", b"SSH-2.0-OpenSSH_9.2\r\n"), ("sleep", 5)], "malformed"),
    ],
)
async def test_expect_continue_answered_by_a_close_or_garbage(
    steps: list[tuple[object, ...]], match: str
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, steps)
        consumer = Recorder()
        with pytest.raises(ProtocolError, match=match):
            await fetch(
                server.url(),
                consumer,
                method="PUT",
                body=b"x" * 100,
                expect_continue=True,
                timeout=3,
            )
        assert consumer.closed == 1
        assert consumer.events[0] == ("header", None)
        nursery.cancel_scope.cancel()
