"""The RFC 868 client against in-process servers on loopback.

Timeouts run under ``autojump_clock`` (the peers are in-process, so Trio's
clock jumps only when every task, the fake server included, is blocked);
precise readings use real time against our own server with a shifted clock.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_timehttp import (
    ConnectError,
    InvalidURL,
    TimeHTTPError,
    Timeout,
    TimeProtocolError,
    TimeSample,
    _httptime,
    _timeclient,
    encode_time,
    query_many,
    query_time,
    serve_time,
)
from trio_timehttp._hostchars import forbidden_char

from helpers import bound_trio_socket

FIXED = 1_800_000_000


async def start_tcp(
    nursery: trio.Nursery,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    host: str = "127.0.0.1",
) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host=host))
    return int(listeners[0].socket.getsockname()[1])


def sends(
    payload: bytes, *, then_close: bool = True
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """A TCP handler that sends ``payload``, then closes or holds the connection open."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            if payload:
                await stream.send_all(payload)
            if not then_close:
                await trio.sleep_forever()

    return handler


def unused_udp_port() -> int:
    """A UDP port just freed: a bound UDP socket would queue datagrams, not refuse them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- TCP replies


@pytest.mark.parametrize("then_close", [True, False])
@pytest.mark.parametrize("payload", [b"", b"abc"])
async def test_short_reply_is_a_protocol_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, payload: bytes, then_close: bool
) -> None:
    port = await start_tcp(nursery, sends(payload, then_close=then_close))
    if then_close:
        with pytest.raises(TimeProtocolError, match=f"127.0.0.1:{port} sent {len(payload)} byte"):
            await query_time("127.0.0.1", port)
    else:  # a short reply and silence: the deadline decides
        with pytest.raises(Timeout, match=f"127.0.0.1:{port}"):
            await query_time("127.0.0.1", port, timeout=3)


@pytest.mark.parametrize("extra", [b"", b"x", b"\0\0\0\0", b"y" * 996])
@pytest.mark.parametrize("then_close", [True, False])
async def test_first_four_bytes_count(
    nursery: trio.Nursery, extra: bytes, then_close: bool
) -> None:
    # then_close=False: the server holds the connection open after its bytes;
    # the client must not wait for the close.
    port = await start_tcp(nursery, sends(encode_time(FIXED + 0.5) + extra, then_close=then_close))
    with trio.fail_after(5):
        sample = await query_time(f"127.0.0.1:{port}")
    assert math.floor(sample.server_time) == FIXED
    assert sample.host == "127.0.0.1"
    assert sample.port == port


async def test_bytes_in_separate_segments(nursery: trio.Nursery) -> None:
    async def drip(stream: trio.SocketStream) -> None:
        async with stream:
            for byte in encode_time(FIXED):
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.01)

    port = await start_tcp(nursery, drip)
    assert math.floor((await query_time("127.0.0.1", port)).server_time) == FIXED


async def test_plain_sample_fields(nursery: trio.Nursery) -> None:
    listeners, _ = await nursery.start(
        functools.partial(
            serve_time, 0, host="127.0.0.1", udp=False, clock=lambda: time.time() + 42.7
        )
    )
    port = listeners[0].socket.getsockname()[1]
    before = time.time()
    sample = await query_time("localhost", port)
    after = time.time()
    assert isinstance(sample, TimeSample)
    assert before <= sample.local_time <= after
    assert 0 <= sample.rtt <= after - before
    assert sample.offset == pytest.approx(sample.server_time - sample.local_time)
    # Centred: the midpoint and half-width of [S - end, S + 1 - start).
    assert sample.uncertainty == pytest.approx((1 + sample.rtt) / 2)
    assert sample.server_time % 1 == pytest.approx(0.5)
    assert abs(sample.offset - 42.7) <= sample.uncertainty
    assert (sample.host, sample.protocol, sample.probes) == ("localhost", "tcp", 1)


async def test_never_answering_server_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start_tcp(nursery, sends(b"", then_close=False))
    start = trio.current_time()
    with pytest.raises(Timeout, match=f"127.0.0.1:{port}"):
        await query_time("127.0.0.1", port, timeout=2.5)
    assert trio.current_time() - start == pytest.approx(2.5)


async def test_default_timeout_is_five_seconds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start_tcp(nursery, sends(b"", then_close=False))
    start = trio.current_time()
    with pytest.raises(Timeout):
        await query_time("127.0.0.1", port)
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_outer_cancel_scope_wins(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start_tcp(nursery, sends(b"", then_close=False))
    with trio.move_on_after(1) as scope:
        await query_time("127.0.0.1", port, timeout=10)
    assert scope.cancelled_caught


async def test_refused_is_a_connect_error(refused_port: int) -> None:
    port = refused_port
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}") as info:
        await query_time("127.0.0.1", port)
    assert isinstance(info.value.__cause__, OSError)


async def test_unknown_host_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match=r"no-such-host\.invalid"):
        await query_time("no-such-host.invalid", 37)
    with pytest.raises(ConnectError, match=r"no-such-host\.invalid"):
        await query_time("no-such-host.invalid", 37, udp=True)


async def test_ipv6_host_with_port(nursery: trio.Nursery) -> None:
    port = await start_tcp(nursery, sends(encode_time(FIXED)), host="::1")
    sample = await query_time(f"[::1]:{port}", 1)  # the port in host wins
    assert (sample.host, sample.port, math.floor(sample.server_time)) == ("::1", port, FIXED)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("example.org", 37, ("example.org", 37)),
        ("example.org:8037", 37, ("example.org", 8037)),
        ("[2001:db8::1]:99", 37, ("2001:db8::1", 99)),
        ("[2001:db8::1]", 37, ("2001:db8::1", 37)),
        ("2001:db8::1", 38, ("2001:db8::1", 38)),
    ],
)
def test_split_host(host: str, port: int, expected: tuple[str, int]) -> None:
    assert _timeclient._split_host(host, port) == expected


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("example.org:", 37),
        ("example.org:http", 37),
        ("example.org:99999", 37),
        ("example.org:-1", 37),
        ("example.org", 0),
        ("[::1", 37),
        ("[::1]x", 37),
        ("[::1]:", 37),
        ("[]:37", 37),
        (":37", 37),
    ],
)
async def test_malformed_host_is_a_connect_error(host: str, port: int) -> None:
    with pytest.raises(ConnectError, match=r"malformed|out of range|empty"):
        await query_time(host, port)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=st.binary(max_size=64), then_close=st.booleans())
def test_random_replies_give_a_sample_or_a_library_error(reply: bytes, then_close: bool) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await start_tcp(nursery, sends(reply, then_close=then_close))
            if len(reply) < 4:
                # Closed: too short. Held open: the deadline passes.
                expected = TimeProtocolError if then_close else Timeout
                with pytest.raises(expected):
                    await query_time("127.0.0.1", port, timeout=0.2)
            else:
                sample = await query_time("127.0.0.1", port, timeout=0.2)
                assert encode_time(sample.server_time) == reply[:4]  # S + 0.5 floors to S
            nursery.cancel_scope.cancel()

    before = fd_count()
    trio.run(main)
    assert fd_count() == before  # nothing leaked, client or server side


# --------------------------------------------------------------------------- UDP


async def test_udp_query(nursery: trio.Nursery) -> None:
    _, socks = await nursery.start(
        functools.partial(serve_time, 0, tcp=False, clock=lambda: time.time() - 7.2)
    )
    for server in socks:
        host = "::1" if server.family == socket.AF_INET6 else "127.0.0.1"
        sample = await query_time(host, server.getsockname()[1], udp=True)
        assert abs(sample.offset + 7.2) <= sample.uncertainty
        assert sample.protocol == "udp"


class UDPPeer:
    """A UDP socket standing in for a server: counts requests, replies as told."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.sock = bound_trio_socket(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[tuple[bytes, tuple[str, int]]] = []

    def start(self, reply: Callable[[tuple[str, int]], Awaitable[None]]) -> None:
        self.nursery.start_soon(self._serve, reply)

    async def _serve(self, reply: Callable[[tuple[str, int]], Awaitable[None]]) -> None:
        while True:
            data, source = await self.sock.recvfrom(2048)
            self.requests.append((data, source))
            await reply(source)


