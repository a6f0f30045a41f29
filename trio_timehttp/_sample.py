"""Clock-offset samples and the interval arithmetic behind them (pure).

Theory of operation. RFC 868 and the HTTP ``Date`` header both give whole
seconds: the server read its clock at some local instant ``t`` no earlier than
``start`` (the first moment anything we did could let it read its clock for
this request) and no later than ``end`` (its answer in our hands), and
truncated it to ``second``. So the true offset ``theta = server - local``
satisfies ``second <= t + theta < second + 1``, hence lies in
``[second - end, second + 1 - start)``. A reading *proves* that interval,
however late or slow it ran; a sample reports its midpoint and half-width.

One reading pins the offset to an interval a little over a second wide. A
reading whose server read falls near the instant the server's second ticks
over *cuts* it: if the reading was taken so that ``theta >= c`` would make the
server show the next second (``c`` the cut), the answer moves one edge of the
interval to within one one-way delay of ``c``. Intersecting readings is always
correct; the planning below only decides where the cuts should fall so the
intersection shrinks fast. Its limit: an interval can shrink to about the
fastest probe's window (``end - start``, about one round trip), no further -
which part of that window went up and which came back is what no method can
see (path asymmetry).

Nothing here reads a clock or does I/O: the drivers (``_probing``,
``_timeclient``, ``_httptime``) pass the instants in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Interval",
    "OffsetEstimator",
    "Reading",
    "StopRule",
    "TimeSample",
    "plain_sample",
    "plan_cuts",
    "read_instants",
]


@dataclass(frozen=True, slots=True)
class TimeSample:
    """One measurement of a server's clock against ours.

    ``offset`` is the midpoint of the interval the readings prove (add it to
    the local clock to match the server), ``uncertainty`` its half-width: the
    true offset lies within ``offset +- uncertainty``, always. ``local_time``:
    the local clock at the middle of the (last) reading; ``server_time =
    local_time + offset``. ``rtt``: the round trip of the reading (precise:
    of its fastest probe). ``probes``: readings combined (1 for a plain one).
    ``protocol``: ``"tcp"``, ``"udp"``, ``"http"`` or ``"https"``.
    ``host``: the host name asked; ``port``: the port actually used. All
    times are seconds (floats; ``local_time`` and ``server_time`` are Unix
    times). Frozen: a value, compared field by field.
    """

    host: str
    port: int
    protocol: str
    local_time: float
    offset: float
    uncertainty: float
    server_time: float
    rtt: float
    probes: int = 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One whole-second reading and the local wall-clock instants around it.

    ``issued``: taken before anything that could let the server read its
    clock (before ``connect()``; before the first datagram, not a retransmit;
    before an HTTP request, or its connect on a new connection). ``start``:
    a tighter lower bound when one is known (TCP: ``issued`` plus the
    kernel-measured SYN round trip - the server's handshake cannot complete
    before our SYN-ACK arrived), else ``issued``. ``end``: the answer had
    arrived. ``rtt``: the round trip reported for it.
    """

    second: int
    issued: float
    start: float
    end: float
    rtt: float

    @property
    def window(self) -> float:
        """How long the server's read may have taken place in: the reading's precision."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open interval ``[lo, hi)`` the true offset is proven to lie in."""

    lo: float
    hi: float

    @classmethod
    def of(cls, second: int, start: float, end: float) -> Interval:
        """What a reading of ``second`` read between local ``start`` and ``end`` proves."""
        return cls(second - end, second + 1 - start)

    def intersect(self, other: Interval) -> Interval | None:
        """The common part, or None when the two cannot both hold."""
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        return Interval(lo, hi) if lo <= hi else None

    @property
    def mid(self) -> float:
        return (self.lo + self.hi) / 2

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def __contains__(self, theta: object) -> bool:
        return isinstance(theta, int | float) and self.lo <= theta < self.hi


