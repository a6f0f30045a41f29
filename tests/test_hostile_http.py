"""The requester against hostile servers (issue 5, items 1-7 and 10).

Every case, table-driven: the fetch ends within its total deadline plus a
small margin, raises a ``TimeHTTPError`` subclass whose message says what the
server did wrong, calls ``consumer.close()`` exactly once, and leaves no
client socket open (sockets counted from /proc/self/fd, minus those the
in-process evil server still holds). Loopback only, port 0, no sleeps for
readiness.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_timehttp as t

from helpers import (
    EvilConnection,
    HTTPServer,
    Recorder,
    ServerRequest,
    count_open_sockets,
    pool_stats,
    serve_evil,
    serve_http,
)

OK = b"HTTP/1.1 200 OK\r\n"
MARGIN = 0.5  # seconds allowed beyond a deadline


def head(*fields: str, status: bytes = OK) -> bytes:
    return status + b"".join(f.encode() + b"\r\n" for f in fields) + b"\r\n"


# (id, script, client kwargs, fetch kwargs, exception, message regex)
CASES: list[tuple[str, Any, dict[str, Any], dict[str, Any], type[Exception], str]] = [
    # 1. truncation
    ("close-before-status", [("recv",), ("close",)], {}, {}, t.ProtocolError,
     "closed the connection without sending a response"),
    ("close-mid-status", [("recv",), ("send", b"HTTP/1.1 20"), ("close",)], {}, {},
     t.ProtocolError, "closed the connection in the middle of the response head"),
    ("close-mid-headers", [("recv",), ("send", OK + b"Content-Le"), ("close",)], {}, {},
     t.ProtocolError, "closed the connection in the middle of the response head"),
    ("close-mid-body-cl", [("recv",), ("send", head("Content-Length: 100") + b"abc"), ("close",)],
     {}, {}, t.ProtocolError, "after 3 of 100 body bytes"),
    ("close-mid-body-chunked",
     [("recv",), ("send", head("Transfer-Encoding: chunked") + b"5\r\nab"), ("close",)],
     {}, {}, t.ProtocolError, "middle of a chunked body"),
    ("reset-mid-body",
     [("recv",), ("send", head("Content-Length: 100") + b"abc"), ("sleep", 0.05), ("reset",)],
     {}, {}, t.ProtocolError, "broke in the middle of the body|after 3 of 100"),
    # 2. slow servers: the timeout is a total deadline, not per read
    ("never-sends", [("recv",), ("forever",)], {}, {"timeout": 0.3}, t.Timeout, "timed out"),
    ("header-drip", [("recv",), ("drip", head(*[f"X-{i}: v" for i in range(500)]), 0.01)],
     {}, {"timeout": 0.3}, t.Timeout, "timed out after 0.3 s"),
    ("body-drip", [("recv",), ("send", head("Content-Length: 1000")), ("drip", b"x" * 1000, 0.01)],
     {}, {"timeout": 0.3}, t.Timeout, "timed out after 0.3 s"),
    # 3. bad status lines
    ("status-no-code", [("recv",), ("send", b"HTTP/1.1 OK\r\n\r\n")], {}, {}, t.ProtocolError,
     "malformed response head"),
    ("status-http2", [("recv",), ("send", b"HTTP/2 200\r\n\r\n")], {}, {}, t.ProtocolError,
     "malformed response head"),
    ("status-http2.0", [("recv",), ("send", b"HTTP/2.0 200 OK\r\n\r\n")], {}, {},
     t.ProtocolError, "unsupported HTTP version 2.0"),
    ("status-foo", [("recv",), ("send", b"FOO BAR BAZ\r\n\r\n")], {}, {}, t.ProtocolError,
     "malformed response head"),
    ("http09", [("recv",), ("send", b"<html>hello</html>\n"), ("close",)], {}, {},
     t.ProtocolError, "malformed response head|in the middle of the response head"),
    ("status-600", [("recv",), ("send", head("Content-Length: 0", status=b"HTTP/1.1 600 X\r\n"))],
     {}, {}, t.ProtocolError, "invalid status code 600"),
    ("status-099", [("recv",), ("send", head("Content-Length: 0", status=b"HTTP/1.1 099 X\r\n"))],
     {}, {}, t.ProtocolError, "malformed response head"),
    # 4. header block limits
    ("1mb-header-line", [("recv",), ("send", OK + b"X: " + b"a" * 1_000_000), ("forever",)],
     {}, {}, t.ProtocolError, "response head larger than 65536 bytes"),
    ("101-fields", [("recv",), ("send", head(*[f"X-{i}: v" for i in range(101)]))], {}, {},
     t.ProtocolError, "more than 100 header fields"),
    ("header-bytes-cap", [("recv",), ("send", head(*[f"X-{i}: {'v' * 90}" for i in range(30)]))],
     {"max_header_bytes": 2000}, {}, t.ProtocolError, "larger than 2000 bytes"),
    # 5. framing
    ("chunk-zz", [("recv",), ("send", head("Transfer-Encoding: chunked") + b"zz\r\n")], {}, {},
     t.ProtocolError, "bad chunk size"),
    ("chunk-minus-5", [("recv",), ("send", head("Transfer-Encoding: chunked") + b"-5\r\n")],
     {}, {}, t.ProtocolError, "bad chunk size"),
    ("chunk-21-digits",
     [("recv",), ("send", head("Transfer-Encoding: chunked") + b"1" * 21 + b"\r\n")], {}, {},
     t.ProtocolError, "bad chunk size"),
    ("chunk-bad-terminator",
     [("recv",), ("send", head("Transfer-Encoding: chunked") + b"3\r\nabcXY0\r\n\r\n")], {}, {},
     t.ProtocolError, "not followed by CRLF"),
    ("chunked-never-ends",
     [("recv",), ("send", head("Transfer-Encoding: chunked")),
      ("drip_forever", b"1\r\na\r\n", 0.005)],
     {}, {"timeout": 0.3}, t.Timeout, "timed out"),
    ("cl-minus-1", [("recv",), ("send", head("Content-Length: -1"))], {}, {}, t.ProtocolError,
     "malformed response head"),
    ("cl-plus-5", [("recv",), ("send", head("Content-Length: +5") + b"hello")], {}, {},
     t.ProtocolError, "malformed response head"),
    ("cl-21-digits", [("recv",), ("send", head("Content-Length: " + "1" * 21))], {}, {},
     t.ProtocolError, "malformed response head"),
    ("cl-conflicting",
     [("recv",), ("send", head("Content-Length: 5", "Content-Length: 6") + b"hello!")], {}, {},
     t.ProtocolError, "malformed response head"),
    ("cl-and-te",
     [("recv",), ("send", head("Content-Length: 5", "Transfer-Encoding: chunked")
                  + b"5\r\nhello\r\n0\r\n\r\n")],
     {}, {}, t.ProtocolError, "both Content-Length and Transfer-Encoding"),
    ("te-gzip", [("recv",), ("send", head("Transfer-Encoding: gzip"))], {}, {}, t.ProtocolError,
     "malformed response head"),
    # 7. informational responses
    ("endless-100",
     [("recv",), ("drip_forever", b"HTTP/1.1 100 Continue\r\n\r\n", 0.0)], {}, {},
     t.ProtocolError, "more than 10 informational"),
    ("unsolicited-101", [("recv",), ("send", b"HTTP/1.1 101 Switching Protocols\r\n\r\n")],
     {}, {}, t.ProtocolError, "switched protocols .*does not support"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("script", "client_kw", "fetch_kw", "exc_type", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_hostile_server(
    nursery: trio.Nursery,
    script: Any,
    client_kw: dict[str, Any],
    fetch_kw: dict[str, Any],
    exc_type: type[Exception],
    message: str,
    async_: bool,
) -> None:
    evil = await nursery.start(serve_evil, script)
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()
    timeout = fetch_kw.get("timeout", 5.0)
    c = Recorder(async_=async_)
    start = trio.current_time()
    async with t.Client(**client_kw) as client:
        with pytest.raises(exc_type, match=message) as info:
            await client.fetch(evil.url("/"), c, **fetch_kw)
        assert trio.current_time() - start < timeout + MARGIN
    assert isinstance(info.value, t.TimeHTTPError)
    assert str(evil.port) in str(info.value)  # the message names the server
    assert c.closed == 1
    if c.responses and c.responses[0].status_code is None:
        assert c.responses[0].error is info.value
        assert c.events == [("header", None), "close"]
    else:
        assert c.errors == [info.value]
        assert c.events[-2:] == [("error", type(info.value).__name__), "close"]
    await trio.testing.wait_all_tasks_blocked()
    assert count_open_sockets() <= before + evil.open


# 6. Bytes beyond the framing poison nothing: that connection is closed, and
# the next request gets a clean response on a new connection.
EXTRA = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
POISON = [
    ("beyond-content-length", "GET", head("Content-Length: 2") + b"ok" + EXTRA),
    ("body-on-204", "GET", head(status=b"HTTP/1.1 204 No Content\r\n") + EXTRA),
    ("body-on-304", "GET", head(status=b"HTTP/1.1 304 Not Modified\r\n") + EXTRA),
    ("body-on-head", "HEAD", head("Content-Length: 4") + b"EVIL"),
    (
        "beyond-chunked",
        "GET",
        head("Transfer-Encoding: chunked") + b"2\r\nok\r\n0\r\n\r\n" + EXTRA,
    ),
]


@pytest.mark.parametrize(("method", "wire"), [pytest.param(*p[1:], id=p[0]) for p in POISON])
async def test_bytes_beyond_framing_are_not_reused(
    nursery: trio.Nursery, method: str, wire: bytes
) -> None:
    clean = head("Content-Length: 4") + b"good"
    evil = await nursery.start(
        serve_evil, [[("recv",), ("send", wire), ("forever",)], [("recv",), ("send", clean)]]
    )
    async with t.Client() as client:
        await client.fetch(evil.url(), Recorder(), method=method)
        c = Recorder()
        r = await client.fetch(evil.url(), c)
        assert r.status_code == 200
        assert bytes(c.body) == b"good"
    assert evil.connections == 2


async def test_cl_and_te_connection_never_reused(nursery: trio.Nursery) -> None:
    bad = head("Content-Length: 5", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n"
    clean = head("Content-Length: 4") + b"good"
    evil = await nursery.start(
        serve_evil, [[("recv",), ("send", bad), ("forever",)], [("recv",), ("send", clean)]]
    )
    async with t.Client() as client:
        with pytest.raises(t.ProtocolError):
            await client.fetch(evil.url(), Recorder())
        c = Recorder()
        await client.fetch(evil.url(), c)
        assert bytes(c.body) == b"good"
    assert evil.connections == 2


async def test_three_103_then_200(nursery: trio.Nursery) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    evil = await nursery.start(
        serve_evil, [("recv",), ("send", early * 3 + head("Content-Length: 2") + b"ok")]
    )
    c = Recorder()
    r = await t.fetch(evil.url(), c)
    assert r.status_code == 200
    assert bytes(c.body) == b"ok"
    assert c.events == [("header", 200), "close"]


async def test_1xx_up_to_the_cap_is_fine(nursery: trio.Nursery) -> None:
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    evil = await nursery.start(
        serve_evil, [("recv",), ("send", cont * 4 + head("Content-Length: 2") + b"ok")]
    )
    async with t.Client(max_informational=4) as client:
        r = await client.fetch(evil.url(), Recorder())
    assert r.status_code == 200


# 10. Cancellation at each phase releases the socket and the pool slot.


async def _hang_forever(conn: EvilConnection) -> None:
    await trio.sleep_forever()


PHASES = {
    # the first checkpoint is inside the connect
    "connecting": ([("recv",), ("forever",)], 0.0, {}),
    # the server never reads: a big body fills the socket buffers
    "sending": (_hang_forever, 0.1, {"method": "PUT", "body": b"x" * 20_000_000}),
    "mid-headers": ([("recv",), ("send", OK + b"X: y\r\n"), ("forever",)], 0.1, {}),
    "mid-body": (
        [("recv",), ("send", head("Content-Length: 10") + b"abc"), ("forever",)],
        0.1,
        {},
    ),
    "in-consumer": (
        [("recv",), ("send", head("Content-Length: 3") + b"abc"), ("forever",)],
        0.1,
        {},
    ),
}


@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancellation_releases_socket_and_slot(nursery: trio.Nursery, phase: str) -> None:
    script, after, kwargs = PHASES[phase]
    evil = await nursery.start(serve_evil, script)
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()
    c = Recorder(async_=True)
    if phase == "in-consumer":
        c.feed_gate = trio.Event()  # never set: the consumer blocks
    async with t.Client(max_connections=3) as client:
        with trio.move_on_after(after) as scope:
            await client.fetch(evil.url(), c, timeout=None, **kwargs)
        assert scope.cancelled_caught
        assert c.closed <= 1
        assert pool_stats(client) == (0, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert count_open_sockets() <= before + evil.open
        if phase == "in-consumer":
            assert c.events[0] == ("header", 200)


async def test_hundred_tasks_some_cancelled_leave_no_socket(nursery: trio.Nursery) -> None:
    rng = random.Random(1234)

    async def handler(req: ServerRequest) -> Any:
        await trio.sleep(rng.random() * 0.02)
        return 200, [], b"x" * rng.randrange(0, 200_000)

    srv: HTTPServer = await nursery.start(serve_http, handler)
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()
    done = 0
    async with t.Client(max_connections=20) as client:

        async def task(i: int) -> None:
            nonlocal done
            for _ in range(3):
                with trio.move_on_after(rng.random() * 0.05 if i % 3 == 0 else 10):
                    await client.fetch(srv.url(f"/{i}"), Recorder())
                    done += 1

        async with trio.open_nursery() as inner:
            for i in range(100):
                inner.start_soon(task, i)
        stats = pool_stats(client)
        assert stats.open == stats.idle <= 20  # nothing busy, nothing leaked
    await trio.testing.wait_all_tasks_blocked()
    assert done > 100
    assert count_open_sockets() <= before + srv.open


# Property tests: random splits of valid responses, random byte streams.

VALID = [
    (head("Content-Length: 11") + b"hello world", b"hello world"),
    (head("Transfer-Encoding: chunked") + b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n",
     b"hello world"),
    (b"HTTP/1.1 103 Early\r\n\r\n" + head("Content-Length: 3") + b"abc", b"abc"),
    (b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close", b"until close"),
]  # fmt: skip


async def _run_script(steps: list[Any], timeout: float = 2.0) -> tuple[Any, Recorder, int]:
    async with trio.open_nursery() as nursery:
        evil = await nursery.start(serve_evil, steps)
        await trio.testing.wait_all_tasks_blocked()
        before = count_open_sockets()
        c = Recorder()
        outcome: Any
        try:
            outcome = await t.fetch(evil.url(), c, timeout=timeout)
        except t.TimeHTTPError as exc:
            outcome = exc
        await trio.testing.wait_all_tasks_blocked()
        leaked = count_open_sockets() - (before + evil.open)
        nursery.cancel_scope.cancel()
    return outcome, c, leaked


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_random_splits_of_valid_responses(data: st.DataObject) -> None:
    wire, body = data.draw(st.sampled_from(VALID))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=8)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    steps: list[Any] = [("recv",)]
    for p in pieces:
        steps += [("send", p), ("sleep", 0.0005)]
    steps.append(("close",))
    outcome, c, leaked = await _run_script(steps)
    assert isinstance(outcome, t.Response), outcome
    assert bytes(c.body) == body
    assert c.closed == 1
    assert leaked <= 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    junk=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda b: OK + b, st.binary(max_size=300)),
        st.builds(lambda b: head("Transfer-Encoding: chunked") + b, st.binary(max_size=100)),
    )
)
async def test_random_byte_streams(junk: bytes) -> None:
    outcome, c, leaked = await _run_script([("recv",), ("send", junk), ("close",)])
    assert isinstance(outcome, t.Response | t.TimeHTTPError), outcome
    assert c.closed == 1
    assert leaked <= 0
