"""openrdate as a client of our time server, over TCP and UDP (``rdate -p``: print only).

SAFETY: only ever ``rdate -p`` -- without it rdate sets this machine's clock.
rdate has no timeout of its own, so every run sits under a Trio deadline
(``run_process`` kills it when cancelled).
"""

from __future__ import annotations

import calendar
import functools
import time

import pytest
import trio

from trio_timehttp import serve_time

import peerutil

pytestmark = pytest.mark.peer


async def rdate(*args: str) -> str:
    path = peerutil.require_program("rdate")
    with trio.fail_after(20):
        result = await trio.run_process(
            [path, "-p", *args],
            capture_stdout=True,
            capture_stderr=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        )
    return result.stdout.decode()


@pytest.mark.parametrize(
    ("when", "printed"),
    [
        ((2023, 11, 14, 22, 13, 20), "Tue Nov 14 22:13:20 UTC 2023"),
        # Beyond the 2036 rollover: our server wraps the counter, openrdate
        # decodes it into 1970-2106.
        ((2040, 2, 29, 12, 0, 5), "Wed Feb 29 12:00:05 UTC 2040"),
    ],
)
@pytest.mark.parametrize("udp", [False, True])
async def test_rdate_reads_our_clock(
    nursery: trio.Nursery, when: tuple[int, ...], printed: str, udp: bool
) -> None:
    fixed = calendar.timegm((*when, 0, 0, 0)) + 0.75  # the fraction is truncated
    listeners, socks = await nursery.start(
        functools.partial(serve_time, 0, host="127.0.0.1", clock=lambda: fixed)
    )
    port = (socks[0] if udp else listeners[0].socket).getsockname()[1]
    out = await rdate(*(["-u"] if udp else []), "-o", str(port), "127.0.0.1")
    assert printed in out


async def test_rdate_over_ipv6(nursery: trio.Nursery) -> None:
    listeners, _ = await nursery.start(
        functools.partial(serve_time, 0, host="::1", udp=False, clock=lambda: 1_800_000_000)
    )
    out = await rdate("-6", "-o", str(listeners[0].socket.getsockname()[1]), "::1")
    assert "Fri Jan 15 08:00:00 UTC 2027" in out


async def test_rdate_verbose_offset_sign(nursery: trio.Nursery) -> None:
    # rdate's "adjust local clock by N" is server - local, our offset's sign.
    listeners, _ = await nursery.start(
        functools.partial(
            serve_time, 0, host="127.0.0.1", udp=False, clock=lambda: time.time() + 3600
        )
    )
    out = await rdate("-v", "-o", str(listeners[0].socket.getsockname()[1]), "127.0.0.1")
    adjust = [line for line in out.splitlines() if "adjust local clock by" in line]
    assert adjust, out
    seconds = float(adjust[0].split("by")[1].split()[0])
    assert 3598 <= seconds <= 3601
