"""Precise mode's probe loop, shared by RFC 868 and HTTP ``Date`` readings.

The arithmetic lives in ``_sample`` (pure); this drives it in real time:
wait until the instant that bisects the current offset interval, take one
reading, intersect, repeat, within a fixed number of probes spaced politely.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ._sample import OffsetEstimator, TimeSample

__all__ = ["MAX_PROBES", "Reading", "precise_sample", "refine"]

#: At most this many readings in all (the first included): bounded load on the
#: server and a bounded wait (each probe waits for its second to tick over).
MAX_PROBES = 8
#: Probes start at least this far apart: polite, never a burst.
MIN_GAP = 0.15
#: Stop early once the offset is known to within this (seconds).
TARGET_UNCERTAINTY = 0.01


@dataclass(frozen=True, slots=True)
class Reading:
    """One whole-second reading and the local wall times around it.

    ``start``: the earliest local time the server can have read its clock
    (before the connect or the request left us); ``sent``: the start of the
    round trip reported as ``rtt``; ``end``: when the answer arrived.
    """

    second: int
    start: float
    sent: float
    end: float


async def refine(
    probe: Callable[[], Awaitable[Reading]],
    estimator: OffsetEstimator,
    readings: list[Reading],
) -> None:
    """Take readings timed to bisect the offset interval until it is narrow enough.

    Fills ``estimator`` and ``readings`` in place, so that what was learnt
    survives a deadline cancelling this mid-way.
    """
    while len(readings) < MAX_PROBES:
        if readings:
            if estimator.uncertainty <= TARGET_UNCERTAINTY:
                return
            last = readings[-1]
            # The server reads its clock about half-way through a probe.
            lead = (last.end - last.start) / 2
            at = estimator.next_probe_at(time.time(), lead, MIN_GAP)
            await trio.sleep(max(0.0, at - time.time()))
        reading = await probe()
        readings.append(reading)
        estimator.add(reading.second, reading.start, reading.end)


def precise_sample(
    host: str, port: int, estimator: OffsetEstimator, readings: list[Reading]
) -> TimeSample:
    """The estimate so far as a ``TimeSample`` (local time: the last probe's midpoint)."""
    last = readings[-1]
    local = (last.sent + last.end) / 2
    offset = estimator.offset
    return TimeSample(
        host=host,
        port=port,
        server_time=local + offset,
        local_time=local,
        offset=offset,
        rtt=statistics.median(r.end - r.sent for r in readings),
        uncertainty=estimator.uncertainty,
    )
