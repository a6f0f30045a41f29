"""The /metrics server: real loopback sockets, a real client (ours) and raw bytes.

Deadlines run under ``autojump_clock`` (every peer is in-process).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trio.testing

from trio_timehttp import BytesConsumer, Client, fetch
from trio_timehttp._metrics_server import CONTENT_TYPE, serve_metrics

PAGE = b"# TYPE x gauge\nx 1.0\n"
REASONS = {b"400": b"Bad Request", b"404": b"Not Found", b"405": b"Method Not Allowed"}


async def start(
    nursery: trio.Nursery, render: Callable[[], bytes] = lambda: PAGE, timeout: float = 10.0
) -> int:
    listeners = await nursery.start(partial(serve_metrics, render, 0, timeout=timeout))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes (bounded by the test's deadline)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        got = b""
        while chunk := await stream.receive_some(65536):
            got += chunk
        return got


async def test_get_metrics(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    consumer = BytesConsumer()
    response = await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert consumer.body == PAGE
    # A query string is the same page.
    consumer = BytesConsumer()
    await fetch(f"http://127.0.0.1:{port}/metrics?x=1", consumer, timeout=5)
    assert consumer.body == PAGE


async def test_render_is_called_per_scrape(nursery: trio.Nursery) -> None:
    calls = []

    def render() -> bytes:
        calls.append(1)
        return f"n {len(calls)}\n".encode()

    port = await start(nursery, render)
    bodies = []
    async with Client() as client:
        for _ in range(3):
            consumer = BytesConsumer()
            await client.fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=5)
            bodies.append(consumer.body)
    assert bodies == [b"n 1\n", b"n 2\n", b"n 3\n"]


async def test_keep_alive_serves_several_requests_on_one_connection(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = await exchange(port, request * 2 + last)
    assert got.count(b"HTTP/1.1 200 ") == 3
    assert got.count(PAGE) == 3


async def test_head_has_the_length_but_no_body(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    got = await exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {len(PAGE)}".encode() in head.lower()
    assert body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
        (b"GET /metricsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", b"405"),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"405"),
        (b"GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, b"400"),  # a TLS hello
    ],
)
async def test_wrong_requests(nursery: trio.Nursery, request_bytes: bytes, status: bytes) -> None:
    port = await start(nursery)
    got = await exchange(port, request_bytes)
    assert got.startswith(b"HTTP/1.1 " + status + b" ")
    assert got.split(b"\r\n")[0] == b"HTTP/1.1 " + status + b" " + REASONS[status]
    if status == b"405":
        assert b"\r\nallow: GET, HEAD\r\n" in got
    # The server still answers the next client.
    consumer = BytesConsumer()
    await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=5)
    assert consumer.body == PAGE


async def test_an_oversized_head_is_431_and_closed(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    got = await exchange(port, head)
    assert got.startswith(b"HTTP/1.1 431 ")


async def test_the_request_head_fed_byte_by_byte(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            await stream.send_all(bytes([byte]))
        got = b""
        while chunk := await stream.receive_some(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 ")
    assert got.endswith(PAGE)


async def test_a_failing_render_is_500_and_the_server_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    pages = iter([None, PAGE])

    def render() -> bytes:
        page = next(pages)
        if page is None:
            raise RuntimeError("boom")
        return page

    port = await start(nursery, render)
    consumer = BytesConsumer()
    response = await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=5)
    assert response.status_code == 500
    assert "rendering metrics failed" in caplog.text
    consumer = BytesConsumer()
    response = await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=5)
    assert (response.status_code, consumer.body) == (200, PAGE)


async def test_silent_clients_do_not_hold_up_a_scrape_and_are_dropped_at_the_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start(nursery)
    silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(5)]
    # A half-sent head too.
    await silent[0].send_all(b"GET /metr")
    consumer = BytesConsumer()
    with trio.fail_after(1):
        await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=None)
    assert consumer.body == PAGE
    start_time = trio.current_time()
    with trio.fail_after(60):
        for stream in silent:
            assert await stream.receive_some(100) == b""  # closed by the server
            await stream.aclose()
    assert trio.current_time() - start_time >= 10.0 - 1


async def test_an_idle_kept_alive_connection_is_closed_after_the_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start(nursery, timeout=3.0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(PAGE):
            got += await stream.receive_some(65536)
        before = trio.current_time()
        with trio.fail_after(30):
            assert await stream.receive_some(100) == b""
        assert 3.0 <= trio.current_time() - before < 4.0


async def test_bind_errors_are_the_plain_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await serve_metrics(lambda: PAGE, port)


async def test_cancelling_closes_listeners_and_connections() -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""
    await stream.aclose()
    with pytest.raises(OSError, match="failed"):
        await trio.open_tcp_stream("127.0.0.1", port)
