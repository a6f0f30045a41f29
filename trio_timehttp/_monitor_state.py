"""What ``trio-timehttp monitor`` knows about its sources between scrapes (pure).

The reading loop writes here (``record`` as each source's reading ends,
``finish_round`` once every source of a round is done); the metrics page is
rendered from it after each round (``_monitor_metrics.MetricsPage``). Nothing
here waits, so a scrape never waits on a reading. Memory is fixed by the
number of sources: one record each, with at most one error counter per error
kind.

Series semantics (what the collector exports from this):

- ``offset``/``uncertainty``/``rtt`` are the latest successful reading's, and
  only while the latest reading of that source succeeded: a failed reading
  removes them (no stale offset), ``last_success`` keeps the time of the last
  good one.
- ``readings`` counts every reading tried, ``errors[kind]`` the failed ones.
- the combined values come from the last *complete* round, judged together
  (``_readings.make_reading``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._errors import TimeHTTPError
from ._readings import Reading, error_kind, make_reading, protocol_of
from ._sample import TimeSample

__all__ = ["MonitorState", "SourceState"]


@dataclass(slots=True)
class SourceState:
    """One source: its labels, its latest sample (if the latest reading succeeded), counters."""

    source: str
    protocol: str
    sample: TimeSample | None = None
    last_success: float | None = None
    readings: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    falseticker: bool = False


class MonitorState:
    """Every source's state and the last complete round's judgement."""

    def __init__(self, sources: Sequence[str], *, udp: bool = False) -> None:
        """One record per source, labelled with its protocol (``protocol_of(source, udp)``).

        Raises ``ValueError`` when a source is given twice (its series would clash).
        """
        if len(set(sources)) != len(sources):
            raise ValueError("a source is given more than once")
        self.sources = [SourceState(s, protocol_of(s, udp)) for s in sources]
        self.last_round: Reading | None = None
        self.rounds = 0

    def record(self, index: int, result: TimeSample | TimeHTTPError) -> None:
        """The reading of source ``index`` ended with ``result``."""
        state = self.sources[index]
        state.readings += 1
        if isinstance(result, TimeSample):
            state.sample = result
            state.last_success = result.local_time
        else:
            state.sample = None
            kind = error_kind(result)
            state.errors[kind] = state.errors.get(kind, 0) + 1

    def finish_round(self, results: Sequence[TimeSample | TimeHTTPError]) -> Reading:
        """Judge one complete round (one result per source, in order) and keep the verdict."""
        reading = make_reading(
            [s.source for s in self.sources], results, [s.protocol for s in self.sources]
        )
        for state, judged in zip(self.sources, reading.results, strict=True):
            state.falseticker = judged.falseticker
        self.last_round = reading
        self.rounds += 1
        return reading
