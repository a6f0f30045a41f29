"""Time from HTTP Date headers: plain and precise readings against real local servers.

The test server's Date comes from a deliberately shifted clock, so the true
offset is known; the precise reading must land within 0.05 s of it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trio.testing

from trio_timehttp import (
    InvalidURL,
    ProtocolError,
    Timeout,
    TimeSample,
    query_http_time,
    query_many,
    serve_time,
)
from trio_timehttp._sample import StopRule

from helpers import ServerRequest, serve_evil, serve_http

Reply = tuple[int, list[tuple[str, str]], bytes]


def dated(shift: float, status: int = 200, *, head_status: int | None = None,
          head_date: bool = True) -> Callable[[ServerRequest], Reply]:  # fmt: skip
    """A handler whose Date header reads our clock plus ``shift`` seconds."""

    def handler(request: ServerRequest) -> Reply:
        headers = [("date", email.utils.formatdate(time.time() + shift, usegmt=True))]
        if request.method == "HEAD":
            if not head_date:
                headers = []
            return (head_status or status), headers, b""
        return status, headers, b"body"

    return handler


async def test_plain_reading_is_within_a_second_and_its_interval_holds_the_truth(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(serve_http, dated(-3.6))
    sample = await query_http_time(server.url("/"))
    assert isinstance(sample, TimeSample)
    assert sample.host == "127.0.0.1"
    assert sample.port == server.port
    assert abs(sample.offset - (-3.6)) <= 1.0 + sample.rtt
    assert abs(sample.offset - (-3.6)) <= sample.uncertainty
    # Centred; the interval starts before the connect, so it is a little
    # wider than the request's round trip.
    assert sample.uncertainty >= (1 + sample.rtt) / 2
    assert sample.uncertainty < 0.6
    assert (sample.protocol, sample.probes) == ("http", 1)
    assert [r.method for r in server.requests] == ["HEAD"]
    # As htpdate: caches must not answer for the origin.
    assert server.requests[0].header("cache-control") == "no-cache"
    assert server.requests[0].header("pragma") == "no-cache"


@pytest.mark.slow
@pytest.mark.parametrize("truth", [100.37, -3.6])
async def test_precise_reading_is_within_50_ms(nursery: trio.Nursery, truth: float) -> None:
    server = await nursery.start(serve_http, dated(truth))
    sample = await query_http_time(server.url("/"), precise=True)
    assert abs(sample.offset - truth) <= 0.05
    assert abs(sample.offset - truth) <= sample.uncertainty + 0.002  # Date has no rounding slop
    assert sample.uncertainty < 0.05
    assert sample.server_time == pytest.approx(sample.local_time + sample.offset)
    # Polite: a bounded number of probes, on a few keep-alive connections (at
    # most 6 at once; a probe abandoned mid-way takes its connection with it).
    assert len(server.requests) <= StopRule().jitter_probes + 2  # a HEAD retried or two
    assert sample.probes <= len(server.requests)
    assert server.connections <= 10


@pytest.mark.parametrize("status", [405, 501])
async def test_head_refused_falls_back_to_get(nursery: trio.Nursery, status: int) -> None:
    server = await nursery.start(serve_http, dated(0.0, head_status=status))
    sample = await query_http_time(server.url("/"))
    assert abs(sample.offset) <= sample.uncertainty
    assert [r.method for r in server.requests] == ["HEAD", "GET"]


async def test_head_without_date_falls_back_to_get(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http, dated(0.0, head_date=False))
    await query_http_time(server.url("/"))
    assert [r.method for r in server.requests] == ["HEAD", "GET"]


async def test_redirects_are_not_followed_the_first_date_counts(nursery: trio.Nursery) -> None:
    def handler(request: ServerRequest) -> Reply:
        date = email.utils.formatdate(time.time() + 500, usegmt=True)
        return 301, [("date", date), ("location", "/elsewhere")], b""

    server = await nursery.start(serve_http, handler)
    sample = await query_http_time(server.url("/"))
    assert abs(sample.offset - 500) <= sample.uncertainty
    assert [r.target for r in server.requests] == ["/"]


@pytest.mark.parametrize(
    ("date", "message"),
    [(None, "no Date header"), ("yesterday-ish", "unparsable Date")],
)
async def test_missing_or_bad_date_is_a_protocol_error(
    nursery: trio.Nursery, date: str | None, message: str
) -> None:
    def handler(request: ServerRequest) -> Reply:
        return 200, ([("date", date)] if date else []), b""

    server = await nursery.start(serve_http, handler)
    with pytest.raises(ProtocolError, match=message) as info:
        await query_http_time(server.url("/"))
    assert server.url("/") in str(info.value)


@pytest.mark.parametrize("date", ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"])
async def test_obsolete_date_formats_are_read(nursery: trio.Nursery, date: str) -> None:
    def handler(request: ServerRequest) -> Reply:
        return 200, [("date", date)], b""

    server = await nursery.start(serve_http, handler)
    sample = await query_http_time(server.url("/"))
    assert sample.server_time == 784111777.5  # the middle of that second


async def test_silent_server_times_out_within_the_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await nursery.start(serve_evil, [("recv",), ("forever",)])
    start = trio.current_time()
    with pytest.raises(Timeout, match="within 2 s"):
        await query_http_time(server.url("/"), timeout=2)
    assert trio.current_time() - start == pytest.approx(2, abs=0.01)


async def test_precise_returns_what_it_has_when_the_deadline_passes(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(serve_http, dated(7.25))
    sample = await query_http_time(server.url("/"), precise=True, timeout=0.5)
    # Fewer probes than it wanted, but a correct (wider) interval.
    assert abs(sample.offset - 7.25) <= sample.uncertainty + 0.002
    assert len(server.requests) < 20


async def test_bad_url_is_invalid() -> None:
    with pytest.raises(InvalidURL):
        await query_http_time("ftp://127.0.0.1/")


async def test_query_many_mixes_urls_and_rfc868_hosts(
    nursery: trio.Nursery, refused_port: int
) -> None:
    server = await nursery.start(serve_http, dated(0.0))
    listeners, _ = await nursery.start(partial(serve_time, 0, host="127.0.0.1", udp=False))
    port = listeners[0].socket.getsockname()[1]
    dead = f"http://127.0.0.1:{refused_port}/"
    results = await query_many([server.url("/"), f"127.0.0.1:{port}", dead])
    assert isinstance(results[0], TimeSample)
    assert results[0].port == server.port
    assert isinstance(results[1], TimeSample)
    assert results[1].port == port
    assert not isinstance(results[2], TimeSample)


async def test_an_answer_from_a_cache_is_not_the_origins_clock(nursery: trio.Nursery) -> None:
    # A cache serves its stored response: the origin's Date of long ago, and Age.
    def cached(request: ServerRequest) -> Reply:
        return 200, [("date", email.utils.formatdate(time.time() - 3000, usegmt=True)),
                     ("age", "3000")], b""  # fmt: skip

    server = await nursery.start(serve_http, cached)
    with pytest.raises(ProtocolError, match=r"from a cache \(Age: 3000\)"):
        await query_http_time(server.url("/"))
    assert len(server.requests) == 3  # asked again, no-cache each time, then gave up


async def test_cached_answers_are_skipped_fresh_ones_count(nursery: trio.Nursery) -> None:
    # Every other answer comes from a cache with a stale Date: they are skipped.
    def sometimes_cached(request: ServerRequest) -> Reply:
        if len(server.requests) % 2 == 0:
            return 200, [("date", email.utils.formatdate(time.time() - 60, usegmt=True)),
                         ("age", "60")], b""  # fmt: skip
        return 200, [("date", email.utils.formatdate(time.time() + 7.25, usegmt=True))], b""

    server = await nursery.start(serve_http, sometimes_cached)
    sample = await query_http_time(server.url("/"), precise=True)
    assert abs(sample.offset - 7.25) <= sample.uncertainty + 1e-6
    assert sample.probes < len(server.requests)


@pytest.mark.parametrize("char", ["\u200d", "\u00ad", "\ufeff"])
async def test_url_host_with_an_ignorable_character_is_invalid(char: str) -> None:
    # The idna codec would map it away and query a host the caller never wrote.
    with pytest.raises(InvalidURL, match=f"U\\+{ord(char):04X}"):
        await query_http_time(f"http://ex{char}ample.com/", timeout=2)
