"""Combining offsets from several sources robustly, like a careful ntpdate (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OUTLIER_FLOOR", "Combined", "combine"]

#: The smallest spread we ever trust (seconds). Without a floor, two sources
#: that agree exactly (MAD 0) would call any third source an outlier.
OUTLIER_FLOOR = 0.05


@dataclass(frozen=True, slots=True)
class Combined:
    """The median offset of the sources that answered, and which of them stand apart."""

    median: float
    mad: float
    outliers: tuple[int, ...]  # indexes into the offsets given to combine()


def combine(offsets: Sequence[float], uncertainties: Sequence[float]) -> Combined:
    """Median offset; a source is an outlier when even its error interval is far from it.

    Far means beyond ``3 * max(MAD, OUTLIER_FLOOR)``, MAD being the median
    absolute deviation: a whole-second reading that is 1 s off the median is
    not an outlier if its own uncertainty (about 1 s) covers the gap.
    """
    if not offsets:
        raise ValueError("no offsets to combine")
    median = statistics.median(offsets)
    mad = statistics.median(abs(o - median) for o in offsets)
    limit = 3 * max(mad, OUTLIER_FLOOR)
    outliers = tuple(
        i
        for i, (o, u) in enumerate(zip(offsets, uncertainties, strict=True))
        if abs(o - median) - u > limit
    )
    return Combined(median=median, mad=mad, outliers=outliers)
