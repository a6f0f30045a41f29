"""Retries on real sockets with in-process peers and MockClock: 429/503 with
Retry-After, idempotent methods only, never past the deadline, connect
failures, each retry logged, the consumer seeing only the final answer."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

from trio_timehttp import Client, ConnectError, fetch

from helpers import Recorder, ServerRequest, bound_socket, serve_http


def answers(*replies: tuple[int, dict[str, str]]) -> object:
    """A handler answering with ``replies`` in turn (the last one repeats)."""
    count = [0]

    def handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        status, headers = replies[min(count[0], len(replies) - 1)]
        count[0] += 1
        return status, list(headers.items()), b"answer %d" % count[0]

    return handler


async def run(handler: object, consumer: Recorder, **kw: object) -> tuple[object, list[str]]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        response = await fetch(server.url("/r"), consumer, **kw)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    return response, [r.method for r in server.requests]


async def test_503_with_retry_after_then_200(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trio_timehttp")
    consumer = Recorder()
    start = trio.current_time()
    response, methods = await run(
        answers((503, {"retry-after": "7"}), (200, {})), consumer, retries=2
    )
    assert trio.current_time() - start == pytest.approx(7)
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert consumer.events == [("header", 200), "close"]  # the 503 never reached it
    assert bytes(consumer.body) == b"answer 2"
    assert methods == ["GET", "GET"]
    [record] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert "GET" in record.getMessage()
    assert "answered 503" in record.getMessage()


async def test_429_until_retries_run_out_is_delivered_as_data(
    autojump_clock: trio.testing.MockClock,
) -> None:
    consumer = Recorder()
    response, methods = await run(answers((429, {})), consumer, retries=3)
    assert response.status_code == 429  # type: ignore[attr-defined]
    assert methods == ["GET"] * 4
    assert consumer.events == [("header", 429), "close"]


async def test_post_is_never_retried_on_status(autojump_clock: trio.testing.MockClock) -> None:
    consumer = Recorder()
    response, methods = await run(
        answers((503, {})), consumer, method="POST", body=b"x", retries=3
    )
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert methods == ["POST"]


async def test_put_with_a_spent_iterator_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    consumer = Recorder()
    response, methods = await run(
        answers((503, {}), (200, {})), consumer, method="PUT", body=iter([b"once"]), retries=3
    )
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert methods == ["PUT"]


async def test_put_with_bytes_is_retried_with_its_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, answers((503, {}), (200, {})))
        await fetch(server.url(), Recorder(), method="PUT", body=b"payload", retries=1)
        assert [r.body for r in server.requests] == [b"payload", b"payload"]
        nursery.cancel_scope.cancel()


async def test_no_retry_whose_wait_passes_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    consumer = Recorder()
    start = trio.current_time()
    response, methods = await run(
        answers((503, {"retry-after": "20"}), (200, {})), consumer, retries=5, timeout=10
    )
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert methods == ["GET"]
    assert trio.current_time() - start < 1


async def test_backoff_without_retry_after_stays_inside_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, answers((503, {})))
        start = trio.current_time()
        async with Client(retries=50, backoff=1.0, timeout=30) as client:
            response = await client.fetch(server.url(), Recorder())
        assert response.status_code == 503
        assert trio.current_time() - start < 30
        assert len(server.requests) >= 2
        nursery.cancel_scope.cancel()


async def test_connect_failures_are_retried_then_raised(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    caplog.set_level(logging.INFO, "trio_timehttp")
    consumer = Recorder()
    url = f"http://127.0.0.1:{refused_port}/"
    with pytest.raises(ConnectError):
        await fetch(url, consumer, method="POST", body=b"x", retries=2)
    assert len([r for r in caplog.records if "retrying POST" in r.getMessage()]) == 2
    assert consumer.events == [("header", None), "close"]


async def test_a_connect_failure_then_success(autojump_clock: trio.testing.MockClock) -> None:
    """The first attempt is refused; the server comes up during the backoff."""
    with bound_socket() as reserved:
        await connect_failure_then_success(reserved)


async def connect_failure_then_success(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    retried = trio.Event()

    class OnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retried.set()

    handler = OnRetry()
    logger = logging.getLogger("trio_timehttp")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    consumer = Recorder()
    try:
        async with trio.open_nursery() as nursery:

            async def late_server() -> None:
                await retried.wait()
                reserved.listen()  # the same socket: the port was never free for another
                listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(reserved))]

                async def answer(stream: trio.SocketStream) -> None:
                    await stream.receive_some(65536)
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup")
                    await stream.aclose()

                await trio.serve_listeners(answer, listeners)

            nursery.start_soon(late_server)
            # MockClock moves only once every task is blocked: by the end of
            # the backoff sleep the late server is bound and accepting.
            async with Client(retries=3, backoff=1.0) as client:
                response = await client.fetch(f"http://127.0.0.1:{port}/", consumer)
            assert response.status_code == 200
            assert bytes(consumer.body) == b"up"
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