def _sample(host: str, port: int, protocol: str, span: Interval, local: float, rtt: float,
            probes: int, server: float | None = None) -> TimeSample:  # fmt: skip
    return TimeSample(
        host=host,
        port=port,
        protocol=protocol,
        local_time=local,
        offset=span.mid,
        uncertainty=span.half_width,
        server_time=local + span.mid if server is None else server,
        rtt=rtt,
        probes=probes,
    )


def plain_sample(host: str, port: int, protocol: str, reading: Reading) -> TimeSample:
    """A single reading as a sample: ``offset = S + 0.5 - (issued + end)/2``.

    Uses ``issued`` (not the tighter ``start``), as the contract states for a
    plain reading: ``uncertainty = (1 + end - issued)/2``.
    """
    span = Interval.of(reading.second, reading.issued, reading.end)
    local = (reading.issued + reading.end) / 2
    # local + offset is exactly S + 0.5: say so without float rounding.
    return _sample(host, port, protocol, span, local, reading.rtt, 1, reading.second + 0.5)


def _largest_agreement(readings: list[Reading]) -> list[Reading]:
    """The largest group of ``readings`` whose intervals share a point (ties: the newest).

    The shared point, if any, lies at some interval's lower end, so each is
    tried (Marzullo's idea, quadratic: a reading has at most a few dozen).
    """
    spans = [Interval.of(r.second, r.start, r.end) for r in readings]
    best: list[int] = []
    for candidate in spans:
        point = candidate.lo
        members = [k for k, span in enumerate(spans) if span.lo <= point < span.hi]
        if (len(members), members[-1]) > (len(best), best[-1] if best else -1):
            best = members
    return [readings[k] for k in best]