@pytest.fixture
async def peer() -> AsyncIterator[UDPPeer]:
    async with trio.open_nursery() as nursery:
        udp_peer = UDPPeer(nursery)
        with udp_peer.sock:
            yield udp_peer
            nursery.cancel_scope.cancel()


async def test_udp_silence_times_out_after_one_retransmit_after_a_few_round_trips(
    peer: UDPPeer, autojump_clock: trio.testing.MockClock
) -> None:
    times: list[float] = []

    async def record(source: tuple[str, int]) -> None:
        times.append(trio.current_time())

    peer.start(record)
    start = trio.current_time()
    with pytest.raises(Timeout, match=f"127.0.0.1:{peer.port}"):
        await query_time("127.0.0.1", peer.port, udp=True, timeout=4)
    assert [data for data, _ in peer.requests] == [b"", b""]  # empty, and exactly one retry
    # After 3 assumed round trips (0.75 s), not half the deadline.
    assert times[1] - start == pytest.approx(3 * _timeclient.ASSUMED_RTT)
    assert peer.requests[0][1] == peer.requests[1][1]


@pytest.mark.parametrize("wrong", ["port", "address"])
async def test_udp_reply_from_elsewhere_is_not_believed(
    peer: UDPPeer, autojump_clock: trio.testing.MockClock, wrong: str
) -> None:
    host = "127.0.0.2" if wrong == "address" else "127.0.0.1"
    impostor = bound_trio_socket(socket.AF_INET, socket.SOCK_DGRAM, (host, 0))
    replies = 0

    async def reply(source: tuple[str, int]) -> None:
        nonlocal replies
        # The impostor answers first, with a wrong time; the real one only
        # answers the retransmit.
        await impostor.sendto(encode_time(FIXED - 1000), source)
        replies += 1
        if replies == 2:
            await peer.sock.sendto(encode_time(FIXED), source)

    peer.start(reply)
    with impostor:
        sample = await query_time("127.0.0.1", peer.port, udp=True, timeout=4)
    assert math.floor(sample.server_time) == FIXED
    assert len(peer.requests) == 2


