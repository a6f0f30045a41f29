"""The service's counters and the log lines made from them (MockClock for the summary interval)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trio_timehttp._serverstats import BoundedLog, ServerStats, log_summaries, totals_line

log = logging.getLogger("test.serverstats")


class Gauge:
    def __init__(self, active: int) -> None:
        self.active = active


def test_counters_and_gauges() -> None:
    stats = ServerStats()
    assert set(stats.snapshot().values()) == {0}
    stats.tcp_answers += 3
    stats.denied += 1
    stats.watch_connections(Gauge(2))
    stats.watch_connections(Gauge(5))
    assert stats.active_connections == 7
    assert stats.snapshot()["tcp_answers"] == 3
    assert totals_line(stats) == (
        "answered tcp 3, udp 0; rate-limited 0, denied 1, ignored 0, errors 0"
    )


async def test_summary_every_interval_only_when_something_happened(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.serverstats")
    stats = ServerStats()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log_summaries, stats, 60.0, log)
        await trio.sleep(61)  # one quiet interval: no line
        assert not caplog.records
        stats.udp_answers += 5
        stats.send_errors += 1
        stats.accept_errors += 1
        stats.rate_limited += 2
        await trio.sleep(60)
        stats.tcp_answers += 1
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [r.getMessage() for r in caplog.records] == [
        "last 60 s: answered tcp 0, udp 5; rate-limited 2, denied 0, ignored 0, errors 2; "
        "0 connection(s) open",
        "last 60 s: answered tcp 1, udp 0; rate-limited 0, denied 0, ignored 0, errors 0; "
        "0 connection(s) open",
    ]


async def test_a_count_made_once_started_is_in_the_first_summary(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # serve starts the summaries before serving: a denial right after READY=1
    # (before the task would have been scheduled) must be in a summary.
    caplog.set_level(logging.INFO, logger="test.serverstats")
    stats = ServerStats()
    async with trio.open_nursery() as nursery:
        await nursery.start(log_summaries, stats, 60.0, log)
        stats.denied += 1  # no checkpoint since start() returned
        await trio.sleep(61)
        nursery.cancel_scope.cancel()
    assert [r.getMessage() for r in caplog.records] == [
        "last 60 s: answered tcp 0, udp 0; rate-limited 0, denied 1, ignored 0, errors 0; "
        "0 connection(s) open",
    ]


async def test_summary_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        await log_summaries(ServerStats(), 0, log)


def test_bounded_log_holds_back_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.serverstats")
    now = [1000.0]
    bounded = BoundedLog(log, logging.WARNING, interval=10.0, clock=lambda: now[0])
    for i in range(100):  # a flood within one interval: one line
        bounded("denied %s", i)
    now[0] += 10.0
    bounded("denied %s", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "denied 0 (0 similar held back since the last such line)",
        "denied later (99 similar held back since the last such line)",
    ]
