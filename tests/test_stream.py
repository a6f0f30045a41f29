"""``Client.stream``: the pull API over the same exchange (real sockets on loopback)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_timehttp as t

from helpers import Recorder, ServerRequest, count_open_sockets, pool_stats, serve_evil, serve_http


def handler(req: ServerRequest) -> object:
    if req.target == "/big":
        return 200, [], b"B" * 300_000
    if req.target == "/small-rest":
        return 200, [], b"s" * 1000
    if req.target == "/redirect":
        return 302, [("location", "/final")], b"moved"
    return 200, [], f"hello {req.target}".encode()


async def test_aiter_bytes_then_reuse(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, handler)
    async with t.Client() as client:
        for path in ["/a", "/big", "/b"]:
            async with client.stream(srv.url(path)) as response:
                assert response.status_code == 200
                got = b"".join([piece async for piece in response.aiter_bytes()])
            assert got == (b"B" * 300_000 if path == "/big" else f"hello {path}".encode())
        assert pool_stats(client) == (1, 1)
    assert srv.connections == 1


async def test_aread_and_a_second_read_is_refused(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, handler)
    async with t.Client() as client, client.stream(srv.url("/x")) as response:
        assert await response.aread() == b"hello /x"
        with pytest.raises(RuntimeError, match="already read"):
            await response.aread()


async def test_a_fetched_response_has_no_pull_body(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, handler)
    response = await t.fetch(srv.url("/x"), Recorder())
    with pytest.raises(RuntimeError, match="not streamed"):
        await response.aread()


@pytest.mark.parametrize(("path", "connections"), [("/small-rest", 1), ("/big", 2)])
async def test_leaving_early_drains_a_small_rest_or_closes(
    nursery: trio.Nursery, path: str, connections: int
) -> None:
    srv = await nursery.start(serve_http, handler)
    async with t.Client() as client:
        async with client.stream(srv.url(path)) as response:
            assert response.status_code == 200  # body never read
        async with client.stream(srv.url("/after")) as response:
            assert await response.aread() == b"hello /after"
    assert srv.connections == connections


async def test_redirects_only_when_asked(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, handler)
    async with t.Client() as client:
        async with client.stream(srv.url("/redirect")) as response:
            assert response.status_code == 302
        async with client.stream(srv.url("/redirect"), follow_redirects=True) as response:
            assert response.status_code == 200
            assert [h.status_code for h in response.history] == [302]
            assert await response.aread() == b"hello /final"
    assert srv.connections == 1  # the 302's body was drained


async def test_the_deadline_covers_the_whole_block(nursery: trio.Nursery) -> None:
    evil = await nursery.start(
        serve_evil,
        [
            ("recv",),
            ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
            ("drip", b"x" * 1000, 0.01),
        ],
    )
    await trio.testing.wait_all_tasks_blocked()
    before = count_open_sockets()
    start = trio.current_time()
    async with t.Client() as client:
        with pytest.raises(t.Timeout, match=r"timed out after 0\.3 s"):
            async with client.stream(evil.url(), timeout=0.3) as response:
                await response.aread()
        assert pool_stats(client) == (0, 0)
    assert trio.current_time() - start < 2
    await trio.testing.wait_all_tasks_blocked()
    assert count_open_sockets() <= before + evil.open


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "after 3 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "malformed response head"),
    ],
)
async def test_errors_are_the_same_as_fetch(
    nursery: trio.Nursery, wire: bytes, message: str
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("send", wire), ("close",)])
    async with t.Client() as client:
        with pytest.raises(t.ProtocolError, match=message):
            async with client.stream(evil.url()) as response:
                await response.aread()
        assert pool_stats(client) == (0, 0)


async def test_an_error_in_the_block_closes_the_connection(nursery: trio.Nursery) -> None:
    srv = await nursery.start(serve_http, handler)
    async with t.Client() as client:
        with pytest.raises(KeyError):
            await _read_one_piece_then_fail(client, srv.url("/big"))
        assert pool_stats(client) == (0, 0)


async def _read_one_piece_then_fail(client: t.Client, url: str) -> None:
    async with client.stream(url) as response:
        async for _ in response.aiter_bytes():
            raise KeyError("mine")
