"""``serve --metrics-port``: the time service's `ServerStats` in the Prometheus text format.

Needs the optional ``prometheus_client`` (``pip install trio_timehttp[metrics]``):
importing this module without it raises ``ImportError``; ``_cli_serve`` turns
that into one clear line.

A custom collector reads the `ServerStats` the serve loops count into, at
scrape time: the loops stay free of metrics code (they add to plain integer
attributes), and a handful of series costs microseconds to render, so the
page is rendered per scrape and always current.

Exported: ``timehttp_answers_total{protocol="tcp"|"udp"}``,
``timehttp_rate_limited_total``, ``timehttp_denied_total``,
``timehttp_ignored_total``, ``timehttp_accept_errors_total``,
``timehttp_send_errors_total`` (counters) and ``timehttp_active_connections``
(gauge).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._serverstats import ServerStats

__all__ = ["ServiceMetrics"]


class ServiceMetrics:
    """The metrics page of one service; ``render`` is the callback for ``serve_metrics``."""

    def __init__(self, stats: ServerStats) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_StatsCollector(stats))

    def render(self) -> bytes:
        """The page now (UTF-8 Prometheus text, version 0.0.4)."""
        return generate_latest(self._registry)


class _StatsCollector(Collector):
    def __init__(self, stats: ServerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        answers = CounterMetricFamily(
            "timehttp_answers", "Time answers sent, by protocol.", labels=["protocol"]
        )
        answers.add_metric(["tcp"], stats.tcp_answers)
        answers.add_metric(["udp"], stats.udp_answers)
        yield answers
        for name, value, text in (
            ("timehttp_rate_limited", stats.rate_limited,
             "UDP requests not answered: over their source's rate limit."),
            ("timehttp_denied", stats.denied,
             "Connections and datagrams from sources outside --allow."),
            ("timehttp_ignored", stats.ignored,
             "Datagrams RFC 868 does not answer (low source port, 4 or 8 bytes, over 512)."),
            ("timehttp_accept_errors", stats.accept_errors, "Failed accept() calls."),
            ("timehttp_send_errors", stats.send_errors,
             "Answers the kernel refused or the peer reset first."),
        ):  # fmt: skip
            yield CounterMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "timehttp_active_connections",
            "TCP connections being answered now.",
            value=stats.active_connections,
        )
