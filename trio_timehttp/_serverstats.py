"""What the time server counts, and the log lines made from the counts.

One `ServerStats` per service: the TCP and UDP loops add to it, the periodic
INFO summary (`log_summaries`) and the ``serve --metrics-port`` page read it.
The loops add per batch or per connection with plain integer attributes: no
lock is needed in Trio's single thread, and an attribute increment is the
cheapest thing a per-datagram path can do.

`BoundedLog` keeps lines caused by the network (a denied source, exhausted
file descriptors) to one per interval, counting the ones it held back, so a
flood cannot fill a disk or a journal.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

import trio

__all__ = ["BoundedLog", "ServerStats", "log_summaries"]


class _Gauge(Protocol):
    active: int


class ServerStats:
    """Counters of one time service (all start at 0 and only grow), and a live gauge.

    ``tcp_answers`` / ``udp_answers``: answers sent; ``rate_limited``: UDP
    datagrams over their source's rate limit; ``denied``: connections and
    datagrams from sources outside ``allow``; ``ignored``: datagrams the
    RFC 868 rules do not answer (a low source port, 4 or 8 bytes, over 512
    bytes); ``accept_errors``: failed ``accept()`` calls; ``send_errors``:
    answers the kernel refused or the peer reset first.
    ``active_connections`` is how many TCP answers are in flight now.
    """

    __slots__ = (
        "_gauges",
        "accept_errors",
        "denied",
        "ignored",
        "rate_limited",
        "send_errors",
        "tcp_answers",
        "udp_answers",
    )

    FIELDS = (
        "tcp_answers",
        "udp_answers",
        "rate_limited",
        "denied",
        "ignored",
        "accept_errors",
        "send_errors",
    )

    def __init__(self) -> None:
        self.tcp_answers = 0
        self.udp_answers = 0
        self.rate_limited = 0
        self.denied = 0
        self.ignored = 0
        self.accept_errors = 0
        self.send_errors = 0
        self._gauges: list[_Gauge] = []

    def watch_connections(self, gauge: _Gauge) -> None:
        """Count ``gauge.active`` into ``active_connections`` (a TCP server's slots)."""
        self._gauges.append(gauge)

    @property
    def active_connections(self) -> int:
        return sum(gauge.active for gauge in self._gauges)

    def snapshot(self) -> dict[str, int]:
        """The counters by name (`FIELDS`), for a summary or a metrics page."""
        return {name: getattr(self, name) for name in self.FIELDS}


def _counts(counts: dict[str, int]) -> str:
    errors = counts["accept_errors"] + counts["send_errors"]
    return (
        f"answered tcp {counts['tcp_answers']}, udp {counts['udp_answers']}; "
        f"rate-limited {counts['rate_limited']}, denied {counts['denied']}, "
        f"ignored {counts['ignored']}, errors {errors}"
    )


def summary_line(delta: dict[str, int], interval: float, active: int) -> str:
    """The INFO summary of one interval, from the counter differences."""
    return f"last {interval:g} s: {_counts(delta)}; {active} connection(s) open"


def totals_line(stats: ServerStats) -> str:
    """The counts since the start (for the stop line)."""
    return _counts(stats.snapshot())


async def log_summaries(
    stats: ServerStats,
    interval: float,
    logger: logging.Logger,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every ``interval`` seconds, log at INFO what changed (nothing changed: no line).

    Runs until cancelled. ``interval`` must be positive. The first interval
    counts from ``task_status.started()`` (use ``nursery.start``, or a count
    made before the task first runs is in no summary).
    """
    if not interval > 0:
        raise ValueError("the summary interval must be positive")
    last = stats.snapshot()
    task_status.started()
    while True:
        await trio.sleep(interval)
        now = stats.snapshot()
        delta = {name: now[name] - last[name] for name in now}
        last = now
        if any(delta.values()):
            logger.info("%s", summary_line(delta, interval, stats.active_connections))


class BoundedLog:
    """Logs at most one line per ``interval`` seconds; the ones held back are counted.

    The next line that gets through says how many were held back since the
    last one. ``clock`` defaults to ``time.monotonic`` (a wall-clock step
    changes nothing).
    """

    __slots__ = ("_clock", "_interval", "_last", "_level", "_logger", "suppressed")

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._level = level
        self._interval = interval
        self._last = -math.inf
        self.suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            self.suppressed += 1
            return
        self._logger.log(
            self._level,
            message + " (%d similar held back since the last such line)",
            *args,
            self.suppressed,
        )
        self._last = now
        self.suppressed = 0
