"""A caller's mistakes are clear TypeError/ValueError naming the argument, close() once.

Programming errors, not network ones: nothing is sent (the server counts
connections), the consumer is closed exactly once, and the message names
the argument. Client, Client.fetch, Client.stream and the module-level fetch.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_timehttp as t
from trio_timehttp._checks import check_count, check_seconds
from trio_timehttp._headers import Headers

from helpers import HTTPServer, Recorder, serve_http

BAD_HEADERS: list[tuple[Any, type[Exception], str]] = [
    ({"X": None}, TypeError, "value of 'X' must be str or bytes, not NoneType"),
    ([("X", 5)], TypeError, "value of 'X' must be str or bytes, not int"),
    ([(5, "x")], TypeError, "field name must be str or bytes, not int"),
    ([("a",)], TypeError, r"\(name, value\) pair"),
    ("Authorization: x", TypeError, "mapping or an iterable"),
    (42, TypeError, "mapping or an iterable"),
]

BAD_TIMEOUTS: list[tuple[Any, type[Exception], str]] = [
    ("5", TypeError, "timeout must be a number of seconds or None, not str"),
    (True, TypeError, "not bool"),
    (-1, ValueError, "timeout must be >= 0"),
    (float("nan"), ValueError, "timeout must be >= 0"),
]


@pytest.mark.parametrize(("headers", "kind", "words"), BAD_HEADERS)
def test_headers_refuse_what_is_not_text(headers: Any, kind: type[Exception], words: str) -> None:
    with pytest.raises(kind, match=words):
        Headers(headers)


def test_headers_still_take_text_and_bytes() -> None:
    h = Headers([("X-A", "1"), (b"X-B", b"\xe9")])
    assert h.items() == [("x-a", "1"), ("x-b", "\xe9")]
    assert Headers({"Y": "2"}).items() == [("y", "2")]


def test_checks() -> None:
    assert check_seconds("t", None) is None
    assert check_seconds("t", 2) == 2.0
    assert check_seconds("t", float("inf")) == float("inf")
    with pytest.raises(TypeError, match="t must be a number of seconds, not NoneType"):
        check_seconds("t", None, none_ok=False)
    assert check_count("n", 3, minimum=1) == 3
    with pytest.raises(ValueError, match="n must be at least 1, not 0"):
        check_count("n", 0, minimum=1)
    with pytest.raises(TypeError, match="n must be an int, not float"):
        check_count("n", 2.5)


@pytest.fixture
async def server(nursery: trio.Nursery) -> HTTPServer:
    return await nursery.start(serve_http)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("headers", "kind", "words"), BAD_HEADERS)
async def test_fetch_bad_headers(
    server: HTTPServer, headers: Any, kind: type[Exception], words: str
) -> None:
    for async_ in (False, True):
        c = Recorder(async_=async_)
        with pytest.raises(kind, match=words):
            await t.fetch(server.url("/"), c, headers=headers)
        assert c.events == ["close"]
    async with t.Client() as client:
        c = Recorder()
        with pytest.raises(kind, match=words):
            await client.fetch(server.url("/"), c, headers=headers)
        assert c.events == ["close"]
        with pytest.raises(kind, match=words):
            async with client.stream(server.url("/"), headers=headers):
                pass  # pragma: no cover
    with pytest.raises(kind, match=words):
        t.Client(headers=headers)
    assert server.connections == 0


@pytest.mark.parametrize(("timeout", "kind", "words"), BAD_TIMEOUTS)
async def test_bad_timeouts(
    server: HTTPServer, timeout: Any, kind: type[Exception], words: str
) -> None:
    c = Recorder()
    with pytest.raises(kind, match=words):
        await t.fetch(server.url("/"), c, timeout=timeout)
    assert c.events == ["close"]
    async with t.Client() as client:
        c = Recorder()
        with pytest.raises(kind, match=words):
            await client.fetch(server.url("/"), c, timeout=timeout)
        assert c.events == ["close"]
        with pytest.raises(kind, match=words):
            async with client.stream(server.url("/"), timeout=timeout):
                pass  # pragma: no cover
    with pytest.raises(kind, match=words):
        t.Client(timeout=timeout)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("kwargs", "kind", "words"),
    [
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1"),
        ({"max_connections": "2"}, TypeError, "max_connections must be an int"),
        ({"keepalive_expiry": None}, TypeError, "keepalive_expiry must be a number"),
        ({"keepalive_expiry": -1}, ValueError, "keepalive_expiry must be >= 0"),
    ],
)
def test_bad_client_settings(kwargs: dict[str, Any], kind: type[Exception], words: str) -> None:
    with pytest.raises(kind, match=words):
        t.Client(**kwargs)


async def test_a_good_fetch_after_bad_ones_still_works(server: HTTPServer) -> None:
    async with t.Client() as client:
        with pytest.raises(TypeError):
            await client.fetch(server.url("/"), Recorder(), headers={"X": None})  # type: ignore[dict-item]
        r = await client.fetch(server.url("/"), Recorder(), headers={"X": "1"}, timeout=5)
    assert r.status_code == 200
    assert server.connections == 1
