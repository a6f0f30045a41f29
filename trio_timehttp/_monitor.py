"""The reading loop of ``trio-timehttp monitor``: every source, every interval, on Trio.

``run_readings(config, state)`` runs rounds forever: a round reads every
source once, through at most ``config.concurrency`` worker tasks in one
nursery (each reading has its own deadline: ``query_time``'s or
``query_http_time``'s ``timeout``), records each result in ``state`` as it
ends, and judges the round together when the last source is done. Rounds
start every ``interval`` seconds; a round that takes longer than that delays
the next (rounds never overlap, so at most ``concurrency`` readings -- and
sockets -- are ever open, whatever the number of sources).

``monitor(config, state, page)`` is the whole exporter: the metrics
server (``serve_metrics``) and the reading loop in one nursery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NoReturn, Protocol

import trio

from ._errors import TimeHTTPError
from ._httptime import query_http_time
from ._metrics_server import serve_metrics_listeners
from ._monitor_state import MonitorState
from ._sample import TimeSample
from ._timeclient import query_time

__all__ = ["MonitorConfig", "monitor", "run_readings"]

logger = logging.getLogger("trio_timehttp.monitor")


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """What to read and how often.

    ``interval`` seconds between round starts (default ``60.0``); ``port``
    and ``udp`` for RFC 868 sources without a port; ``timeout`` per reading
    (``None``: the client's default, 5 s, 10 s for URLs, 15 s precise);
    ``concurrency`` readings at most at once (default ``64``: a round of
    1,000 loopback sources then takes ~0.35 s, and a scrape during it waits
    ~30 ms for the event loop; 256 made that ~170 ms for no faster round --
    bench/README.md; a round lasts about ``silent sources / concurrency *
    timeout``, so raise it when many sources time out);
    ``metrics_port`` (``0``: any free port) and ``metrics_host`` (default
    ``"127.0.0.1"``) where ``/metrics`` is served.
    """

    sources: tuple[str, ...]
    interval: float = 60.0
    port: int = 37
    udp: bool = False
    timeout: float | None = None
    precise: bool = False
    concurrency: int = 64
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    proxy: str | None = None  # URL sources only, as query_http_time's proxy=/trust_env=
    trust_env: bool = True


class Page(Protocol):
    """What ``monitor`` serves: ``render()`` the page, ``refresh()`` it after each round."""

    def render(self) -> bytes: ...

    def refresh(self) -> None: ...


async def monitor(
    config: MonitorConfig,
    state: MonitorState,
    page: Page,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``page`` at ``http://metrics_host:metrics_port/metrics`` and read the sources.

    Runs until cancelled. The metrics port is bound first: a bind failure is
    the plain ``OSError`` before any reading starts; then
    ``task_status.started(listeners)`` (read the port of ``metrics_port=0``
    from ``listeners[0].socket.getsockname()``). ``page.refresh()`` is
    called after every round.
    """
    listeners = await trio.open_tcp_listeners(config.metrics_port, host=config.metrics_host)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_metrics_listeners, page.render, listeners))
        task_status.started(listeners)
        await run_readings(config, state, page.refresh)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_readings(
    config: MonitorConfig, state: MonitorState, on_round: Callable[[], None] = lambda: None
) -> NoReturn:
    """Rounds of readings every ``config.interval`` seconds, recorded in ``state``; forever.

    ``on_round()`` is called after each round is judged, before the wait for
    the next: no reading is in flight then.
    """
    next_start = trio.current_time()
    while True:
        await trio.sleep_until(next_start)
        began = trio.current_time()
        results = await read_round(config, state)
        reading = state.finish_round(results)
        on_round()
        took = trio.current_time() - began
        logger.info(
            "round %d: %d of %d sources answered in %.3f s",
            state.rounds, reading.answered, len(results), took,
        )  # fmt: skip
        next_start += config.interval
        if next_start < trio.current_time():
            logger.warning(
                "a round took %.1f s, longer than the %.1f s interval: the next starts now",
                took, config.interval,
            )  # fmt: skip
            next_start = trio.current_time()


async def read_round(
    config: MonitorConfig, state: MonitorState
) -> list[TimeSample | TimeHTTPError]:
    """Read every source once (``config.concurrency`` at a time); results in source order."""
    results: list[TimeSample | TimeHTTPError | None] = [None] * len(config.sources)
    pending = iter(range(len(config.sources)))

    async def worker() -> None:
        # The workers share one iterator: next() runs between awaits, so each
        # index goes to exactly one worker.
        for index in pending:
            result = await _read(config, config.sources[index])
            results[index] = result
            state.record(index, result)

    async with trio.open_nursery() as nursery:
        for _ in range(min(config.concurrency, len(config.sources))):
            nursery.start_soon(worker)
    done: list[TimeSample | TimeHTTPError] = []
    for result in results:
        assert result is not None  # every index was taken by a worker that finished
        done.append(result)
    return done


async def _read(config: MonitorConfig, source: str) -> TimeSample | TimeHTTPError:
    try:
        if source.lower().startswith(("http://", "https://")):
            return await query_http_time(
                source,
                timeout=config.timeout,
                precise=config.precise,
                proxy=config.proxy,
                trust_env=config.trust_env,
            )
        return await query_time(
            source, config.port, udp=config.udp, timeout=config.timeout, precise=config.precise
        )
    except TimeHTTPError as exc:
        logger.debug("%s: %s", source, exc)
        return exc
