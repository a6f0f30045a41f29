"""Precise mode's probe rounds, shared by RFC 868 and HTTP ``Date`` readings.

The arithmetic and the plan live in ``_sample`` (pure); this runs the plan in
real time. After the first reading, each *round* spreads a few probes over
the local instants at which the server's second would tick if the offset
were at each planned cut (``plan_cuts``, ``read_instants``), runs them in
as many concurrent lanes as their spacing needs (one after another on a fast
path, overlapping on a long one; at most the prober's ``channels``), and
intersects what comes back as it comes; ``StopRule`` says when another round
cannot pay and how many probes it takes. The first round sweeps the next
second from the moment it is planned; later rounds fall about a second apart
(the tick comes once a second), so a reading that reaches its limit in ``k``
rounds takes about ``k - 0.5`` seconds. A round ends as soon as none of its
remaining cuts could narrow the interval. One DEBUG record per round (its
plan) and per reading (the interval after it) go to this module's logger.

A probe that fails or is late only narrows less: readings are intersected
as they arrive, so whatever the deadline cuts off, what was learnt stays in
the estimator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import trio
import trio.lowlevel

from ._errors import TimeHTTPError
from ._sample import OffsetEstimator, Reading, StopRule, plan_cuts, read_instants

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
#: A lane's long wait for its instant ends this long before it (seconds): a
#: process idle for a second wakes up to a few milliseconds late (measured
#: here: 1.5 ms median, 4.4 ms at worst, in a VM), a short sleep then far less.
WAKE_EARLY = 0.006
#: How long one probe keeps its channel busy: the fastest exchange so far
#: times this, and never under MIN_BUSY.
BUSY_MARGIN = 1.2
MIN_BUSY = 0.0005
#: On a path whose exchange keeps a channel busy for less than this (seconds:
#: loopback, a LAN), a round's probes run one after another on one lane.
SERIAL_BELOW = 0.002
#: How many probes may be in flight at once in one Trio run, over every
#: precise reading in it: readings of one server all aim at the same tick, and
#: hundreds of them at once would saturate the loop (every probe late, every
#: deadline overrun). A probe that cannot get a slot by the time it would be
#: late is not sent.
PROBE_BUDGET = 48
#: A round is not started, and a probe not sent, unless its answer is due
#: this long before the deadline (seconds) besides the fastest round trip:
#: what a loaded loop needs to unwind and return in time.
DEADLINE_MARGIN = 0.1

_budget: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "trio_timehttp.probe_budget"
)


def probe_budget() -> trio.CapacityLimiter:
    """The current Trio run's shared probe budget (``PROBE_BUDGET`` slots), made on first use."""
    try:
        return _budget.get()
    except LookupError:
        limiter = trio.CapacityLimiter(PROBE_BUDGET)
        _budget.set(limiter)
        return limiter


class Prober(Protocol):
    """Takes one reading of the server's clock (the drivers implement it).

    ``channels``: how many probes may run at once (``None``: any number, each
    on its own socket). ``probe`` raises a ``TimeHTTPError`` on failure.
    """

    channels: int | None

    async def probe(self) -> Reading: ...


async def refine(prober: Prober, est: OffsetEstimator, rule: StopRule | None = None) -> None:
    """Run probe rounds until ``rule`` says stop; fills ``est``.

    ``rule`` defaults to ``StopRule()`` for a prober with a socket per probe
    (``channels=None``), else to one without the jitter rules
    (``jitter_factor=inf``): on a few channels a round places only about one
    probe per channel near the tick, so the larger rounds and allowance the
    jitter rules ask for could not be flown within their rounds.
    ``est`` must hold at least one reading. Returns early when a whole round
    failed. Cancellation (the caller's deadline) may stop it at any point.
    """
    if rule is None:
        rule = StopRule() if prober.channels is None else StopRule(jitter_factor=math.inf)
    _note(est, est.readings[-1], 0)
    rounds = 0
    before: float | None = None
    while not rule.done(est, rounds, before):
        if _left(est) <= PLAN_AHEAD:  # no probe could answer in time
            log.debug("round %d skipped: %.3f s left before the deadline", rounds + 1, _left(est))
            return
        before = est.interval.width
        rounds += 1
        answered = await _round(prober, est, rule, rounds)
        log.debug(
            "round %d: %d answered, +-%.6f s (floor %.6f s)",
            rounds,
            answered,
            est.uncertainty,
            est.floor,
        )
        if not answered:
            return


def _left(est: OffsetEstimator) -> float:
    """Seconds before the caller's deadline, less the fastest round trip and the margin."""
    rtt = min(r.rtt for r in est.readings)
    return trio.current_effective_deadline() - trio.current_time() - rtt - DEADLINE_MARGIN


def _plan(
    prober: Prober, est: OffsetEstimator, rule: StopRule, size: int
) -> tuple[list[float], int]:
    """The round's cuts (``size`` at most), and over how many channels (concurrent lanes).

    Probes on one channel run one after another, each busy for about the
    fastest exchange so far (x ``BUSY_MARGIN``, at least ``MIN_BUSY``), and
    channel ``k`` of ``c`` takes every ``c``-th cut. No more channels than the
    spacing needs. On a path faster than ``SERIAL_BELOW`` no two probes
    overlap at all: there the exchange is CPU (ours and the server's), and
    concurrent exchanges only slow each other down, widening every window;
    the cuts are then no closer than one exchange. At the bound, fewer cuts
    spread evenly beat many of which some never run.
    """
    floor = est.floor
    cuts = plan_cuts(est.interval, floor, size, rule.gap(floor))
    if len(cuts) < 2:
        return cuts, 1
    busy = max(BUSY_MARGIN * min(r.end - r.issued for r in est.readings), MIN_BUSY)
    spread = (cuts[-1] - cuts[0]) * (len(cuts) + 1) / (len(cuts) - 1)
    if busy < SERIAL_BELOW:
        fit = max(2, int(spread / busy) - 1)
        if fit < len(cuts):
            cuts = plan_cuts(est.interval, floor, fit, rule.gap(floor))
        return cuts, 1
    need = min(math.ceil(busy * (len(cuts) + 1) / spread), len(cuts))
    if prober.channels is None or need <= prober.channels:
        return cuts, need
    fit = max(prober.channels, int(prober.channels * spread / busy) - 1)
    cuts = plan_cuts(est.interval, floor, min(fit, len(cuts)), rule.gap(floor))
    return cuts, prober.channels


