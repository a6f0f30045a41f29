"""``trio-timehttp time``: read the clocks of time servers and web servers.

Three ways to write a reading (``_time_report``): text (one line per source,
then a summary), ``--json`` (JSON lines) and plugin mode (``--warn``/``--crit``:
one monitoring-plugins status line, exit 0/1/2/3). ``--interval``/``--count``
repeat the reading (watch mode): one line -- or one set of JSON objects -- per
reading, and a closing summary.

Ending a watch: Ctrl-C or SIGTERM stops it as ``ping`` is stopped: the reading
in progress is dropped, the closing summary is written (on stdout in text
mode; on stderr with ``--json`` or in plugin mode, so stdout stays parseable),
and the exit status is what it would have been had ``--count`` ended there
(text/JSON: 0 if any reading got an answer, else 1; plugin mode: the worst
state seen). Only a watch stopped before its first reading completed exits as
any interrupted command does: 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

import trio

from ._cli_args import (
    Parser,
    UsageError,
    add_proxy_options,
    int_in,
    non_negative_float,
    positive_float,
    printable,
    single,
)
from ._cli_sources import check_sources
from ._readings import Reading, make_reading, protocol_of
from ._time_report import (
    Thresholds,
    WatchStats,
    json_objects,
    plugin_line,
    text_lines,
    watch_line,
    worst_state,
)
from ._timeclient import query_many

#: Exit status of a watch stopped by a signal before its first reading completed.
INTERRUPTED: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``time`` subcommand to ``sub``."""
    time_ = sub.add_parser(
        "time",
        help="measure the clock offset of time or web servers",
        description="Query RFC 868 servers (HOST or HOST:PORT) and web "
        "servers (http(s) URLs, via their Date header) concurrently; "
        "the offset is the server's clock minus this machine's. Each reading is a range "
        "the true offset must lie in; a source whose range disagrees with the majority "
        "is marked as a falseticker (a clock that is wrong).",
    )
    time_.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="host, host:port, [v6]:port or http(s)://URL"
    )
    time_.add_argument(
        "--port",
        type=int_in(1, 65535),
        default=37,
        help="RFC 868 port when SOURCE has none (default 37)",
    )
    time_.add_argument("--udp", action="store_true", help="RFC 868 over UDP instead of TCP")
    time_.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        help="seconds for each source (default 5 s, 10 s for URLs, 15 s with --precise)",
    )
    time_.add_argument(
        "--precise",
        action="store_true",
        help="take several readings timed around the server's tick of the second, to "
        "measure to a fraction of a second (slower)",
    )
    add_proxy_options(
        time_, "send URL sources through this HTTP proxy (http://[user:pass@]host:port)"
    )
    _add_output_options(time_)
    time_.set_defaults(func=cmd_time)


def _add_output_options(time_: argparse.ArgumentParser) -> None:
    time_.add_argument(
        "--json", action="store_true", help="JSON lines: one object per source, then a summary"
    )
    time_.add_argument(
        "--warn",
        type=non_negative_float,
        metavar="W",
        help="monitoring-plugin output: WARNING when abs(offset) + uncertainty is over W seconds",
    )
    time_.add_argument(
        "--crit",
        type=non_negative_float,
        metavar="C",
        help="monitoring-plugin output: CRITICAL when abs(offset) + uncertainty is over C seconds",
    )
    time_.add_argument(
        "--interval",
        type=positive_float,
        metavar="S",
        help="repeat: start a reading every S seconds until Ctrl-C (or --count)",
    )
    time_.add_argument(
        "--count",
        type=int_in(1, 10**9),
        metavar="N",
        help="stop after N readings (every 1 s unless --interval is given)",
    )


@dataclass(frozen=True, slots=True)
class _Options:
    sources: tuple[str, ...]
    protocols: tuple[str, ...]
    port: int
    udp: bool
    timeout: float | None
    precise: bool
    json: bool
    thresholds: Thresholds | None
    interval: float | None
    count: int | None
    proxy: str | None = None
    trust_env: bool = True


def _options(args: argparse.Namespace) -> _Options:
    plugin = args.warn is not None or args.crit is not None
    if plugin and args.json:
        raise UsageError("--json and --warn/--crit (plugin mode) are two different outputs")
    if args.warn is not None and args.crit is not None and args.warn > args.crit:
        raise UsageError(f"--warn {args.warn:g} is above --crit {args.crit:g}")
    check_sources(args.sources, args.port)
    interval = args.interval
    if interval is None and args.count is not None:
        interval = 1.0
    return _Options(
        sources=tuple(args.sources),
        protocols=tuple(protocol_of(s, args.udp) for s in args.sources),
        port=args.port,
        udp=args.udp,
        timeout=args.timeout,
        precise=args.precise,
        json=args.json,
        thresholds=Thresholds(args.warn, args.crit) if plugin else None,
        interval=interval,
        count=args.count,
        proxy=args.proxy,
        trust_env=args.trust_env,
    )


def cmd_time(args: argparse.Namespace, out: TextIO) -> int:
    options = _options(args)
    if options.interval is None:
        reading = trio.run(_read, options)
        return _write(reading, options, out, when=None)
    try:
        return trio.run(_watch, options, out)
    except BaseExceptionGroup as group:
        raise single(group) from None


async def _read(options: _Options) -> Reading:
    results = await query_many(
        options.sources,
        options.port,
        udp=options.udp,
        timeout=options.timeout,
        precise=options.precise,
        proxy=options.proxy,
        trust_env=options.trust_env,
    )
    return make_reading(options.sources, results, options.protocols)


def _write(reading: Reading, options: _Options, out: TextIO, *, when: float | None) -> int:
    """Write one reading in the chosen form; its status (plugin state, or 0/1).

    ``when`` (the reading's start, Unix seconds) is given in watch mode only.
    """
    if options.thresholds is not None:
        state, line = plugin_line(reading, options.thresholds)
        print(printable(line), file=out)
        return state
    if options.json:
        for obj in json_objects(reading):
            print(json.dumps(obj), file=out)
    elif when is not None:
        print(printable(watch_line(reading, when)), file=out)
    else:
        print("\n".join(map(printable, text_lines(reading))), file=out)
    return 0 if reading.answered else 1


async def _watch(options: _Options, out: TextIO) -> int:
    """Readings every ``interval`` until ``count`` or a signal; then the closing summary."""
    stats = WatchStats()
    stopped_by: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope, stopped_by)
            await _repeat(options, out, stats)
            nursery.cancel_scope.cancel()
    print(stats.summary(), file=sys.stderr if options.json or options.thresholds else out)
    if stats.readings == 0:
        return INTERRUPTED[stopped_by[0]] if stopped_by else 130
    if options.thresholds is not None:
        return worst_state(stats.states)
    return 0 if stats.answered else 1


async def _stop_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, stopped_by: list[int]
) -> None:
    async for signum in signals:
        stopped_by.append(signum)
        scope.cancel()
        return


async def _repeat(options: _Options, out: TextIO, stats: WatchStats) -> None:
    """Start a reading every ``interval`` seconds (right away when one ran late)."""
    assert options.interval is not None
    next_start = trio.current_time()
    while options.count is None or stats.readings < options.count:
        await trio.sleep_until(next_start)
        when = time.time()
        reading = await _read(options)
        status = _write(reading, options, out, when=when)
        out.flush()
        stats.add(reading, status if options.thresholds is not None else None)
        next_start = max(next_start + options.interval, trio.current_time())
        if options.count is not None and stats.readings >= options.count:
            return
