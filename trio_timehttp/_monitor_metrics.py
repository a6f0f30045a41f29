"""``monitor``'s metrics in the Prometheus text format, through ``prometheus_client``.

Needs the optional ``prometheus_client`` (``pip install trio_timehttp[metrics]``):
importing this module without it raises ``ImportError``; ``_cli_monitor``
turns that into one clear line.

A custom collector reads ``MonitorState`` at scrape time (``prometheus_client``
calls ``collect()`` from ``generate_latest``) rather than keeping one
``Gauge`` child per source updated by the reading loop: the state is already
in memory, the loop stays free of metrics code, and counters carry no
``_created`` series (which would double the series count for thousands of
sources).

Exported (labels ``source``, ``protocol`` unless said otherwise):
``timehttp_offset_seconds``, ``timehttp_uncertainty_seconds``,
``timehttp_rtt_seconds``, ``timehttp_last_success_timestamp_seconds``,
``timehttp_readings_total``, ``timehttp_errors_total`` (+ ``kind``),
``timehttp_falseticker`` (1 when the last round marked the source);
without labels: ``timehttp_combined_offset_seconds``,
``timehttp_combined_uncertainty_seconds`` (both absent while the sources have
no majority), ``timehttp_falsetickers``, ``timehttp_rounds_total``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._monitor_state import MonitorState

__all__ = ["MetricsPage"]

_LABELS = ["source", "protocol"]


class MetricsPage:
    """The metrics page of a ``MonitorState``, rendered once per round and served from memory.

    ``refresh()`` renders the page now (the reading loop calls it when a round
    is complete, while no reading is in flight); ``render()`` -- the callback
    for ``serve_metrics`` -- returns the last rendered page without doing any
    work. Rendering costs about 35 us per source (``prometheus_client``'s
    text format, measured in bench/README.md): done per scrape it would stall
    the event loop under the readings of a round (and widen their intervals)
    each time a scraper came by; done once per round it costs nothing that
    matters and a scrape costs a memory copy. So the page always shows the
    last complete round, per-source series and combined ones alike.
    """

    def __init__(self, state: MonitorState) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_StateCollector(state))
        self._page = generate_latest(self._registry)

    def refresh(self) -> None:
        """Render the page from the state as it is now."""
        self._page = generate_latest(self._registry)

    def render(self) -> bytes:
        """The page as last rendered (at creation or by ``refresh``)."""
        return self._page


class _StateCollector(Collector):
    def __init__(self, state: MonitorState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._per_source()
        yield from self._combined()

    def _per_source(self) -> Iterator[Metric]:
        offset = GaugeMetricFamily(
            "timehttp_offset_seconds", "Server clock minus local clock (middle of the interval).",
            labels=_LABELS,
        )  # fmt: skip
        uncertainty = GaugeMetricFamily(
            "timehttp_uncertainty_seconds", "Half-width of the offset's interval.", labels=_LABELS
        )
        rtt = GaugeMetricFamily(
            "timehttp_rtt_seconds", "Round trip of the reading.", labels=_LABELS
        )
        success = GaugeMetricFamily(
            "timehttp_last_success_timestamp_seconds",
            "Unix time (local clock) of the last successful reading.",
            labels=_LABELS,
        )
        readings = CounterMetricFamily(
            "timehttp_readings", "Readings tried, failed ones included.", labels=_LABELS
        )
        errors = CounterMetricFamily(
            "timehttp_errors", "Failed readings by kind.", labels=[*_LABELS, "kind"]
        )
        false = GaugeMetricFamily(
            "timehttp_falseticker",
            "1 when the last round found the source outside every majority.",
            labels=_LABELS,
        )
        for s in self._state.sources:
            labels = [s.source, s.protocol]
            if s.sample is not None:
                offset.add_metric(labels, s.sample.offset)
                uncertainty.add_metric(labels, s.sample.uncertainty)
                rtt.add_metric(labels, s.sample.rtt)
            if s.last_success is not None:
                success.add_metric(labels, s.last_success)
            readings.add_metric(labels, s.readings)
            for kind, count in s.errors.items():
                errors.add_metric([*labels, kind], count)
            false.add_metric(labels, 1.0 if s.falseticker else 0.0)
        yield from (offset, uncertainty, rtt, success, readings, errors, false)

    def _combined(self) -> Iterator[Metric]:
        last = self._state.last_round
        offset = GaugeMetricFamily(
            "timehttp_combined_offset_seconds",
            "Middle of the interval the majority of sources agrees on (last complete round).",
        )
        uncertainty = GaugeMetricFamily(
            "timehttp_combined_uncertainty_seconds", "Half-width of that interval."
        )
        false = GaugeMetricFamily(
            "timehttp_falsetickers", "Sources outside every majority in the last complete round."
        )
        rounds = CounterMetricFamily("timehttp_rounds", "Complete rounds of readings.")
        rounds.add_metric([], self._state.rounds)
        if last is not None:
            c = last.consensus
            if c.offset is not None and c.uncertainty is not None:
                offset.add_metric([], c.offset)
                uncertainty.add_metric([], c.uncertainty)
            false.add_metric([], len(last.falsetickers))
        yield from (offset, uncertainty, false, rounds)