class _Changes:
    """Wakes the lanes of a round whenever a reading moved the interval."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def moved(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, when: float, still: Callable[[], bool]) -> bool:
        """Sleep until wall-clock ``when`` (not spinning), or False once ``still()`` fails."""
        while still():
            ahead = when - time.time()
            if ahead <= 0:
                return True
            event = self._event
            with trio.move_on_after(ahead) as scope:
                await event.wait()
            if scope.cancelled_caught:  # slept its time (the rest: ``_sleep_until``)
                return still()
        return False


async def _round(prober: Prober, est: OffsetEstimator, rule: StopRule, round_number: int) -> int:
    """One round of probes at the planned instants; how many answered.

    Each lane is one task taking its share of the instants in turn: lane
    ``k`` of ``c`` takes every ``c``-th, so its probes are spread over the
    whole round. A probe is dropped when its channel comes free more than
    ``max(floor, 2 ms)`` after its instant (it would cut elsewhere), or as
    soon as the readings so far have moved the interval past its cut (it
    could not narrow it): a sweep ends once it found the tick, without
    waiting for the instants of the cuts it dropped.
    """
    # A first round on a prober with channels also opens all of them at once
    # (``warm``): a connection opened later, in a round that needs it, would
    # put its handshake inside a probe aimed at the tick.
    warmups = prober.channels - 1 if round_number == 1 and prober.channels else 0
    cuts, channels = _plan(prober, est, rule, max(2, rule.round_size(est) - warmups))
    lead = est.lead
    earliest = time.time() + lead + PLAN_AHEAD
    plan = sorted(zip(read_instants(cuts, earliest), cuts, strict=True))
    log.debug(
        "round %d: %d cuts over [%.6f, %.6f] on %d lane(s), from %.6f",
        round_number,
        len(cuts),
        cuts[0] if cuts else 0.0,
        cuts[-1] if cuts else 0.0,
        channels,
        plan[0][0] - lead if plan else 0.0,
    )
    wait = max(PROBE_WAIT_RTTS * min(r.rtt for r in est.readings), MIN_PROBE_WAIT)
    late = max(est.floor, 0.002)
    pad = est.floor / 4
    answered = 0
    budget = probe_budget()
    changes = _Changes()

    async def lane(steps: list[tuple[float, float]]) -> None:
        for at, cut in steps:

            def useful(cut: float = cut) -> bool:
                return est.interval.lo + pad < cut < est.interval.hi - pad

            send_at = at - lead
            if send_at - time.time() > _left(est):
                return  # this and every later step would answer after the deadline
            if time.time() - send_at > late:
                continue
            if not await changes.wait_until(send_at - WAKE_EARLY, useful):
                continue
            if not await _acquire(budget, send_at + late):
                log.debug("probe at %.6f not sent: no slot in time", send_at)
                continue
            try:
                await _sleep_until(send_at)
                if time.time() - send_at > late or not useful():
                    continue  # woken too late (it would cut elsewhere), or no longer useful
                await take("probe")
            finally:
                budget.release()

    async def warm() -> None:
        """One probe at once, to open a connection (a reading like any other)."""
        if not await _acquire(budget, time.time()):
            return
        try:
            await take("warm-up probe")
        finally:
            budget.release()

    async def take(what: str) -> None:
        """One probe, abandoned after ``wait``; its reading goes into the estimate at once."""
        nonlocal answered
        try:
            with trio.move_on_after(wait):
                reading = await prober.probe()
                est.add(reading)
                answered += 1
                changes.moved()
                _note(est, reading, round_number)
        except TimeHTTPError as exc:
            log.debug("%s failed: %s", what, exc)

    async with trio.open_nursery() as nursery:
        for _ in range(warmups):
            nursery.start_soon(warm)
        for k in range(channels):
            if plan[k::channels]:
                nursery.start_soon(lane, plan[k::channels])
    return answered


def _note(est: OffsetEstimator, reading: Reading, round_number: int) -> None:
    """One DEBUG record per reading, with the interval after it (the bench plots these)."""
    log.debug(
        "round %d reading %d: second %d read in [%.6f, %.6f]; offset in [%.6f, %.6f)",
        round_number,
        len(est.readings),
        reading.second,
        reading.start,
        reading.end,
        est.interval.lo,
        est.interval.hi,
    )


async def _acquire(budget: trio.CapacityLimiter, by: float) -> bool:
    """Take one slot of ``budget``, waiting no later than wall-clock ``by``; False if none came."""
    with trio.move_on_after(max(by - time.time(), 0.0)):
        await budget.acquire()
        return True
    return False


async def _sleep_until(when: float, *, spin: bool = True) -> None:
    """Wait until wall-clock ``when``: sleep, then yield until it is reached (see ``SPIN``).

    ``spin=False``: sleep only (it may wake up to a millisecond late).
    """
    ahead = when - time.time() - (SPIN if spin else 0.0)
    if ahead > 0:
        await trio.sleep(ahead)
    while spin and time.time() < when:  # a deadline on the wall clock, not an event
        await trio.lowlevel.checkpoint()
