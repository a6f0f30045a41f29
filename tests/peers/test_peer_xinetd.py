"""Our client against xinetd's built-in RFC 868 time service (stream and dgram).

A private config on ephemeral loopback ports (``INTERNAL UNLISTED`` lets the
built-in serve a port other than 37), xinetd in the foreground, readiness by a
bounded connect-retry (peerutil.wait_for_tcp), never a sleep.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_timehttp import TimeSample, query_many, query_time

import peerutil

pytestmark = pytest.mark.peer

CONFIG = """\
defaults
{{
    instances = 50
    cps = 100000 1
}}

service time
{{
    id = time-stream
    type = INTERNAL UNLISTED
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    port = {tcp}
    bind = 127.0.0.1
}}

service time
{{
    id = time-dgram
    type = INTERNAL UNLISTED
    socket_type = dgram
    protocol = udp
    wait = yes
    user = root
    port = {udp}
    bind = 127.0.0.1
}}
"""


@pytest.fixture
def xinetd(tmp_path: Path) -> Iterator[tuple[int, int]]:
    path = peerutil.require_program("xinetd")
    tcp = peerutil.unused_port(socket.SOCK_STREAM)
    udp = peerutil.unused_port(socket.SOCK_DGRAM)
    conf = tmp_path / "xinetd.conf"
    conf.write_text(CONFIG.format(tcp=tcp, udp=udp))
    log = tmp_path / "xinetd.log"
    with peerutil.running([path, "-dontfork", "-filelog", str(log), "-f", str(conf)]) as proc:
        peerutil.wait_for_tcp("127.0.0.1", tcp, proc)
        yield tcp, udp


@pytest.mark.parametrize("udp", [False, True])
async def test_query_xinetd(xinetd: tuple[int, int], udp: bool) -> None:
    port = xinetd[1] if udp else xinetd[0]
    sample = await query_time("127.0.0.1", port, udp=udp)
    # Same machine, same clock: the truth is 0, within the reading's bounds.
    assert abs(sample.offset) <= 1.5
    assert abs(sample.offset) <= sample.uncertainty
    assert sample.port == port


async def test_query_many_against_xinetd(xinetd: tuple[int, int]) -> None:
    tcp, _ = xinetd
    results = await query_many([f"127.0.0.1:{tcp}"] * 5)
    assert all(isinstance(r, TimeSample) and abs(r.offset) <= 1.5 for r in results)


@pytest.mark.slow
async def test_precise_against_xinetd(xinetd: tuple[int, int]) -> None:
    sample = await query_time("127.0.0.1", xinetd[0], precise=True)
    # xinetd reads time(), which on Linux is the tick-coarse clock: it lags
    # the real one by up to one tick (10 ms at HZ=100; measured here: 5-8 ms
    # behind), so its "true" offset is only defined to within a tick.
    tick = 0.012
    assert abs(sample.offset) <= sample.uncertainty + tick
    assert sample.uncertainty <= 0.05
