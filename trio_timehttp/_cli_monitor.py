"""``trio-timehttp monitor``: a Prometheus exporter of clock offsets.

Reads every SOURCE every ``--interval`` seconds and serves the results at
``http://--metrics-host:--metrics-port/metrics`` until SIGTERM or Ctrl-C,
which stop it cleanly with exit status 0 (as ``serve``). Needs the optional
``prometheus_client`` (``pip install trio_timehttp[metrics]``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from functools import partial
from typing import TextIO

import trio

from ._cli_args import (
    PROG,
    Parser,
    UsageError,
    add_proxy_options,
    cannot_listen,
    int_in,
    positive_float,
    single,
)
from ._cli_sources import check_sources
from ._monitor import MonitorConfig, Page, monitor
from ._monitor_state import MonitorState

log = logging.getLogger("trio_timehttp.cli")

_MISSING = "monitor needs the prometheus_client package: pip install 'trio_timehttp[metrics]'"


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``monitor`` subcommand to ``sub``."""
    mon = sub.add_parser(
        "monitor",
        help="read clocks every interval and serve the offsets as Prometheus metrics",
        description="Read every SOURCE (host, host:port or http(s) URL) every --interval "
        "seconds and serve the offsets, their combination and the errors at /metrics "
        "(Prometheus text format). Runs until SIGTERM or Ctrl-C.",
    )
    mon.add_argument("sources", nargs="+", metavar="SOURCE", help="host, host:port or URL")
    mon.add_argument(
        "--interval",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="seconds between readings of each source (default 60)",
    )
    mon.add_argument(
        "--metrics-port",
        type=int_in(0, 65535),
        required=True,
        metavar="P",
        help="port of the /metrics server (0: any free port, printed on stderr)",
    )
    mon.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="H",
        help="address of the /metrics server (default 127.0.0.1; 0.0.0.0 or :: for all)",
    )
    mon.add_argument(
        "--port", type=int_in(1, 65535), default=37, help="RFC 868 port when SOURCE has none"
    )
    mon.add_argument("--udp", action="store_true", help="RFC 868 over UDP instead of TCP")
    mon.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        help="seconds for each reading (default 5 s, 10 s for URLs, 15 s with --precise)",
    )
    mon.add_argument(
        "--precise",
        action="store_true",
        help="measure to a fraction of a second (several readings; slower)",
    )
    mon.add_argument(
        "--concurrency",
        type=int_in(1, 100000),
        default=64,
        metavar="N",
        help="readings at most at once (default 64; raise it when many sources time out)",
    )
    add_proxy_options(
        mon, "send URL sources through this HTTP proxy (http://[user:pass@]host:port)"
    )
    mon.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from ._monitor_metrics import MetricsPage
    except ImportError:
        print(f"{PROG}: error: {_MISSING}", file=sys.stderr)
        return 1
    check_sources(args.sources, args.port)
    try:
        state = MonitorState(args.sources, udp=args.udp)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = MonitorConfig(
        sources=tuple(args.sources),
        interval=args.interval,
        port=args.port,
        udp=args.udp,
        timeout=args.timeout,
        precise=args.precise,
        concurrency=args.concurrency,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        proxy=args.proxy,
        trust_env=args.trust_env,
    )
    try:
        trio.run(_run, config, state, MetricsPage(state))
    except BaseExceptionGroup as group:
        raise single(group) from None
    return 0


async def _run(config: MonitorConfig, state: MonitorState, page: Page) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                listeners = await nursery.start(partial(monitor, config, state, page))
            except OSError as exc:  # before any reading: only the metrics listener fails so
                raise cannot_listen("for metrics ", config.metrics_host, config.metrics_port,
                                    exc) from None  # fmt: skip
            address = listeners[0].socket.getsockname()
            where = f"[{address[0]}]" if ":" in address[0] else address[0]
            print(
                f"{PROG} monitor: {_count(len(config.sources), 'source')} every "
                f"{config.interval:g} s, "
                f"metrics at http://{where}:{address[1]}/metrics",
                file=sys.stderr,
                flush=True,
            )
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _count(n: int, noun: str) -> str:
    """``1 source``, ``2 sources``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
