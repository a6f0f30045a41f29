"""The HTTP examples, run as programs against a local h11 server started by the test.

Each example runs as ``python examples/X.py URL`` in a subprocess (as a user
would run it); the test checks the lines it prints and its exit status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from helpers import ServerRequest, serve_http

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PAGE = (
    "<html><head><title>links</title></head><body>"
    '<a href="/one">one</a> <a href="two.html">two</a> <a href="/one">again</a>'
    '<a href="https://example.org/x">ext</a> <a name="anchor">none</a>'
    "<a href='caf\u00e9'>non-ascii</a></body></html>"
)
BASED = '<base href="/docs/"><a href="guide.html">guide</a>'


def handler(request: ServerRequest) -> Any:
    if request.target == "/":
        return 200, [("content-type", "text/plain"), ("x-demo", "yes")], b"hello"
    if request.target == "/old":
        return 302, [("location", "/middle")], b"moved"
    if request.target == "/middle":
        return 301, [("location", "/dir/page")], b""
    if request.target == "/dir/page":
        return 200, [("content-type", "text/html; charset=utf-8")], PAGE.encode()
    if request.target == "/based":
        return 200, [("content-type", "text/html")], BASED.encode()
    return 404, [("content-type", "text/plain")], b"no such page"


async def run_example(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stdout.decode().splitlines()


async def test_http_get_prints_like_the_dummy_consumer() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        result = await run_example("http_get.py", server.url("/"))
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert lines(result) == [
        "status => HTTP/1.1 200 OK",
        "content-type = text/plain",
        "x-demo = yes",
        "content-length = 5",
        "5 bytes in body",
    ]


async def test_http_get_does_not_follow_redirects() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        result = await run_example("http_get.py", server.url("/old"))
        nursery.cancel_scope.cancel()
    assert result.returncode == 0
    out = lines(result)
    assert out[0] == "status => HTTP/1.1 302 Found"
    assert "location = /middle" in out
    assert out[-1] == "5 bytes in body"


async def test_http_get_connection_failed(refused_port: int) -> None:
    result = await run_example("http_get.py", f"http://127.0.0.1:{refused_port}/")
    assert result.returncode == 1
    assert lines(result) == ["connection failed", "0 bytes in body"]
    assert result.stderr.decode().startswith("error: ")
    assert b"Traceback" not in result.stderr


async def test_http_redirect_follows_and_says_so() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        result = await run_example("http_redirect.py", server.url("/old"))
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    out = lines(result)
    assert out[:3] == [
        f"redirecting to {server.url('/middle')} ...",
        f"redirecting to {server.url('/dir/page')} ...",
        "status => HTTP/1.1 200 OK",
    ]
    assert "content-type = text/html; charset=utf-8" in out
    assert out[-1] == f"{len(PAGE.encode())} bytes in body"


async def test_http_redirect_without_a_redirect() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        result = await run_example("http_redirect.py", server.url("/"))
        nursery.cancel_scope.cancel()
    assert lines(result)[0] == "status => HTTP/1.1 200 OK"
    assert lines(result)[-1] == "5 bytes in body"


async def test_html_links_resolved_against_the_final_url() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, handler)
        result = await run_example("html_links.py", server.url("/old"))
        based = await run_example("html_links.py", server.url("/based"))
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert lines(result) == [
        server.url("/one"),
        server.url("/dir/two.html"),
        "https://example.org/x",
        server.url("/dir/caf\u00e9"),
    ]
    assert "4 links" in result.stderr.decode()
    assert lines(based) == [server.url("/docs/guide.html")]


async def test_html_links_error_is_one_line(refused_port: int) -> None:
    result = await run_example("html_links.py", f"http://127.0.0.1:{refused_port}/")
    assert result.returncode == 1
    assert result.stdout == b""
    assert len(result.stderr.decode().splitlines()) == 1


@pytest.mark.parametrize("url", ["htp://x/", "http://[::1", "http://127.0.0.1:99999/"])
@pytest.mark.parametrize("name", ["http_get.py", "http_redirect.py", "html_links.py"])
async def test_an_unusable_url_is_a_usage_mistake(name: str, url: str) -> None:
    # Before: exit 1, where the command line (and every example's usage path) says 2.
    result = await run_example(name, url)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith("usage: ")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["http_redirect.py", "html_links.py"])
async def test_a_redirect_to_an_unusable_url_is_a_failure(
    nursery: trio.Nursery, name: str
) -> None:
    bad = await nursery.start(serve_http, lambda r: (302, [("location", "htp://x/")], b""))
    result = await run_example(name, bad.url("/"))
    err = result.stderr.decode()
    assert result.returncode == 1, err  # the server's mistake, not the user's
    assert err.startswith("error: ")


@pytest.mark.parametrize("name", ["http_get.py", "http_redirect.py", "html_links.py"])
async def test_usage(name: str) -> None:
    result = await run_example(name)
    assert result.returncode != 0
    assert b"usage:" in result.stderr


@pytest.mark.parametrize("name", ["http_get.py", "http_redirect.py", "html_links.py"])
async def test_ctrl_c_at_a_terminal_is_130_without_a_traceback(
    nursery: trio.Nursery, name: str
) -> None:
    from ptyutil import Terminal, finish

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    accepted = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        accepted.set()  # the example is past its imports and waiting for an answer
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, hold, [listener])
    url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/"
    term = Terminal()
    proc = await term.start([sys.executable, str(EXAMPLES / name), url])
    try:
        with trio.fail_after(30):
            await accepted.wait()
        term.ctrl_c()
        assert await finish(proc) == 130
        out = await term.read_to_end()
    finally:
        await finish(proc)
        term.close()
    assert b"Traceback" not in out