def test_same_address_check() -> None:
    # The kernel filters a connected socket's input; the client checks too.
    same = _timeclient._same_address
    assert same(("::1", 37, 0, 0), ("::1", 37, 5, 0))
    assert not same(("127.0.0.1", 38), ("127.0.0.1", 37))
    assert not same(("127.0.0.2", 37), ("127.0.0.1", 37))


@pytest.mark.parametrize(
    ("size", "ok"), [(0, False), (3, False), (4, True), (8, True), (600, True)]
)
async def test_udp_reply_lengths(peer: UDPPeer, size: int, ok: bool) -> None:

    async def reply(source: tuple[str, int]) -> None:
        await peer.sock.sendto((encode_time(FIXED) + b"\xff" * size)[:size], source)

    peer.start(reply)
    if ok:
        sample = await query_time("127.0.0.1", peer.port, udp=True)
        assert math.floor(sample.server_time) == FIXED
    else:
        with pytest.raises(TimeProtocolError, match=f"sent {size} byte"):
            await query_time("127.0.0.1", peer.port, udp=True)


async def test_udp_refused_is_a_connect_error() -> None:
    port = unused_udp_port()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        await query_time("127.0.0.1", port, udp=True, timeout=3)


# --------------------------------------------------------------------------- many


async def test_query_many_order_and_dead_sources(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, refused_port: int
) -> None:
    good = await start_tcp(nursery, sends(encode_time(FIXED)))
    other = await start_tcp(nursery, sends(encode_time(FIXED + 5)))
    silent = await start_tcp(nursery, sends(b"", then_close=False))
    refused = refused_port
    start = trio.current_time()
    results = await query_many(
        [f"127.0.0.1:{silent}", f"127.0.0.1:{good}", f"127.0.0.1:{refused}", f"127.0.0.1:{other}"],
        timeout=3,
    )
    assert trio.current_time() - start == pytest.approx(3.0)  # the dead one bounds it, no more
    assert isinstance(results[0], Timeout)
    assert isinstance(results[1], TimeSample)
    assert math.floor(results[1].server_time) == FIXED
    assert isinstance(results[2], ConnectError)
    assert isinstance(results[3], TimeSample)
    assert math.floor(results[3].server_time) == FIXED + 5


