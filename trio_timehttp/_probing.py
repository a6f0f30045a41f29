"""Precise mode's probe rounds, shared by RFC 868 and HTTP ``Date`` readings.

The arithmetic and the plan live in ``_sample`` (pure); this runs the plan in
real time. After the first reading, each *round* spreads a few probes over
the local instants at which the server's second would tick if the offset
were at each planned cut (``plan_cuts``, ``read_instant``), runs them
concurrently (each in its own task, at most ``channels`` at once), and
intersects what comes back; ``StopRule`` says when another round cannot pay
and how many probes it takes. Rounds fall about a second apart (the tick
comes once a second), so a reading that reaches its limit in ``k`` rounds
takes about ``k`` seconds.

A probe that fails or is late only narrows less: readings are intersected
as they arrive, so whatever the deadline cuts off, what was learnt stays in
the estimator.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import trio
import trio.lowlevel

from ._errors import TimeHTTPError
from ._sample import OffsetEstimator, Reading, StopRule, plan_cuts, read_instant

__all__ = ["Prober", "refine"]

log = logging.getLogger("trio_timehttp.probing")

#: A probe is abandoned after this many of the fastest round trips seen (a
#: lost datagram, a stalled connection), but never before ``MIN_PROBE_WAIT``.
PROBE_WAIT_RTTS = 3.0
MIN_PROBE_WAIT = 0.2
#: A first probe of a round is planned at least this far ahead (seconds): time
#: to start its task.
PLAN_AHEAD = 0.005
#: The last this-much of a wait before a probe yields to the scheduler in a
#: loop instead of sleeping: a timed sleep wakes up to a millisecond late
#: (epoll's timeout is in whole milliseconds), as much as the finest cut.
SPIN = 0.0015


class Prober(Protocol):
    """Takes one reading of the server's clock (the drivers implement it).

    ``channels``: how many probes may run at once (``None``: any number, each
    on its own socket). ``probe`` raises a ``TimeHTTPError`` on failure.
    """

    channels: int | None

    async def probe(self) -> Reading: ...


async def refine(prober: Prober, est: OffsetEstimator, rule: StopRule | None = None) -> None:
    """Run probe rounds until ``rule`` (default ``StopRule()``) says stop; fills ``est``.

    ``est`` must hold at least one reading. Returns early when a whole round
    failed. Cancellation (the caller's deadline) may stop it at any point.
    """
    rule = rule or StopRule()
    rounds = 0
    before: float | None = None
    while not rule.done(est, rounds, before):
        before = est.interval.width
        answered = await _round(prober, est, rule)
        rounds += 1
        log.debug(
            "round %d: %d answered, +-%.6f s (floor %.6f s)",
            rounds,
            answered,
            est.uncertainty,
            est.floor,
        )
        if not answered:
            return


async def _round(prober: Prober, est: OffsetEstimator, rule: StopRule) -> int:
    """One round of concurrent probes at the planned instants; how many answered."""
    count = rule.round_size(est)
    floor, lead = est.floor, est.lead
    if prober.channels is not None:
        # Probes on one channel run one after another: no more than fit.
        fit = 1 + int((est.interval.width - floor) / max(floor, 1e-4))
        count = max(1, min(count, prober.channels * fit))
    cuts = plan_cuts(est.interval, floor, count)
    earliest = time.time() + lead + PLAN_AHEAD
    sends = sorted(read_instant(cut, earliest) - lead for cut in cuts)
    wait = max(PROBE_WAIT_RTTS * min(r.rtt for r in est.readings), MIN_PROBE_WAIT)
    limiter = trio.CapacityLimiter(prober.channels) if prober.channels else None
    late = max(floor, 0.002)
    answered = 0

    async def one(send_at: float) -> None:
        nonlocal answered
        await _sleep_until(send_at)
        if limiter is not None:
            await limiter.acquire()
        try:
            if limiter is not None and time.time() - send_at > late:
                return  # its channel came free too late to cut where planned
            with trio.move_on_after(wait):
                reading = await prober.probe()
                est.add(reading)
                answered += 1
        except TimeHTTPError as exc:
            log.debug("probe failed: %s", exc)
        finally:
            if limiter is not None:
                limiter.release()

    async with trio.open_nursery() as nursery:
        for send_at in sends:
            nursery.start_soon(one, send_at)
    return answered


async def _sleep_until(when: float) -> None:
    """Wait until wall-clock ``when``: sleep, then yield until it is reached (see ``SPIN``)."""
    ahead = when - time.time() - SPIN
    if ahead > 0:
        await trio.sleep(ahead)
    while time.time() < when:  # a deadline on the wall clock, not an event
        await trio.lowlevel.checkpoint()