class OffsetEstimator:
    """The intersection of every reading so far, and what the readings tell about the path.

    ``add()`` takes each reading. When one contradicts the others (the
    server's clock stepped, it rounds instead of truncating, or an answer
    was not to the probe it seemed to answer: a late UDP datagram), the
    estimate goes on from the largest group of readings that agree: a lone
    odd reading cannot override many, and a newer group wins a tie (a clock
    that stepped). Each such event counts in ``restarts``; ``readings`` are
    the ones the estimate rests on.
    """

    def __init__(self) -> None:
        self.interval = Interval(-math.inf, math.inf)
        self.readings: list[Reading] = []
        self.restarts = 0
        self._seen: list[Reading] = []  # every reading, in order

    def add(self, reading: Reading) -> bool:
        """Intersect with one reading; False when it contradicted the others."""
        proven = Interval.of(reading.second, reading.start, reading.end)
        self._seen.append(reading)
        common = self.interval.intersect(proven)
        if common is not None:
            self.readings.append(reading)
            self.interval = common
            return True
        self.restarts += 1
        self.readings = _largest_agreement(self._seen)
        spans = [Interval.of(r.second, r.start, r.end) for r in self.readings]
        self.interval = Interval(max(i.lo for i in spans), min(i.hi for i in spans))
        return False

    @property
    def offset(self) -> float:
        return self.interval.mid

    @property
    def uncertainty(self) -> float:
        return self.interval.half_width

    @property
    def floor(self) -> float:
        """The narrowest reading window seen: about the best width intersections reach."""
        return min(r.window for r in self.readings)

    @property
    def floor_gap(self) -> float:
        """How much slower the second fastest window is than the fastest (0 for one reading).

        Under jitter, about how much faster a probe more readings would find:
        the floor is the fastest of a sample, not the path's limit.
        """
        if len(self.readings) < 2:
            return 0.0
        first, second = sorted(r.window for r in self.readings)[:2]
        return second - first

    @property
    def jitter(self) -> float:
        """How much slower than the fastest a typical reading's window is (median - floor)."""
        windows = sorted(r.window for r in self.readings)
        return windows[len(windows) // 2] - windows[0]

    def fast_share(self, excess: float) -> float:
        """The share of readings whose window is at most ``excess`` above the floor."""
        floor = self.floor
        return sum(r.window <= floor + excess for r in self.readings) / len(self.readings)

    @property
    def lead(self) -> float:
        """From issuing a probe to the server's read, by the fastest readings (half a window)."""
        return min(r.start - r.issued for r in self.readings) + self.floor / 2

    def sample(self, host: str, port: int, protocol: str) -> TimeSample:
        """The estimate as a ``TimeSample`` (local time: the last reading's midpoint)."""
        last = self.readings[-1]
        local = (last.start + last.end) / 2
        rtt = min(r.rtt for r in self.readings)
        return _sample(host, port, protocol, self.interval, local, rtt, len(self.readings))


# --------------------------------------------------------------------------
# Planning: where the next readings should cut, and when to stop.

#: Cuts spread over at least this much (seconds of offset) are not held to one
#: tick (see ``read_instants``).
SHARED_TICK_SPREAD = 0.5


def plan_cuts(interval: Interval, floor: float, count: int, least: float = 0.0) -> list[float]:
    """``count`` offsets ("cuts") to test so that whichever gap holds the truth is narrow.

    A reading that cuts at ``c`` leaves ``[c - down, hi)`` or ``[lo, c + up)``
    where ``up + down`` is about its window; so the cuts are spread evenly over
    ``[lo + floor/2, hi - floor/2]`` (every outcome then leaves about
    ``(width - floor)/(count + 1) + floor``), over at least ``least``,
    centred, never beyond the interval. In local time these are sends spread
    over ``[L, U - floor]`` (``L``, ``U``: the earliest and latest the tick
    can be): where the moment the tick is minus the fastest way up must lie,
    whatever the path's asymmetry. Not wider under jitter: a send outside
    that span can narrow neither edge, however fast its probe.
    """
    spread = min(max(interval.width - floor, least), interval.width)
    a = interval.mid - spread / 2
    return [a + spread * (k + 1) / (count + 1) for k in range(count)]


def read_instants(cuts: list[float], earliest: float) -> list[float]:
    """The local instants, all ``>= earliest``, at which servers with these offsets tick.

    A server read at the instant of cut ``c`` shows the new second exactly
    when the true offset is at least ``c``; any tick will do (a reading is
    valid whatever second it reads). Cuts spread over less than
    ``SHARED_TICK_SPREAD`` use one tick, the first every cut can still make,
    so the round falls within one pass of the tick, never split across two
    seconds. Wider cuts (a first round, over the whole second) each take
    their own first tick: the round starts at once and sweeps the next
    second, instead of waiting for a tick that all of them can make.
    """
    if not cuts:
        return []
    if max(cuts) - min(cuts) >= SHARED_TICK_SPREAD:
        return [math.ceil(earliest + cut) - cut for cut in cuts]
    tick = math.ceil(earliest + max(cuts))
    return [tick - cut for cut in cuts]


@dataclass(frozen=True, slots=True)
class StopRule:
    """When a precise reading has gained what it can, and how many probes the next round takes.

    The limit: an interval no wider than ``floor`` plus a small *gap*
    (``floor``: the narrowest probe window seen, about the fastest round
    trip; the gap: what is left between the two cuts nearest the truth).
    Rounds are planned to leave ``gap(floor) = min(gain * floor + slack,
    max_gap)`` and a reading stops once within ``accept_gap(floor)`` (cuts
    land a little off their aim; one more round for the last few percent
    costs another second). The gap bounds both goals: the half-width
    (``floor/2 + gap/2``) and the error (the midpoint can be off by half the
    gap, besides the path's asymmetry, which nothing can see).

    A round of ``n`` cuts divides the reducible part (``width - floor``) by
    about ``n + 1``, and each round costs a pass of the tick (a second):
    ``round_size`` takes ``first_round`` cuts over a whole second, then what
    one round needs to finish (with a ``margin``), at least ``min_round`` (a
    round costs a second: a couple of probes rarely pay for it) and at most
    ``max_per_round``.
    Stops also after ``max_rounds`` rounds or ``max_probes`` readings (a
    polite bound on the server's load); when the readings' spread of windows
    (jitter) says that fewer than ``min_fast`` probes of the next round
    would be fast enough to halve the reducible part (a probe whose window
    is more than that above the floor cannot land both its edges inside
    it); or when a round at the limit's scale gained less than ``min_gain``
    of the reducible part.

    Under jitter (``jittery``: the median window more than ``jitter_factor``
    x the accepted gap above the floor) only a probe fast both ways and sent
    near the right instant narrows the interval, and the floor itself is
    just the fastest of the probes so far: more probes find faster ones.
    There every round after the sweep takes ``jitter_round`` cuts (the most
    ``_probing`` keeps in flight at once), a reading may take up to
    ``jitter_probes`` readings, and it stops after ``jitter_rounds`` rounds
    (about as many seconds), or once within the accepted gap of the floor
    less ``floor_gap`` (what the next faster probe would likely take off);
    the rules for a clean path (the jitter test, the gain test) do not
    apply.
    """

    gain: float = 0.07
    slack: float = 0.001
    max_gap: float = 0.003
    accept_gain: float = 0.1
    accept_slack: float = 0.0015
    accept_max_gap: float = 0.0035
    first_round: int = 40
    max_per_round: int = 32
    min_round: int = 4
    max_rounds: int = 6
    max_probes: int = 64
    min_fast: float = 1.0
    min_gain: float = 0.1
    margin: float = 1.5
    jitter_factor: float = 2.0
    jitter_round: int = 48
    jitter_probes: int = 128
    jitter_rounds: int = 3

    def gap(self, floor: float) -> float:
        """The gap rounds are planned to leave."""
        return min(self.gain * floor + self.slack, self.max_gap)

    def accept_gap(self, floor: float) -> float:
        """The gap at which a reading stops."""
        return min(self.accept_gain * floor + self.accept_slack, self.accept_max_gap)

    def jittery(self, est: OffsetEstimator) -> bool:
        """True when the readings' windows spread too widely for the clean-path rules."""
        return est.jitter > self.jitter_factor * self.accept_gap(est.floor)

    def allowance(self, est: OffsetEstimator) -> int:
        """How many readings this reading may take in all (``max_probes``, under jitter more)."""
        return self.jitter_probes if self.jittery(est) else self.max_probes

    def done(self, est: OffsetEstimator, rounds: int, before: float | None) -> bool:
        """True when no further round is worth running (``before``: the width a round ago)."""
        if self.jittery(est):
            return self._done_under_jitter(est, rounds)
        floor = est.floor
        reducible = est.interval.width - floor
        spent = rounds >= self.max_rounds or len(est.readings) >= self.max_probes
        if reducible <= self.accept_gap(floor) or spent:
            return True
        if before is None:
            return False
        if self.round_size(est) * est.fast_share(reducible / 2) < self.min_fast:
            return True  # jitter: the next round would gain nothing
        earlier = before - floor
        fine = earlier <= 2 * self.accept_gap(floor)
        return fine and earlier - reducible < self.min_gain * max(earlier, self.slack)

    def _done_under_jitter(self, est: OffsetEstimator, rounds: int) -> bool:
        spent = len(est.readings) >= self.jitter_probes
        if spent or rounds >= min(self.max_rounds, self.jitter_rounds):
            return True
        reducible = est.interval.width - est.floor + est.floor_gap
        return reducible <= self.accept_gap(est.floor)

    def round_size(self, est: OffsetEstimator) -> int:
        """How many probes the next round should take (2 to ``first_round``/``max_per_round``;
        under jitter ``jitter_round``)."""
        floor = est.floor
        left = max(2, self.allowance(est) - len(est.readings))
        if est.interval.width >= SHARED_TICK_SPREAD + floor:  # a sweep of the whole second
            return max(2, min(self.first_round, left))
        if self.jittery(est):
            return max(2, min(self.jitter_round, left))
        ratio = self.margin * (est.interval.width - floor) / self.gap(floor)
        wanted = max(self.min_round, math.ceil(ratio) - 1)
        return max(2, min(self.max_per_round, left, wanted))