async def test_query_many_sends_urls_to_query_http_time(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, float | None, bool, str | None, bool]] = []

    async def fake(
        url: str,
        *,
        timeout: float | None = None,
        precise: bool = False,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> TimeSample:
        calls.append((url, timeout, precise, proxy, trust_env))
        return TimeSample(url, 80, "http", FIXED, 0.0, 0.5, FIXED, 0.0, 1)

    monkeypatch.setattr(_httptime, "query_http_time", fake)
    port = await start_tcp(nursery, sends(encode_time(FIXED)))
    results = await query_many(
        ["http://a.example/", f"127.0.0.1:{port}", "HTTPS://b.example/"],
        timeout=4,
        proxy="http://p:1",
        trust_env=False,
    )
    # Started concurrently: the calls may come in any order, the results may not.
    # The proxy settings reach the HTTP sources only (RFC 868 is never proxied).
    assert sorted(calls) == [
        ("HTTPS://b.example/", 4, False, "http://p:1", False),
        ("http://a.example/", 4, False, "http://p:1", False),
    ]
    assert [r.host for r in results if isinstance(r, TimeSample)] == [
        "http://a.example/",
        "127.0.0.1",
        "HTTPS://b.example/",
    ]


async def test_query_many_empty() -> None:
    assert await query_many([]) == []


# --------------------------------------------------------------------------- precise


async def start_shifted_server(nursery: trio.Nursery, shift: float) -> tuple[int, int]:
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", clock=lambda: time.time() + shift)
    )
    return listeners[0].socket.getsockname()[1], socks[0].getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(("shift", "udp"), [(100.37, False), (-3.6, False), (100.37, True)])
async def test_precise_offset(nursery: trio.Nursery, shift: float, udp: bool) -> None:
    tcp_port, udp_port = await start_shifted_server(nursery, shift)
    port = udp_port if udp else tcp_port
    plain = await query_time("127.0.0.1", port, udp=udp)
    assert abs(plain.offset - shift) <= 1.0
    assert abs(plain.offset - shift) <= plain.uncertainty
    sample = await query_time("127.0.0.1", port, udp=udp, precise=True)
    assert abs(sample.offset - shift) <= 0.05
    assert abs(sample.offset - shift) <= sample.uncertainty + 1e-6
    assert sample.uncertainty <= 0.05
    assert sample.server_time == pytest.approx(sample.local_time + sample.offset)


async def test_precise_returns_what_it_has_at_the_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Answers the first connection only, then goes silent: the reading in
    # hand is returned when the deadline passes, not a Timeout.
    answered = 0

    async def once(stream: trio.SocketStream) -> None:
        nonlocal answered
        answered += 1
        async with stream:
            if answered == 1:
                await stream.send_all(encode_time(time.time()))
            else:
                await trio.sleep_forever()

    port = await start_tcp(nursery, once)
    sample = await query_time("127.0.0.1", port, precise=True, timeout=6)
    assert answered >= 2
    assert math.isfinite(sample.offset)
    assert abs(sample.offset) <= sample.uncertainty <= 1.5


async def test_precise_with_no_reading_is_a_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start_tcp(nursery, sends(b"", then_close=False))
    start = trio.current_time()
    with pytest.raises(Timeout):
        await query_time("127.0.0.1", port, precise=True)
    assert trio.current_time() - start == pytest.approx(15.0)


# --------------------------------------------------------------------------- bad input


UNENCODABLE = [
    "\u2603.example",
    "a" * 64 + ".example",
    "\u00e9" * 64 + ".example",
]


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("host", UNENCODABLE)
async def test_unencodable_host_is_a_connect_error(host: str, udp: bool) -> None:
    with pytest.raises(ConnectError, match=r"cannot (resolve|connect)") as info:
        await query_time(host, 37, udp=udp, timeout=5)
    assert host.split(".")[0] in str(info.value)


async def test_out_of_descriptors_is_a_connect_error(nursery: trio.Nursery) -> None:
    import resource

    _, socks = await nursery.start(functools.partial(serve_time, 0, host="127.0.0.1", tcp=False))
    port = socks[0].getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_count() + 16, hard))
    filler: list[int] = []
    try:
        with contextlib.suppress(OSError):  # take every descriptor left
            while True:
                filler.append(os.dup(0))
        with pytest.raises(ConnectError, match="udp") as info:
            await query_time("127.0.0.1", port, udp=True, timeout=2)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("source", ["htp://x", "ftp://127.0.0.1/", "ntp://pool.example:123"])
async def test_other_schemes_are_unsupported_not_malformed_ports(source: str) -> None:
    scheme = source.split(":")[0]
    [result] = await query_many([source], timeout=2)
    assert isinstance(result, InvalidURL)
    assert f"unsupported scheme {scheme!r}" in str(result)
    with pytest.raises(ConnectError, match=f"unsupported scheme {scheme!r}"):
        await query_time(source)


