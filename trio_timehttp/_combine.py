"""Combining the offsets of several sources by their intervals (pure).

Theory of operation. Every reading proves an interval: the true offset lies in
``[offset - uncertainty, offset + uncertainty]`` -- *if* the source's clock is
right. A source whose clock is wrong (a "falseticker", in NTP's word) proves
nothing, and we cannot tell it from a right one by looking at it alone. What
we can see is agreement: right sources all contain the one true offset, so
their intervals overlap.

The rule (after Marzullo's algorithm and NTP's clock selection, RFC 5905
section 11.2.1): call the *depth* of an offset the number of intervals that
contain it, and the *majority region* every offset whose depth is more than
half the sources. Then:

- the combined interval is the hull of the majority region (``lo``..``hi``);
  the combined offset its middle, the uncertainty its half-width;
- a source whose interval touches no point of the majority region belongs to
  no majority of mutually consistent sources: it is a falseticker;
- no majority region (two sources that do not overlap, two against two, ...)
  means we cannot tell which sources are right: no combined offset at all.

What must stay true (the property tests hold these for all inputs): whenever a
strict majority of the intervals contains the true offset, the combined
interval contains it too, and none of those intervals is marked. This is why
the hull of the *whole* majority region is taken rather than NTP's tighter
"region where the most intervals agree": falsetickers that overlap wide right
intervals can make the deepest point a wrong one, the majority region cannot.
When every source agrees the result is the region where more than half agree,
which is wider than the intersection of all of them: we do not assume that
every source is right.

A reply whose offset is beyond ``PLAUSIBLE_SKEW`` is *implausible* (a server
sending 0, which decodes to 2036, or a clock reset to its epoch): it is not a
skew but a fault, takes no part in the vote and is reported as a falseticker.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PLAUSIBLE_SKEW", "Consensus", "consensus", "is_plausible"]

#: Largest offset (seconds) taken as a skew rather than a fault: a year and a
#: day. A clock that is kept at all does not drift this far; beyond it the
#: server sent a wrong era (RFC 868's 0 decodes to 2036-02-07: +9 years from
#: 2026) or its clock was reset, and its interval must not take part in a vote.
PLAUSIBLE_SKEW = 366 * 86400.0


def is_plausible(offset: float) -> bool:
    """True when ``offset`` (seconds) is within ``PLAUSIBLE_SKEW`` of zero."""
    return abs(offset) <= PLAUSIBLE_SKEW


@dataclass(frozen=True, slots=True)
class Consensus:
    """What a set of intervals agrees on.

    ``lo``/``hi`` bound the combined interval, ``None`` when there is no
    majority (then ``offset`` and ``uncertainty`` are ``None`` too).
    ``falsetickers`` and ``implausible`` are indexes into the intervals given
    (every implausible index is also a falseticker). ``voters`` is the number
    of plausible intervals; ``agreeing`` the size of the largest set of
    mutually consistent ones (the deepest point's depth). ``median`` is the
    median of the plausible offsets (``None`` when there are none).
    """

    lo: float | None
    hi: float | None
    falsetickers: tuple[int, ...]
    implausible: tuple[int, ...]
    voters: int
    agreeing: int
    median: float | None

    @property
    def offset(self) -> float | None:
        """The middle of the combined interval."""
        if self.lo is None or self.hi is None:
            return None
        return (self.lo + self.hi) / 2

    @property
    def uncertainty(self) -> float | None:
        """Half the combined interval's width."""
        if self.lo is None or self.hi is None:
            return None
        return (self.hi - self.lo) / 2

    @property
    def kept(self) -> int:
        """How many plausible intervals are not falsetickers."""
        return self.voters - len(self.falsetickers) + len(self.implausible)

    @property
    def has_majority(self) -> bool:
        """True when a strict majority of the plausible sources agree."""
        return self.lo is not None


def consensus(offsets: Sequence[float], uncertainties: Sequence[float]) -> Consensus:
    """Combine ``offset +- uncertainty`` intervals as the module docstring says.

    Intervals are closed: two that touch agree. Raises ``ValueError`` when the
    two sequences differ in length or an uncertainty is negative. No intervals
    at all give no majority.
    """
    if len(offsets) != len(uncertainties):
        raise ValueError("one uncertainty per offset")
    if any(u < 0 for u in uncertainties):
        raise ValueError("an uncertainty is never negative")
    implausible = tuple(i for i, o in enumerate(offsets) if not is_plausible(o))
    voting = [i for i in range(len(offsets)) if i not in implausible]
    intervals = [(offsets[i] - uncertainties[i], offsets[i] + uncertainties[i]) for i in voting]
    regions, deepest = _majority_regions(intervals)
    median = statistics.median(offsets[i] for i in voting) if voting else None
    if not regions:
        return Consensus(None, None, implausible, implausible, len(voting), deepest, median)
    marked = [
        index
        for index, (lo, hi) in zip(voting, intervals, strict=True)
        if not any(lo <= r_hi and r_lo <= hi for r_lo, r_hi in regions)
    ]
    falsetickers = tuple(sorted([*marked, *implausible]))
    lo, hi = regions[0][0], regions[-1][1]
    return Consensus(lo, hi, falsetickers, implausible, len(voting), deepest, median)


def _majority_regions(
    intervals: Sequence[tuple[float, float]],
) -> tuple[list[tuple[float, float]], int]:
    """The closed segments whose depth is more than half of ``len(intervals)``, in order,
    and the greatest depth.

    A sweep over the end points: at equal coordinates starts come before ends,
    so touching intervals count as overlapping (a segment may be one point).
    """
    need = len(intervals) // 2 + 1
    events = sorted([(lo, 0) for lo, _ in intervals] + [(hi, 1) for _, hi in intervals])
    regions: list[tuple[float, float]] = []
    depth = deepest = 0
    start = 0.0
    for x, kind in events:
        if kind == 0:
            depth += 1
            deepest = max(deepest, depth)
            if depth == need:
                start = x
        else:
            if depth == need:
                regions.append((start, x))
            depth -= 1
    return _merge(regions), deepest


def _merge(regions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Join segments that touch (a depth that dips and returns at one point)."""
    merged: list[tuple[float, float]] = []
    for lo, hi in regions:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged
