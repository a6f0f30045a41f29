"""The HTTP requester against real sockets on loopback.

Rules: servers are in-process (``tests/helpers.py``), started with
``nursery.start`` on port 0; no sleeps for readiness; ``MockClock`` only where
the peer is in-process; open sockets are counted from /proc/self/fd.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_timehttp as t
import trio_timehttp._exchange as exchange_module
import trio_timehttp._headreader as headreader_module
import trio_timehttp._transport as transport_module
from trio_timehttp._http import USER_AGENT

from helpers import (
    HTTPServer,
    Recorder,
    ServerRequest,
    count_open_sockets,
    pool_stats,
    serve_evil,
    serve_http,
)


async def body_chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


def handler(req: ServerRequest) -> object:
    path = req.target.split("?")[0]
    if path == "/chunked":
        return 200, [("content-type", "text/plain")], body_chunks(b"abc", b"", b"def" * 1000)
    if path == "/close":
        return 200, [("connection", "close")], b"bye"
    if path == "/404":
        return 404, [], b"not here"
    if path == "/204":
        return 204, [], b""
    if path == "/304":
        return 304, [], b""
    if path == "/big":
        return 200, [], b"B" * 300_000
    if path == "/redirect":
        return 302, [("location", "/final")], b"moved" * 10
    if path == "/redirect-big":
        return 302, [("location", "/final")], b"m" * 200_000
    if path == "/echo":
        lines = [f"{k}: {v}" for k, v in req.headers]
        return 200, [], ("\n".join([req.method, req.target, *lines]) + "\n").encode() + req.body
    return 200, [("x-path", path)], f"hello {req.target}".encode()


@pytest.fixture
async def server(nursery: trio.Nursery) -> HTTPServer:
    return await nursery.start(serve_http, handler)


# ------------------------------------------------------------------ framing


async def test_content_length_body(server: HTTPServer) -> None:
    c = Recorder()
    r = await t.fetch(server.url("/x"), c)
    assert (r.status_code, r.reason, r.http_version) == (200, "OK", "1.1")
    assert r.headers["x-path"] == "/x"
    assert r.headers["Content-Length"] == str(len(b"hello /x"))
    assert bytes(c.body) == b"hello /x"
    assert c.events == [("header", 200), "close"]
    assert r.url == server.url("/x")
    assert r.request.method == "GET"
    assert r.history == []
    assert r.error is None


async def test_chunked_body(server: HTTPServer) -> None:
    c = Recorder()
    r = await t.fetch(server.url("/chunked"), c)
    assert r.headers["transfer-encoding"] == "chunked"
    assert bytes(c.body) == b"abc" + b"def" * 1000
    assert c.closed == 1


async def test_read_until_close(nursery: trio.Nursery) -> None:
    evil = await nursery.start(
        serve_evil,
        [
            ("recv",),
            ("send", b"HTTP/1.0 200 OK\r\nX: y\r\n\r\npart1-"),
            ("send", b"part2"),
            ("close",),
        ],
    )
    c = Recorder()
    r = await t.fetch(evil.url(), c)
    assert r.http_version == "1.0"
    assert bytes(c.body) == b"part1-part2"
    assert c.closed == 1


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/x"), ("GET", "/204"), ("GET", "/304")])
async def test_no_body_responses_keep_alive(server: HTTPServer, method: str, path: str) -> None:
    async with t.Client() as client:
        for _ in range(3):
            c = Recorder()
            r = await client.fetch(server.url(path), c, method=method)
            assert c.body == b""
            assert c.closed == 1
            assert r.status_code in (200, 204, 304)
    assert server.connections == 1


async def test_status_codes_are_data(server: HTTPServer) -> None:
    c = Recorder()
    r = await t.fetch(server.url("/404"), c)
    assert r.status_code == 404
    assert bytes(c.body) == b"not here"


# --------------------------------------------------------------- keep-alive


async def test_keep_alive_reuses_one_connection(server: HTTPServer) -> None:
    async with t.Client() as client:
        for path in ["/a", "/chunked", "/b", "/404", "/big"]:
            await client.fetch(server.url(path), Recorder())
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_connection_close_is_not_reused(server: HTTPServer) -> None:
    async with t.Client() as client:
        await client.fetch(server.url("/close"), Recorder())
        await client.fetch(server.url("/a"), Recorder())
        await client.fetch(server.url("/a"), Recorder(), headers={"Connection": "close"})
        await client.fetch(server.url("/a"), Recorder())
    assert server.connections == 3


async def test_idle_connection_closed_by_server_is_detected(nursery: trio.Nursery) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    evil = await nursery.start(serve_evil, [("recv",), ("send", ok), ("close",)])
    async with t.Client() as client:
        await client.fetch(evil.url(), Recorder())
        await trio.testing.wait_all_tasks_blocked()
        # A POST is never retried: it succeeds only because the dead idle
        # connection was noticed before it was used.
        c = Recorder()
        await client.fetch(evil.url(), c, method="POST", body=b"data")
        assert bytes(c.body) == b"ok"
    assert evil.connections == 2


async def test_unsolicited_bytes_on_idle_connection_not_reused(nursery: trio.Nursery) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    first_done = trio.Event()
    evil_sent = trio.Event()

    async def script(conn: object) -> None:
        assert hasattr(conn, "send")
        await conn.recv_request()  # type: ignore[attr-defined]
        await conn.send(ok)  # type: ignore[attr-defined]
        await first_done.wait()  # the connection is idle in the pool now
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")  # type: ignore[attr-defined]
        evil_sent.set()  # on loopback the bytes are in our receive queue once sent
        await trio.sleep_forever()

    evil = await nursery.start(serve_evil, [script, [("recv",), ("send", ok)]])
    async with t.Client() as client:
        await client.fetch(evil.url(), Recorder())
        first_done.set()
        await evil_sent.wait()
        c = Recorder()
        await client.fetch(evil.url(), c)
        assert bytes(c.body) == b"ok"
    assert evil.connections == 2


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("PUT", True), ("POST", False)])
async def test_retry_once_on_reused_connection(
    nursery: trio.Nursery, method: str, retried: bool
) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    # First connection: one good response, then the next request is read and
    # the connection dropped without a byte (a keep-alive race).
    evil = await nursery.start(
        serve_evil, [[("recv",), ("send", ok), ("recv",), ("close",)], [("recv",), ("send", ok)]]
    )
    async with t.Client() as client:
        await client.fetch(evil.url(), Recorder())
        c = Recorder()
        if retried:
            await client.fetch(evil.url(), c, method=method)
            assert bytes(c.body) == b"ok"
            assert evil.connections == 2
        else:
            with pytest.raises(t.ProtocolError, match="without sending a response"):
                await client.fetch(evil.url(), c, method=method)
            assert c.closed == 1
            assert evil.connections == 1


async def test_retry_only_once(nursery: trio.Nursery) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    evil = await nursery.start(
        serve_evil, [[("recv",), ("send", ok), ("recv",), ("close",)], [("recv",), ("close",)]]
    )
    async with t.Client() as client:
        await client.fetch(evil.url(), Recorder())
        with pytest.raises(t.ProtocolError):
            await client.fetch(evil.url(), Recorder())
    assert evil.connections == 2


async def test_keepalive_expiry(server: HTTPServer, mock_clock: trio.testing.MockClock) -> None:
    async with t.Client(keepalive_expiry=5.0, timeout=None) as client:
        await client.fetch(server.url("/a"), Recorder())
        mock_clock.jump(4.0)
        await client.fetch(server.url("/a"), Recorder())
        assert server.connections == 1
        mock_clock.jump(5.5)
        await client.fetch(server.url("/a"), Recorder())
        assert server.connections == 2


async def test_max_connections_bound_and_wait(nursery: trio.Nursery) -> None:
    release = trio.Event()
    peak = 0
    srv: list[HTTPServer] = []

    async def slow(req: ServerRequest) -> object:
        nonlocal peak
        peak = max(peak, srv[0].open)
        await release.wait()
        return 200, [], b"done"

    srv.append(await nursery.start(serve_http, slow))
    results: list[int | None] = []
    async with t.Client(max_connections=2) as client:

        async def one() -> None:
            r = await client.fetch(srv[0].url("/"), Recorder())
            results.append(r.status_code)

        async with trio.open_nursery() as inner:
            for _ in range(6):
                inner.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert srv[0].open == 2
            # a fetch that can't get a slot in time times out
            with pytest.raises(t.Timeout):
                await client.fetch(srv[0].url("/"), Recorder(), timeout=0.1)
            release.set()
    assert results == [200] * 6
    assert peak <= 2


async def test_bound_evicts_idle_connection_to_other_origin(nursery: trio.Nursery) -> None:
    a = await nursery.start(serve_http, handler)
    b = await nursery.start(serve_http, handler)
    async with t.Client(max_connections=1) as client:
        await client.fetch(a.url("/"), Recorder())
        await client.fetch(b.url("/"), Recorder())
        await trio.testing.wait_all_tasks_blocked()
        assert a.open == 0  # the idle connection to a was closed to make room
        await client.fetch(b.url("/"), Recorder())
    assert b.connections == 1


async def test_aclose_closes_idle_connections(server: HTTPServer) -> None:
    client = t.Client()
    await client.fetch(server.url("/"), Recorder())
    await trio.testing.wait_all_tasks_blocked()
    assert server.open == 1
    await client.aclose()
    await client.aclose()  # idempotent
    await trio.testing.wait_all_tasks_blocked()
    assert server.open == 0
    c = Recorder()
    with pytest.raises(t.HTTPError, match="closed"):
        await client.fetch(server.url("/"), c)
    assert c.closed == 1


# --------------------------------------------------------- consumer protocol


@pytest.mark.parametrize("async_", [False, True])
async def test_sync_and_async_consumers(server: HTTPServer, async_: bool) -> None:
    c = Recorder(async_=async_)
    await t.fetch(server.url("/chunked"), c)
    assert bytes(c.body) == b"abc" + b"def" * 1000
    assert c.events[0] == ("header", 200)
    assert c.events[-1] == "close"
    assert c.closed == 1


async def test_http_header_is_optional(server: HTTPServer) -> None:
    class Minimal:
        def __init__(self) -> None:
            self.data = b""
            self.closed = 0

        def feed(self, data: bytes) -> None:
            self.data += data

        def close(self) -> None:
            self.closed += 1

    m = Minimal()
    await t.fetch(server.url("/a"), m)
    assert (m.data, m.closed) == (b"hello /a", 1)


async def test_stdlib_xml_parser_is_a_consumer(nursery: trio.Nursery) -> None:
    import xml.etree.ElementTree as ET

    srv = await nursery.start(serve_http, lambda req: (200, [], b"<a><b>text</b></a>"))
    parser = ET.XMLParser()
    await t.fetch(srv.url("/"), parser)
    # close() was called by the requester: the parser is spent
    with pytest.raises(ET.ParseError):
        parser.close()


async def test_backpressure_async_feed_stops_reading(nursery: trio.Nursery) -> None:
    produced = 0

    async def huge() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(2000):  # 128 MB if fully read
            produced += 1
            yield b"z" * 65536

    srv = await nursery.start(serve_http, lambda req: (200, [], huge()))
    c = Recorder(async_=True)
    c.feed_gate = trio.Event()
    async with trio.open_nursery() as inner:
        inner.start_soon(t.fetch, srv.url("/"), c)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.05)
        await trio.testing.wait_all_tasks_blocked()
        # Blocked in the first feed: the client stopped reading, so the
        # server is stuck once the socket buffers are full.
        assert c.feeds == 0
        assert produced < 400
        inner.cancel_scope.cancel()
    assert c.closed <= 1


async def test_consumer_exception_propagates_unchanged(server: HTTPServer) -> None:
    class Boom(Exception):
        pass

    for where in ["header", "feed", "close"]:
        c = Recorder()
        boom = Boom(where)
        c.raise_in[where] = boom
        with pytest.raises(Boom) as info:
            await t.fetch(server.url("/big"), c)
        assert info.value is boom
        assert c.closed == 1
        assert c.errors == []
        assert [e for e in c.events if isinstance(e, tuple) and e[0] == "header"] == [
            ("header", 200)
        ]


async def test_consumer_exception_closes_connection(server: HTTPServer) -> None:
    c = Recorder()
    c.raise_in["feed"] = ValueError("stop")
    async with t.Client() as client:
        with pytest.raises(ValueError, match="stop"):
            await client.fetch(server.url("/big"), c)
        await client.fetch(server.url("/a"), Recorder())
    assert server.connections == 2


async def test_http_header_returning_request_is_followed(server: HTTPServer) -> None:
    c = Recorder(follow={302: lambda r: t.Request("GET", server.url("/final"))})
    async with t.Client() as client:
        r = await client.fetch(server.url("/redirect"), c)
        assert r.status_code == 200
        assert r.url == server.url("/final")
        assert [h.status_code for h in r.history] == [302]
        assert r.history[0].url == server.url("/redirect")
        assert bytes(c.body) == b"hello /final"  # nothing of the 302's body
        assert c.events == [("header", 302), ("header", 200), "close"]
        # the 302's small body was drained: the connection was reused
        assert server.connections == 1
        # a big dropped body is not drained: a new connection follows
        c = Recorder(follow={302: lambda r: t.Request("GET", server.url("/final"))})
        await client.fetch(server.url("/redirect-big"), c)
        assert bytes(c.body) == b"hello /final"
        assert server.connections == 2


async def test_redirect_chain_shares_one_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_redirect(req: ServerRequest) -> object:
        await trio.sleep(0.15)  # mock time: a slow server, not a readiness wait
        return 302, [("location", "/again")], b""

    srv = await nursery.start(serve_http, slow_redirect)
    c = Recorder(follow={302: lambda r: t.Request("GET", srv.url("/again"))})
    start = trio.current_time()
    with pytest.raises(t.Timeout):
        await t.fetch(srv.url("/"), c, timeout=0.5)
    # Each hop alone fits in 0.5 s; the chain does not: one deadline for all.
    assert trio.current_time() - start == pytest.approx(0.5)
    assert c.closed == 1


async def test_failure_before_response_reports_status_none(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    for async_ in (False, True):
        c = Recorder(async_=async_)
        with pytest.raises(t.ConnectError) as info:
            await t.fetch(url, c)
        assert isinstance(info.value, OSError)
        assert "127.0.0.1" in str(info.value)
        assert c.events == [("header", None), "close"]
        assert c.responses[0].error is info.value
        assert c.responses[0].url == url


async def test_dns_failure_is_connect_error() -> None:
    c = Recorder()
    with pytest.raises(t.ConnectError, match=r"no-such-host\.invalid"):
        await t.fetch("http://no-such-host.invalid/", c, timeout=10)
    assert c.closed == 1


@pytest.mark.parametrize(
    "url", ["ftp://x/", "http://", "http://exa mple.com/", "http://h:99999/", 12, "http://[::1"]
)
async def test_invalid_url(url: object) -> None:
    c = Recorder()
    with pytest.raises(t.InvalidURL):
        await t.fetch(url, c)  # type: ignore[arg-type]
    assert c.events == ["close"]


async def test_crlf_in_header_value_never_reaches_the_wire(server: HTTPServer) -> None:
    c = Recorder()
    with pytest.raises(t.HTTPError, match="invalid request"):
        await t.fetch(server.url("/"), c, headers={"X-A": "1\r\nInjected: yes"})
    assert c.events == ["close"]
    assert server.connections == 0


# ------------------------------------------------------------------ requests


async def test_request_headers(server: HTTPServer) -> None:
    async with t.Client(headers={"X-Client": "c", "User-Agent": "client-ua"}) as client:
        c = Recorder()
        await client.fetch(
            server.url("/echo?q=1#frag"),
            c,
            headers=[("Host", "evil.example"), ("X-Req", "r"), ("x-client", "override")],
        )
    text = bytes(c.body).decode()
    lines = text.splitlines()
    assert lines[0] == "GET"
    assert lines[1] == "/echo?q=1"  # never the fragment
    # A caller's own Host is honoured (virtual hosts, curl -H Host:), once.
    assert "host: evil.example" in lines
    assert [line for line in lines if line.startswith("host:")] == ["host: evil.example"]
    assert "x-req: r" in lines
    assert "x-client: override" in lines
    assert "x-client: c" not in lines
    assert "user-agent: client-ua" in lines
    assert "accept-encoding: identity" in lines


async def test_default_user_agent_and_body(server: HTTPServer) -> None:
    c = Recorder()
    await t.fetch(server.url("/echo"), c, method="post", body=b"payload")
    lines = bytes(c.body).decode().splitlines()
    assert lines[0] == "POST"
    assert f"user-agent: {USER_AGENT}" in lines
    assert "content-length: 7" in lines
    assert lines[-1] == "payload"


# ------------------------------------------------------------------ deadline


async def test_total_deadline(nursery: trio.Nursery) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("forever",)])
    c = Recorder()
    start = trio.current_time()
    with pytest.raises(t.Timeout, match=r"0\.2 s.*127\.0\.0\.1") as info:
        await t.fetch(evil.url(), c, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert 0.2 <= trio.current_time() - start < 0.5
    assert c.events == [("header", None), "close"]


async def test_outer_cancel_scope_works(nursery: trio.Nursery) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("forever",)])
    c = Recorder()
    with trio.move_on_after(0.1) as scope:
        await t.fetch(evil.url(), c, timeout=None)
    assert scope.cancelled_caught
    assert c.closed == 1


async def test_close_runs_after_the_deadline_passed(nursery: trio.Nursery) -> None:
    evil = await nursery.start(
        serve_evil,
        [("recv",), ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"), ("forever",)],
    )
    c = Recorder(async_=True)  # async close: must not be cancelled by the expired deadline
    with pytest.raises(t.Timeout):
        await t.fetch(evil.url(), c, timeout=0.2)
    assert c.events == [("header", 200), ("error", "Timeout"), "close"]
    assert c.closed == 1


# --------------------------------------------------------- HTTPS and IPv6


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_https(nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    srv = await nursery.start(lambda **kw: serve_http(handler, ssl_context=server_ctx, **kw))
    assert srv.url("/").startswith("https://")
    async with t.Client(ssl_context=client_ctx) as client:
        for path in ["/a", "/chunked", "/big"]:
            c = Recorder()
            r = await client.fetch(srv.url(path), c)
            assert r.status_code == 200
            assert c.closed == 1
        assert bytes(c.body) == b"B" * 300_000
    assert srv.connections == 1


async def test_https_verification_failure_is_connect_error(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _ = tls
    srv = await nursery.start(lambda **kw: serve_http(handler, ssl_context=server_ctx, **kw))
    c = Recorder()
    with pytest.raises(t.ConnectError, match="TLS handshake"):
        await t.fetch(srv.url("/"), c)  # default context: the test CA is not trusted
    assert c.events == [("header", None), "close"]


def _have_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _have_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_literal(nursery: trio.Nursery) -> None:
    srv = await nursery.start(lambda **kw: serve_http(handler, host="::1", **kw))
    assert srv.url("/").startswith("http://[::1]:")
    c = Recorder()
    r = await t.fetch(srv.url("/echo"), c)
    assert r.status_code == 200
    assert f"host: [::1]:{srv.port}" in bytes(c.body).decode().splitlines()


async def test_host_name_localhost(server: HTTPServer) -> None:
    c = Recorder()
    r = await t.fetch(f"http://localhost:{server.port}/a", c)
    assert r.status_code == 200


# ------------------------------------------------------------------- sockets


async def test_no_socket_left_open(server: HTTPServer) -> None:
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets() - server.open
    async with t.Client() as client:
        for path in ["/a", "/close", "/big", "/chunked"]:
            await client.fetch(server.url(path), Recorder())
    await trio.testing.wait_all_tasks_blocked()
    assert count_open_sockets() - server.open == before


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("counts sockets through /proc")


async def test_a_failed_later_hop_reports_its_own_request_and_the_history(
    nursery: trio.Nursery, refused_port: int
) -> None:
    server = await nursery.start(serve_http, lambda r: (302, [("location", "/x")], b""))
    dead = f"http://127.0.0.1:{refused_port}/gone"
    consumer = Recorder(follow={302: lambda response: t.Request("GET", dead)})
    with pytest.raises(t.ConnectError):
        await t.fetch(server.url("/start"), consumer, timeout=10)
    first, failed = consumer.responses
    assert first.status_code == 302
    assert failed.status_code is None
    assert failed.request.url == dead
    assert failed.url == dead
    assert [h.url for h in failed.history] == [server.url("/start")]
    assert consumer.closed == 1


# ------------------------------------------------ raw-socket I/O fast paths
#
# Plain-TCP connections do their I/O on the non-blocking stdlib socket and
# only wait (a checkpoint) when a call would block; the checkpoints Trio's
# socket methods would have given are replaced by one per exchange and one per
# BODY_CHECKPOINT bytes read without waiting. These tests pin those rules.


class _ReadyBody(Recorder):
    """An async http_header that waits until the server has sent everything (all blocked)."""

    async def _a_header(self, response: Any) -> Any:
        await trio.testing.wait_all_tasks_blocked()
        return Recorder.http_header(self, response)

    def __init__(self) -> None:
        super().__init__()
        self.http_header = self._a_header  # type: ignore[method-assign]


async def test_raw_body_reads_checkpoint_even_when_never_waiting(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"x" * 200_000
    evil = await nursery.start(
        serve_evil,
        [("recv",), ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + body)],
    )
    calls = 0
    real = trio.lowlevel.checkpoint

    async def counting() -> None:
        nonlocal calls
        calls += 1
        await real()

    monkeypatch.setattr(transport_module, "BODY_CHECKPOINT", 1)
    monkeypatch.setattr(exchange_module, "BODY_READ", 10_000)
    monkeypatch.setattr(trio.lowlevel, "checkpoint", counting)
    c = _ReadyBody()
    response = await t.fetch(evil.url(), c)
    assert response.status_code == 200
    assert bytes(c.body) == body
    # Every read found its bytes already buffered: each one checkpointed.
    assert calls >= 5


async def test_raw_body_always_ready_still_meets_the_deadline(nursery: trio.Nursery) -> None:
    # A server that streams as fast as it can: the deadline must still fire.
    evil = await nursery.start(
        serve_evil,
        [
            ("recv",),
            ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n"),
            ("drip_forever", b"x" * 65536, 0),
        ],
    )
    c = Recorder()
    with pytest.raises(t.Timeout):
        await t.fetch(evil.url(), c, timeout=0.3)
    assert c.closed == 1


async def test_exchange_is_a_cancel_point_on_a_reused_connection(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(serve_http)
    async with t.Client() as client:
        await client.fetch(server.url("/a"), Recorder())
        c = Recorder()
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.fetch(server.url("/b"), c)
        assert scope.cancelled_caught
        assert c.closed == 1
        assert len(server.requests) == 1  # cancelled before anything was sent


async def test_exchange_is_a_schedule_point(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http)
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await trio.lowlevel.checkpoint()

    async with t.Client() as client:
        nursery.start_soon(other)
        before = ran
        for _ in range(5):
            await client.fetch(server.url("/"), Recorder())
        assert ran > before


async def test_raw_send_waits_when_the_send_buffer_is_full(nursery: trio.Nursery) -> None:
    # 8 MiB is more than loopback socket buffers hold while the server is slow
    # to read: the non-blocking send must wait for writability, not fail.
    payload = bytes(range(256)) * 32768
    server = await nursery.start(serve_http)
    c = Recorder()
    response = await t.fetch(server.url("/post"), c, method="POST", body=payload)
    assert response.status_code == 200
    assert server.requests[0].body == payload


# SO_RCVLOWAT on plain-TCP Content-Length bodies (see RCVLOWAT in _http.py):
# raised once the body flows in bulk, lowered to the bytes still missing, put
# back to 1 before the connection is pooled.


def _record_lowat(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import socket

    seen: list[int] = []
    real = socket.socket.setsockopt

    def spy(self: socket.socket, level: int, name: int, value: Any, *rest: Any) -> None:
        if level == socket.SOL_SOCKET and name == socket.SO_RCVLOWAT:
            seen.append(value)
        real(self, level, name, value, *rest)

    monkeypatch.setattr(socket.socket, "setsockopt", spy)
    return seen


async def test_rcvlowat_body_with_a_tail_below_the_mark_completes(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 KiB at once, then 200 KiB, then a 10 KiB tail: every wait must ask
    # for no more than is still missing, or the fetch would hang to its deadline.
    seen = _record_lowat(monkeypatch)
    a, b, tail = b"a" * 300 * 1024, b"b" * 200 * 1024, b"c" * 10 * 1024
    total = len(a) + len(b) + len(tail)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total

    async def script(conn: Any) -> None:
        # Each piece goes out only once the client has drained the last one
        # and is waiting: all tasks blocked through an I/O poll (the cushion
        # lets epoll report bytes already there, else "blocked" could mean a
        # reader not yet woken). So it waits for b, then for the tail, with
        # the mark it set for each.
        await conn.recv_request()
        await conn.send(head + a)
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        await conn.send(b)
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        await conn.send(tail)
        await trio.sleep_forever()

    evil = await nursery.start(serve_evil, [script])
    c = Recorder()
    start = trio.current_time()
    async with t.Client(timeout=10) as client:
        response = await client.fetch(evil.url(), c)
        assert response.status_code == 200
        assert bytes(c.body) == a + b + tail
        assert trio.current_time() - start < 2
        assert pool_stats(client) == (1, 1)  # pooled
    assert seen, "the low-water mark was never raised"
    assert max(seen) <= transport_module.RCVLOWAT
    assert seen[-1] == 1  # restored before pooling
    # Whether the mark had to go down to the tail's size depends on how the
    # kernel split the pieces (the client may sleep through a partial piece
    # and wake with the tail): the behaviour that matters -- it never asks
    # for more than is missing, so it completes long before the deadline --
    # is what is asserted above.


async def test_rcvlowat_restored_on_a_pooled_connection(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_lowat(monkeypatch)
    async with t.Client() as client:
        c = Recorder()
        await client.fetch(server.url("/big"), c)  # 300,000 bytes: bulk
        assert len(c.body) == 300_000
        assert pool_stats(client) == (1, 1)
        # The next exchange on that connection reads a small head fine.
        c2 = Recorder()
        await client.fetch(server.url("/x"), c2)
        assert bytes(c2.body) == b"hello /x"
    assert server.connections == 1
    # Whenever the mark was raised, it was put back to 1 before pooling.
    assert not seen or seen[-1] == 1


async def test_rcvlowat_truncated_body_fails_fast(nursery: trio.Nursery) -> None:
    # The server promises 1 MiB, sends 300 KiB (enough to raise the mark), pauses
    # and closes: EOF still wakes the wait, long before the deadline.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"
    evil = await nursery.start(
        serve_evil,
        [
            ("recv",),
            ("send", head + b"x" * 300 * 1024),
            ("sleep", 0.05),
            ("send", b"y" * 1000),
            ("close",),
        ],
    )
    c = Recorder()
    start = trio.current_time()
    with pytest.raises(t.ProtocolError, match="body shorter than its Content-Length"):
        await t.fetch(evil.url(), c, timeout=20)
    assert trio.current_time() - start < 2
    assert c.closed == 1


# Response heads memoised per Client by their exact bytes (see HeadMemo;
# its bound and keys are tested in test_headreader.py).


@pytest.fixture
def memo_puts(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The keys every HeadMemo is asked to keep during the test."""
    keys: list[bytes] = []
    real = headreader_module.HeadMemo.put

    def spy(self: Any, key: bytes, head: Any) -> None:
        keys.append(key)
        real(self, key, head)

    monkeypatch.setattr(headreader_module.HeadMemo, "put", spy)
    return keys