async def test_query_many_keeps_every_slot_whatever_the_sources(nursery: trio.Nursery) -> None:
    # One bad source is one error in its slot; never an ExceptionGroup.
    good = await start_tcp(nursery, sends(encode_time(FIXED)))
    sources = [*UNENCODABLE, "htp://x", "", "[::1", "http://[::1/", f"127.0.0.1:{good}"]
    results = await query_many(sources, timeout=3)
    assert len(results) == len(sources)
    assert all(isinstance(r, TimeHTTPError) for r in results[:-1]), results
    assert isinstance(results[-1], TimeSample)


async def test_syn_rtt_is_the_kernels_and_never_more_than_connect_took(
    nursery: trio.Nursery,
) -> None:
    port = await start_tcp(nursery, sends(encode_time(FIXED), then_close=False))
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        before = time.time()
        await sock.connect(("127.0.0.1", port))
        took = time.time() - before
        syn = _timeclient._syn_rtt(sock, took)
        assert 0 < syn <= took  # measured by the kernel on this handshake
        assert _timeclient._syn_rtt(sock, syn / 2) == 0.0  # implausible: refused, not trusted


#: Default-ignorable characters that getaddrinfo's numeric parse and IDNA 2003
#: drop silently: each would turn the host into one the caller never wrote.
IGNORABLES = ["\u200d", "\u200c", "\u00ad", "\u200b", "\ufeff", "\ufe0f", "\u2060", "\U000e0041"]


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("char", IGNORABLES)
@pytest.mark.parametrize("host", ["127.0.0{}.1", "ex{}ample.com", "[::1{}]"])
async def test_hosts_with_ignorable_characters_are_connect_errors(
    nursery: trio.Nursery, host: str, char: str, udp: bool
) -> None:
    # A live server on 127.0.0.1: the numeric parse would have reached it.
    tcp_port, udp_port = await start_shifted_server(nursery, 0.0)
    name = host.format(char)
    with pytest.raises(ConnectError, match=f"U\\+{ord(char):04X} is not allowed"):
        await query_time(f"{name}:{udp_port if udp else tcp_port}", udp=udp, timeout=2)
    [result] = await query_many([name], udp=udp, timeout=2)
    assert isinstance(result, ConnectError)


#: Text without marks (so never a virama before the inserted character).
_NAME_TEXT = st.text(st.characters(categories=["L", "N", "P"]), max_size=8)


@given(_NAME_TEXT, st.sampled_from(IGNORABLES), _NAME_TEXT)
def test_an_ignorable_character_is_found_wherever_it_is(head: str, char: str, tail: str) -> None:
    found = forbidden_char(head + char + tail)
    # This one, or one the text already had before it (U+3164 is a letter).
    assert found == f"U+{ord(char):04X}" or (found is not None and found == forbidden_char(head))


ALLOWED = [
    "example.com",
    "\u00e9t\u00e9.example",
    "\u0915\u094d\u200d\u0937.example",
    "\u0915\u094d\u200c\u0937.example",
]


@pytest.mark.parametrize("name", ALLOWED)
def test_names_without_forbidden_characters_pass(name: str) -> None:
    # ZWJ/ZWNJ right after a virama (U+094D) is what IDNA 2008 allows.
    assert forbidden_char(name) is None


def test_joiners_after_a_virama_are_refused_for_an_idna_2003_encoder() -> None:
    assert forbidden_char("\u0915\u094d\u200d\u0937.example", joiners=False) == "U+200D"


# --------------------------------------------------------------------------- UDP: every address


class BoundPeer(UDPPeer):
    """A ``UDPPeer`` on a chosen loopback address and port."""

    def __init__(self, nursery: trio.Nursery, host: str, port: int) -> None:
        self.nursery = nursery
        self.sock = bound_trio_socket(socket.AF_INET, socket.SOCK_DGRAM, (host, port))
        self.port = int(self.sock.getsockname()[1])
        self.requests = []


