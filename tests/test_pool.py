"""The pool under contention: released connections go to waiters, not to the bin.

Real sockets on loopback (plain and trustme TLS), in-process h11 servers
(``tests/helpers.py``); the pool itself is also driven directly with fake
transports where only its bookkeeping is at stake.
"""

from __future__ import annotations

import ssl
from collections.abc import Hashable

import pytest
import trio
import trio.testing

import trio_timehttp as t
from trio_timehttp._pool import PASS_LIMIT, Pool
from trio_timehttp._transport import Transport

from helpers import HTTPServer, Recorder, ServerRequest, pool_stats, serve_http


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


async def slow_ok(req: ServerRequest) -> object:
    await trio.sleep(0.005)  # keep every task contending for the connections
    if req.target == "/close":
        return 200, [("connection", "close")], b"bye"
    return 200, [], b"ok"


async def _burst(client: t.Client, urls: list[str]) -> list[int | None]:
    statuses: list[int | None] = []

    async def one(url: str) -> None:
        statuses.append((await client.fetch(url, Recorder())).status_code)

    async with trio.open_nursery() as n:
        for url in urls:
            n.start_soon(one, url)
    return statuses


@pytest.mark.parametrize(("bound", "tasks"), [(1, 10), (2, 40), (4, 8), (100, 5)])
async def test_waiters_reuse_released_connections(
    nursery: trio.Nursery, bound: int, tasks: int
) -> None:
    srv: HTTPServer = await nursery.start(serve_http, slow_ok)
    async with t.Client(max_connections=bound) as client:
        for _wave in range(2):
            assert await _burst(client, [srv.url("/")] * tasks) == [200] * tasks
        assert pool_stats(client).open <= min(bound, tasks)
    assert srv.connections == min(bound, tasks)


async def test_waiters_reuse_over_tls(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    srv = await nursery.start(lambda **kw: serve_http(slow_ok, ssl_context=server_ctx, **kw))
    async with t.Client(max_connections=2, ssl_context=client_ctx) as client:
        assert await _burst(client, [srv.url("/")] * 20) == [200] * 20
    assert srv.connections == 2


async def test_two_origins_at_the_bound_all_finish_within_it(nursery: trio.Nursery) -> None:
    a: HTTPServer = await nursery.start(serve_http, slow_ok)
    b: HTTPServer = await nursery.start(serve_http, slow_ok)
    urls = [a.url("/"), b.url("/")] * 8
    async with t.Client(max_connections=1) as client:
        assert await _burst(client, urls) == [200] * 16
        assert pool_stats(client).open == 1
    # A connection is closed for the other origin only when it must be:
    # never more connections than switches between origins, never all 16.
    assert a.connections + b.connections < 16
    assert a.open + b.open <= 1


async def test_server_closing_each_connection_still_serves_every_waiter(
    nursery: trio.Nursery,
) -> None:
    srv: HTTPServer = await nursery.start(serve_http, slow_ok)
    async with t.Client(max_connections=2) as client:
        assert await _burst(client, [srv.url("/close")] * 6) == [200] * 6
        assert pool_stats(client).open == 0
    assert srv.connections == 6


async def test_cancelled_waiter_leaves_no_slot_behind(nursery: trio.Nursery) -> None:
    release = trio.Event()

    async def gate(req: ServerRequest) -> object:
        await release.wait()
        return 200, [], b"ok"

    srv: HTTPServer = await nursery.start(serve_http, gate)
    async with t.Client(max_connections=1) as client:
        statuses: list[int | None] = []

        async def one() -> None:
            statuses.append((await client.fetch(srv.url("/"), Recorder())).status_code)

        async with trio.open_nursery() as n:
            n.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.05) as scope:  # a waiter given up
                await client.fetch(srv.url("/"), Recorder(), timeout=None)
            assert scope.cancelled_caught
            n.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert statuses == [200, 200]
        assert pool_stats(client) == (1, 1)
    assert srv.connections == 1


# ------------------------------------------------- the pool's own bookkeeping


class FakeTransport(Transport):
    """Stands for a socket: the pool only asks whether it is closed or reusable."""

    def __init__(self) -> None:
        super().__init__()

    def fit_for_reuse(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


async def _connect() -> Transport:
    await trio.lowlevel.checkpoint()
    return FakeTransport()


async def test_put_hands_to_same_key_waiter_and_closes_for_other_key() -> None:
    pool = Pool(1, 60.0)
    first = await pool.checkout("a", _connect)
    got: dict[str, object] = {}

    async def want(key: Hashable) -> None:
        got[str(key)] = await pool.checkout(key, _connect)

    async with trio.open_nursery() as n:
        n.start_soon(want, "b")
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(want, "a")
        await trio.testing.wait_all_tasks_blocked()
        pool.put(first)  # the waiter for "a" gets it although "b" queued first
        await trio.testing.wait_all_tasks_blocked()
        assert got["a"] is first
        assert not first.closed
        assert first.reused
        pool.put(first)  # nobody waits for "a" now: closed to make room for "b"
    assert first.closed
    assert pool.stats() == (1, 0)


async def test_fresh_checkout_at_the_bound_evicts_its_own_idle_one() -> None:
    pool = Pool(1, 60.0)
    conn = await pool.checkout("a", _connect)
    pool.put(conn)
    with trio.fail_after(1):
        fresh = await pool.checkout("a", _connect, fresh=True)
    assert conn.closed
    assert fresh is not conn
    assert pool.stats() == (1, 0)


async def test_failed_connect_of_a_waiter_passes_the_slot_on() -> None:
    pool = Pool(1, 60.0)
    held = await pool.checkout("a", _connect)

    async def refuse() -> Transport:
        await trio.lowlevel.checkpoint()
        raise OSError("refused")

    results: list[object] = []

    async def try_connect(connect: object) -> None:
        try:
            results.append(await pool.checkout("b", connect))  # type: ignore[arg-type]
        except OSError as exc:
            results.append(str(exc))

    async with trio.open_nursery() as n:
        n.start_soon(try_connect, refuse)
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(try_connect, _connect)
        await trio.testing.wait_all_tasks_blocked()
        held.close()
    assert results[0] == "refused"
    assert pool.stats() == (1, 0)


async def test_closed_pool_fails_waiters_cleanly() -> None:
    pool = Pool(1, 60.0)
    held = await pool.checkout("a", _connect)
    errors: list[BaseException] = []

    async def want() -> None:
        try:
            await pool.checkout("a", _connect)
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as n:
        n.start_soon(want)
        await trio.testing.wait_all_tasks_blocked()
        pool.close_all()
        pool.put(held)  # closed: not handed on, the waiter gets the slot and fails
    assert len(errors) == 1
    assert held.closed
    assert pool.stats() == (0, 0)


async def test_a_busy_key_cannot_starve_a_waiter_for_another_key() -> None:
    pool = Pool(1, 60.0)
    conn = await pool.checkout("busy", _connect)
    served: list[str] = []

    async def want(key: str) -> None:
        got = await pool.checkout(key, _connect)
        served.append(key)
        await trio.lowlevel.checkpoint()
        pool.put(got)

    async with trio.open_nursery() as n:
        n.start_soon(want, "quiet")
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3 * PASS_LIMIT):
            n.start_soon(want, "busy")
        await trio.testing.wait_all_tasks_blocked()
        pool.put(conn)
    assert served.index("quiet") == PASS_LIMIT  # passed over exactly PASS_LIMIT times
    assert len(served) == 3 * PASS_LIMIT + 1
    assert pool.stats().open == 1
