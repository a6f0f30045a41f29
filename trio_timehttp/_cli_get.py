"""``trio-timehttp get``: fetch a URL, print the seed's report, optionally save the body."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from typing import TextIO

import trio

from ._cli_args import Parser, UsageError, header_arg, int_in, positive_float
from ._consumer import Consumer
from ._consumers import FileConsumer, RedirectingConsumer
from ._demo import DummyConsumer
from ._http import fetch
from ._models import Response


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``get`` subcommand to ``sub``."""
    get = sub.add_parser(
        "get",
        help="GET a URL, print status and headers (like 7-10)",
        description="GET a URL and print its status line, its headers and "
        "the body size; with -o, save the body to FILE.",
    )
    get.add_argument("url", metavar="URL")
    get.add_argument(
        "--no-redirects",
        dest="redirects",
        action="store_false",
        help="report a redirect instead of following it",
    )
    get.add_argument(
        "--max-redirects",
        type=int_in(0, 1000),
        default=10,
        help="redirects to follow at most (default 10)",
    )
    get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    get.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=header_arg,
        default=[],
        metavar="'Name: value'",
        help="add a request header",
    )
    get.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="total seconds for the whole exchange (default 300)",
    )
    proxy = get.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="send the request through this HTTP proxy (http://[user:pass@]host:port)",
    )
    proxy.add_argument(
        "--no-proxy",
        dest="trust_env",
        action="store_false",
        help="ignore http_proxy, https_proxy, all_proxy and no_proxy in the environment",
    )
    get.set_defaults(func=cmd_get)


class _Progress:
    """Wraps a consumer: a progress bar on stderr while the body streams (terminals only)."""

    def __init__(self, consumer: FileConsumer, stream: TextIO) -> None:
        self.consumer = consumer
        self.stream = stream
        self.total: int | None = None
        self.done = 0
        self._last = -1

    def http_header(self, response: Response) -> object:
        length = response.headers.get("content-length") if response.status_code else None
        self.total = int(length) if length and length.isdigit() else None
        self.done = 0
        return self.consumer.http_header(response)

    def feed(self, data: bytes) -> None:
        self.consumer.feed(data)
        self.done += len(data)
        self._draw()

    def http_error(self, exc: BaseException) -> None:
        self.consumer.http_error(exc)

    def close(self) -> None:
        if self._last >= 0:
            self.stream.write("\n")
            self.stream.flush()
        self.consumer.close()

    def _draw(self) -> None:
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            if pct == self._last:
                return
            self._last = pct
            bar = "#" * (pct * 30 // 100)
            self.stream.write(f"\r[{bar:<30}] {pct:3d}% {self.done} bytes")
        else:
            step = self.done >> 20  # redraw each MiB when the size is unknown
            if step == self._last:
                return
            self._last = step
            self.stream.write(f"\r{self.done} bytes")
        self.stream.flush()


class _BodyReport(DummyConsumer):
    """7-10's consumer, handing the body on to a file consumer when ``-o`` is given."""

    def __init__(self, out: TextIO, sink: _Progress | FileConsumer | None) -> None:
        super().__init__(out)
        self.sink = sink

    def http_header(self, response: Response) -> None:
        super().http_header(response)
        if self.sink is not None:
            self.sink.http_header(response)

    def feed(self, data: bytes) -> None:
        super().feed(data)
        if self.sink is not None:
            self.sink.feed(data)

    def http_error(self, exc: BaseException) -> None:
        if self.sink is not None:
            self.sink.http_error(exc)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
        super().close()


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    sink: _Progress | FileConsumer | None = None
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory):
            raise UsageError(f"cannot write {args.output}: no such directory")
        sink = FileConsumer(args.output)
        if sys.stderr.isatty():
            sink = _Progress(sink, sys.stderr)
    report = _BodyReport(out, sink)
    consumer: Consumer = report
    if args.redirects:
        consumer = RedirectingConsumer(report, max_redirects=args.max_redirects)
    trio.run(
        partial(
            fetch,
            args.url,
            consumer,
            headers=args.headers,
            timeout=args.timeout,
            proxy=args.proxy,
            trust_env=args.trust_env,
        )
    )
    return 0