async def test_head_memo_repeats_the_same_response(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = 0
    real = headreader_module.HeadReader._parse

    def counting(self: Any, *args: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return real(self, *args)

    monkeypatch.setattr(headreader_module.HeadReader, "_parse", counting)
    ok = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
    other = b"HTTP/1.1 404 Nope\r\nX-A: 2\r\nContent-Length: 3\r\n\r\nbad"
    steps = [
        ("recv",),
        ("send", ok),
        ("recv",),
        ("send", ok),
        ("recv",),
        ("send", other),
        ("recv",),
        ("send", ok),
        ("forever",),
    ]
    evil = await nursery.start(serve_evil, steps)
    async with t.Client() as client:
        got = []
        for _ in range(4):
            c = Recorder()
            r = await client.fetch(evil.url(), c)
            got.append((r.status_code, r.reason, r.headers.items(), bytes(c.body)))
    assert parsed == 2  # the repeated head was not parsed again
    first = (200, "OK", [("x-a", "1"), ("content-length", "2")], b"ok")
    assert got == [
        first,
        first,
        (404, "Nope", [("x-a", "2"), ("content-length", "3")], b"bad"),
        first,
    ]
    assert evil.connections == 1


async def test_head_memo_hit_for_head_request_has_no_body(nursery: trio.Nursery) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    evil = await nursery.start(
        serve_evil,
        [
            ("recv",),
            ("send", ok + b"ok"),
            ("recv",),
            ("send", ok),
            ("recv",),
            ("send", ok + b"ok"),
            ("forever",),
        ],
    )
    async with t.Client() as client:
        c1, c2, c3 = Recorder(), Recorder(), Recorder()
        await client.fetch(evil.url(), c1)
        await client.fetch(evil.url(), c2, method="HEAD")  # memo hit, no body
        await client.fetch(evil.url(), c3)
        assert (bytes(c1.body), bytes(c2.body), bytes(c3.body)) == (b"ok", b"", b"ok")
    assert evil.connections == 1


@pytest.mark.parametrize(
    "first",
    [
        # split across two reads: h11 parses it, nothing memoised
        [
            ("send", b"HTTP/1.1 200 OK\r\nContent-"),
            ("sleep", 0.05),
            ("send", b"Length: 2\r\n\r\nok"),
        ],
        # an informational response before the final one
        [("send", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
        # a bare-LF head
        [("send", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")],
    ],
)
async def test_head_memo_skips_unusual_heads(
    nursery: trio.Nursery, first: list[Any], memo_puts: list[bytes]
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), *first, ("forever",)])
    async with t.Client() as client:
        c = Recorder()
        r = await client.fetch(evil.url(), c)
        assert (r.status_code, bytes(c.body)) == (200, b"ok")
    assert memo_puts == []


async def test_head_memo_never_keeps_a_rejected_head(
    nursery: trio.Nursery, memo_puts: list[bytes]
) -> None:
    bad = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 2\r\n\r\nok"
    evil = await nursery.start(serve_evil, [("recv",), ("send", bad)])
    async with t.Client(max_header_fields=3) as client:
        for _ in range(2):
            with pytest.raises(t.ProtocolError, match="more than 3 header fields"):
                await client.fetch(evil.url(), Recorder())
    assert memo_puts == []


async def test_head_memo_is_bounded(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headreader_module, "HEAD_MEMO_ENTRIES", 3)
    steps: list[Any] = []
    for i in range(7):
        steps += [
            ("recv",),
            ("send", b"HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 0\r\n\r\n" % i),
        ]
    evil = await nursery.start(serve_evil, [*steps, ("forever",)])
    async with t.Client() as client:
        for i in range(7):
            r = await client.fetch(evil.url(), Recorder())
            assert r.headers["x-n"] == str(i)


async def test_head_memo_keeps_framing_errors_for_bodies(
    nursery: trio.Nursery, memo_puts: list[bytes]
) -> None:
    # Harmless for HEAD (no body), so it is memoised; a GET with the same head
    # must still be refused for its framing.
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
    evil = await nursery.start(
        serve_evil, [("recv",), ("send", bad), ("recv",), ("send", bad + b"ok"), ("forever",)]
    )
    async with t.Client() as client:
        r = await client.fetch(evil.url(), Recorder(), method="HEAD")
        assert r.status_code == 200
        assert len(memo_puts) == 1
        with pytest.raises(t.ProtocolError, match="both Content-Length and Transfer-Encoding"):
            await client.fetch(evil.url(), Recorder())
