"""Clock-offset samples and the interval arithmetic behind precise mode (pure).

Both RFC 868 and the HTTP ``Date`` header give whole seconds: the server read
its clock at some local instant ``t`` between when our request could first
reach it (``start``) and when its answer arrived (``end``), and truncated it to
``second``. So the true offset ``theta = server - local`` satisfies
``second <= t + theta < second + 1``, hence lies in
``[second - end, second + 1 - start)``. One reading pins the offset to an
interval about a second wide; readings taken so that the server's clock ticks
over during them cut that interval, and intersecting them is always correct,
however late a probe runs (a slow probe only narrows less). That is the whole
of "precise" mode, for RFC 868 and HTTP alike (htpdate uses the same idea).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OffsetEstimator", "TimeSample", "plain_sample"]


@dataclass(frozen=True, slots=True)
class TimeSample:
    """One measurement of a server's clock against ours.

    ``offset = server_time - local_time``: add it to the local clock to match
    the server. The true offset lies within ``offset +- uncertainty``.
    """

    host: str
    port: int
    server_time: float
    local_time: float
    offset: float
    rtt: float
    uncertainty: float


def plain_sample(host: str, port: int, second: int, start: float, end: float) -> TimeSample:
    """A whole-second reading taken between local wall times ``start`` and ``end``.

    The offset is not centred (the server truncated its clock), so the true
    offset is within ``1 + rtt/2`` of it.
    """
    local = (start + end) / 2
    rtt = end - start
    return TimeSample(
        host=host,
        port=port,
        server_time=float(second),
        local_time=local,
        offset=second - local,
        rtt=rtt,
        uncertainty=1.0 + rtt / 2,
    )


class OffsetEstimator:
    """Narrows the offset interval from whole-second readings, and says when to probe next.

    ``add()`` takes each reading; ``next_probe_at()`` gives the local wall time
    to start the next probe so that the server reads its clock just when,
    by the current middle estimate, its second ticks over: the reading then
    tells on which side of that middle the true offset lies (a bisection).
    """

    def __init__(self) -> None:
        self.lo = -math.inf
        self.hi = math.inf
        self.readings = 0
        #: Readings that contradicted the earlier ones (server clock stepped,
        #: or it rounds instead of truncating); the estimate restarted at each.
        self.restarts = 0

    def add(self, second: int, start: float, end: float) -> bool:
        """Intersect with one reading; False when it contradicted the others (restarted)."""
        lo = second - end
        hi = second + 1 - start
        self.readings += 1
        new_lo, new_hi = max(self.lo, lo), min(self.hi, hi)
        if new_lo > new_hi:
            self.lo, self.hi = lo, hi
            self.restarts += 1
            return False
        self.lo, self.hi = new_lo, new_hi
        return True

    @property
    def offset(self) -> float:
        """The middle of the interval: the best estimate of ``server - local``."""
        return (self.lo + self.hi) / 2

    @property
    def uncertainty(self) -> float:
        """Half the interval's width: the true offset is within this of ``offset``."""
        return (self.hi - self.lo) / 2

    def next_probe_at(self, now: float, lead: float, min_gap: float) -> float:
        """Local wall time (>= ``now + min_gap``) at which to start the next probe.

        ``lead`` is how long after a probe starts the server typically reads
        its clock (about half a round trip). We aim that read at the instant
        ``t`` where ``t + offset`` is a whole second.
        """
        earliest = now + min_gap + lead
        target = math.ceil(earliest + self.offset) - self.offset
        return target - lead
