"""``trio-timehttp time``: read the clocks of time servers and web servers."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import trio

from ._cli_args import Parser, int_in, positive_float
from ._combine import combine
from ._errors import TimeHTTPError
from ._sample import TimeSample
from ._timeclient import query_many


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``time`` subcommand to ``sub``."""
    time_ = sub.add_parser(
        "time",
        help="measure the clock offset of time or web servers",
        description="Query RFC 868 servers (HOST or HOST:PORT) and web "
        "servers (http(s) URLs, via their Date header) concurrently; "
        "offset = server - local.",
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
        help="probe each server's second boundary: sub-second offsets",
    )
    proxy = time_.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="send URL sources through this HTTP proxy (http://[user:pass@]host:port)",
    )
    proxy.add_argument(
        "--no-proxy",
        dest="trust_env",
        action="store_false",
        help="ignore http_proxy, https_proxy, all_proxy and no_proxy in the environment",
    )
    time_.set_defaults(func=cmd_time)


def _format_samples(
    sources: Sequence[str], results: Sequence[TimeSample | TimeHTTPError], out: TextIO
) -> int:
    labels = list(sources)
    width = max(len(label) for label in labels)
    good = [(i, r) for i, r in enumerate(results) if isinstance(r, TimeSample)]
    summary = None
    if len(good) >= 2:
        summary = combine([r.offset for _, r in good], [r.uncertainty for _, r in good])
    outliers = {good[j][0] for j in summary.outliers} if summary else set()
    for i, (label, result) in enumerate(zip(labels, results, strict=True)):
        if isinstance(result, TimeSample):
            mark = "  outlier" if i in outliers else ""
            print(
                f"{label:<{width}}  offset {result.offset:+.3f} s  +- {result.uncertainty:.3f} s"
                f"  rtt {result.rtt:.3f} s{mark}",
                file=out,
            )
        else:
            print(f"{label:<{width}}  error: {result}", file=out)
    if summary is not None:
        note = f", {len(outliers)} outlier(s) marked" if outliers else ""
        print(
            f"median offset {summary.median:+.3f} s over {len(good)} sources "
            f"(MAD {summary.mad:.3f} s{note})",
            file=out,
        )
    return 0 if good else 1


def cmd_time(args: argparse.Namespace, out: TextIO) -> int:
    results = trio.run(
        partial(
            query_many,
            args.sources,
            args.port,
            udp=args.udp,
            timeout=args.timeout,
            precise=args.precise,
            proxy=args.proxy,
            trust_env=args.trust_env,
        )
    )
    return _format_samples(args.sources, results, out)