def two_addresses(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> list[tuple[int, tuple[object, ...]]]:
    """``dual.test`` resolves to 127.0.0.2 first, then 127.0.0.1 (as a dual-stack name would)."""
    addresses: list[tuple[int, tuple[object, ...]]] = [
        (int(socket.AF_INET), ("127.0.0.2", port)),
        (int(socket.AF_INET), ("127.0.0.1", port)),
    ]

    async def resolve(
        name: str, port_: int, kind: int, label: str
    ) -> list[tuple[int, tuple[object, ...]]]:
        assert name == "dual.test"
        return addresses

    monkeypatch.setattr(_timeclient, "_resolve", resolve)
    return addresses


@pytest.mark.parametrize("precise", [False, True])
async def test_udp_falls_back_to_the_next_address_when_one_refuses(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, precise: bool
) -> None:
    # The server listens on 127.0.0.1 only: 127.0.0.2 answers ICMP port unreachable.
    _, udp_port = await start_shifted_server(nursery, 100.37)
    two_addresses(monkeypatch, udp_port)
    sample = await query_time(f"dual.test:{udp_port}", udp=True, precise=precise, timeout=10)
    assert abs(sample.offset - 100.37) <= sample.uncertainty + 1e-6


async def test_udp_falls_back_after_a_silent_window_and_starts_there(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, udp_port = await start_shifted_server(nursery, 100.37)
    silent = BoundPeer(nursery, "127.0.0.2", udp_port)

    async def ignore(source: tuple[str, int]) -> None:
        pass

    silent.start(ignore)
    _, good = two_addresses(monkeypatch, udp_port)
    with silent.sock:
        before = time.time()
        reading, used = await _timeclient._udp_reading(
            "dual.test", udp_port, "dual.test", None, _timeclient._first_resend(False)
        )
    assert used == good
    assert len(silent.requests) >= 1  # asked first, and waited its window
    # The interval starts at the first datagram to the address that answered.
    assert reading.start >= before + _timeclient._first_resend(False).after
    assert reading.second - reading.end <= 100.37 < reading.second + 1 - reading.start


async def test_udp_late_answer_from_an_earlier_address_keeps_its_own_start(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # 127.0.0.2 answers only after 1 s (after the move to 127.0.0.1, which is
    # silent): its answer is used, with its socket's first datagram as start.
    late = BoundPeer(nursery, "127.0.0.2", 0)
    port = late.port
    silent = BoundPeer(nursery, "127.0.0.1", port)

    async def after_a_second(source: tuple[str, int]) -> None:
        if len(late.requests) == 1:
            await trio.sleep(1.0)
            await late.sock.sendto(encode_time(time.time()), source)

    async def ignore(source: tuple[str, int]) -> None:
        pass

    late.start(after_a_second)
    silent.start(ignore)
    first, _ = two_addresses(monkeypatch, port)
    with late.sock, silent.sock:
        before = time.time()
        reading, used = await _timeclient._udp_reading(
            "dual.test", port, "dual.test", None, _timeclient._first_resend(False)
        )
    assert used == first
    assert silent.requests  # it was tried meanwhile
    assert before <= reading.start <= before + 0.1


async def test_precise_udp_first_reading_retries_past_one_retransmit(
    peer: UDPPeer, autojump_clock: trio.testing.MockClock
) -> None:
    # The first three datagrams are lost; a plain reading (one retransmit)
    # times out, a precise one keeps asking inside its deadline and answers.
    async def fourth_on(source: tuple[str, int]) -> None:
        if len(peer.requests) >= 4:
            await peer.sock.sendto(encode_time(time.time()), source)

    peer.start(fourth_on)
    with pytest.raises(Timeout):
        await query_time("127.0.0.1", peer.port, udp=True, timeout=4)
    assert len(peer.requests) == 2
    peer.requests.clear()
    sample = await query_time("127.0.0.1", peer.port, udp=True, precise=True, timeout=15)
    assert len({source for _, source in peer.requests[:4]}) == 1  # one socket: retransmits
    assert abs(sample.offset) <= sample.uncertainty + 1e-6


async def test_precise_udp_with_a_first_answer_never_times_out(
    peer: UDPPeer, autojump_clock: trio.testing.MockClock
) -> None:
    # Only the first datagram is answered: every later probe is lost.
    async def first_only(source: tuple[str, int]) -> None:
        if len(peer.requests) == 1:
            await peer.sock.sendto(encode_time(time.time()), source)

    peer.start(first_only)
    sample = await query_time("127.0.0.1", peer.port, udp=True, precise=True, timeout=6)
    assert sample.probes == 1
    assert abs(sample.offset) <= sample.uncertainty + 1e-6


async def test_udp_sockets_get_ports_no_recent_reading_used() -> None:
    # RFC 868 answers carry no identifier: a new probe's socket must not sit
    # on a port whose old answers may still be on the way.
    seen: set[int] = set()
    for _ in range(300):
        sock = await _timeclient._fresh_udp_socket(socket.AF_INET)
        with sock:
            port = sock.getsockname()[1]
        assert port not in seen
        seen.add(port)
