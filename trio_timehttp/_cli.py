"""The ``trio-timehttp`` command: ``serve``, ``time``, ``get`` and ``demo``.

User mistakes and network failures are one line on stderr and a non-zero exit,
never a traceback; a closed stdout pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import NoReturn, TextIO

import trio

from ._combine import combine
from ._consumers import FileConsumer, RedirectingConsumer
from ._demo import DummyConsumer, run_demo
from ._errors import TimeHTTPError
from ._http import fetch
from ._models import Response
from ._sample import TimeSample
from ._timeclient import query_many
from ._timeserver import serve_time
from ._version import __version__

__all__ = ["main"]

PROG = "trio-timehttp"
log = logging.getLogger("trio_timehttp.cli")


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see (one line to stderr)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (with a pointer to --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}: {value}")
        return value

    return parse


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    return name, value.strip()


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="RFC 868 time service and client, and a streaming HTTP/1.1 requester.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    serve = sub.add_parser(
        "serve",
        help="run the RFC 868 time service (TCP and UDP)",
        description="Run the RFC 868 time service until Ctrl-C or SIGTERM.",
    )
    serve.add_argument(
        "--host", default=None, help="address to bind (default: every IPv4 and IPv6 address)"
    )
    serve.add_argument(
        "--port",
        type=_int_in(0, 65535),
        default=37,
        help="port (default 37, which needs root; 0 picks one)",
    )
    serve.add_argument("--no-tcp", dest="tcp", action="store_false", help="do not serve TCP")
    serve.add_argument("--no-udp", dest="udp", action="store_false", help="do not serve UDP")
    serve.add_argument(
        "--max-connections",
        type=_int_in(1, 1_000_000),
        default=1024,
        help="TCP connections answered at once; more wait (default 1024)",
    )
    serve.add_argument(
        "--udp-rate",
        type=_non_negative_float,
        default=10.0,
        help="UDP replies per second per source address; 0: no limit (default 10)",
    )
    serve.add_argument(
        "--udp-burst",
        type=_int_in(1, 1_000_000),
        default=20,
        help="UDP replies a source may get at once (default 20)",
    )
    serve.add_argument(
        "--workers",
        type=_int_in(1, 256),
        default=1,
        help="processes sharing the port via SO_REUSEPORT, to use several cores (default 1)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so other processes may serve the same port",
    )
    serve.set_defaults(func=_cmd_serve)

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
        type=_int_in(1, 65535),
        default=37,
        help="RFC 868 port when SOURCE has none (default 37)",
    )
    time_.add_argument("--udp", action="store_true", help="RFC 868 over UDP instead of TCP")
    time_.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="seconds for each source (default 5 s, 10 s for URLs, 15 s with --precise)",
    )
    time_.add_argument(
        "--precise",
        action="store_true",
        help="probe each server's second boundary: sub-second offsets",
    )
    time_.set_defaults(func=_cmd_time)

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
        type=_int_in(0, 1000),
        default=10,
        help="redirects to follow at most (default 10)",
    )
    get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    get.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_header,
        default=[],
        metavar="'Name: value'",
        help="add a request header",
    )
    get.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        help="total seconds for the whole exchange (default 300)",
    )
    get.set_defaults(func=_cmd_get)

    demo = sub.add_parser(
        "demo",
        help="run the seed's examples against local servers",
        description="Start a time server and an HTTP server on loopback, "
        "run the seed's clients against them, print what happened.",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (a nursery's wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# -- serve ---------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    rate = None if args.udp_rate == 0 else (args.udp_rate, args.udp_burst)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(
                partial(
                    serve_time,
                    args.port,
                    host=args.host,
                    tcp=args.tcp,
                    udp=args.udp,
                    max_connections=args.max_connections,
                    rate_limit=rate,
                    reuse_port=args.reuse_port,
                )
            )
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _worker_command(args: argparse.Namespace) -> list[str]:
    """The command line of one worker: this serve, as a single process on a shared port."""
    command = [sys.executable, "-m", "trio_timehttp"] + ["-v"] * args.verbose + [
        "serve", "--port", str(args.port), "--reuse-port",
        "--max-connections", str(args.max_connections),
        "--udp-rate", repr(args.udp_rate), "--udp-burst", str(args.udp_burst),
    ]  # fmt: skip
    if args.host is not None:
        command += ["--host", args.host]
    if not args.tcp:
        command.append("--no-tcp")
    if not args.udp:
        command.append("--no-udp")
    return command


async def _supervise(args: argparse.Namespace) -> int:
    """Run ``--workers`` processes on one SO_REUSEPORT port; stop them all on a signal.

    The service is stateless, so workers need no coordination: the kernel
    spreads connections and datagrams across them. If a worker dies (say, a
    bind error), the others are stopped and its status is returned.
    """
    command = _worker_command(args)
    status = 0
    procs: list[trio.Process] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(args.workers):
                    procs.append(await trio.lowlevel.open_process(command))
                log.info("started %d workers on port %d", len(procs), args.port)

                async def watch(proc: trio.Process) -> None:
                    nonlocal status
                    code = await proc.wait()
                    if not nursery.cancel_scope.cancel_called:
                        log.error("worker %d exited with status %d; stopping", proc.pid, code)
                        status = code or 1
                        nursery.cancel_scope.cancel()

                for proc in procs:
                    nursery.start_soon(watch, proc)
                async for signum in signals:
                    log.info("received %s, stopping the workers", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
        finally:
            with trio.CancelScope(shield=True):
                await _stop_all(procs)
    return status


async def _stop_all(procs: Sequence[trio.Process]) -> None:
    """SIGTERM every worker, give them 10 s to stop cleanly, then kill the rest."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(10):
        for proc in procs:
            await proc.wait()
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    if not (args.tcp or args.udp):
        raise UsageError("nothing to serve: --no-tcp and --no-udp together")
    if args.workers > 1:
        if args.port == 0:
            raise UsageError("--workers needs a fixed --port (each worker would get its own)")
        return trio.run(_supervise, args)
    try:
        try:
            trio.run(_serve, args)
        except BaseExceptionGroup as group:
            leaf = _single(group)
            if leaf is group:
                raise
            raise leaf from None
    except PermissionError as exc:
        if args.port < 1024:
            raise UsageError(
                f"cannot bind port {args.port}: permission denied (ports below 1024 need "
                "root or CAP_NET_BIND_SERVICE); try --port 8037"
            ) from exc
        raise
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"cannot bind port {args.port}: address already in use") from exc
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, trio.socket.gaierror):
            raise UsageError(f"cannot bind {args.host!r}: {exc.strerror or exc}") from exc
        raise
    log.info("stopped")
    return 0


# -- time ----------------------------------------------------------------------------------


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


def _cmd_time(args: argparse.Namespace, out: TextIO) -> int:
    results = trio.run(
        partial(
            query_many,
            args.sources,
            args.port,
            udp=args.udp,
            timeout=args.timeout,
            precise=args.precise,
        )
    )
    return _format_samples(args.sources, results, out)


# -- get -----------------------------------------------------------------------------------


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


def _cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    sink: _Progress | FileConsumer | None = None
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory):
            raise UsageError(f"cannot write {args.output}: no such directory")
        sink = FileConsumer(args.output)
        if sys.stderr.isatty():
            sink = _Progress(sink, sys.stderr)
    report = _BodyReport(out, sink)
    consumer: object = report
    if args.redirects:
        consumer = RedirectingConsumer(report, max_redirects=args.max_redirects)
    trio.run(partial(fetch, args.url, consumer, headers=args.headers, timeout=args.timeout))
    return 0


# -- demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    trio.run(run_demo, out)
    return 0


# -- entry point ---------------------------------------------------------------------------


def _setup_logging(verbose: int, command: str) -> None:
    level = logging.WARNING
    if command == "serve" or verbose == 1:
        level = logging.INFO
    if verbose >= 2:
        level = logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    # Sources may come after options (``time --port 8037 a b``): argparse
    # leaves those positionals over; anything else left over is a mistake.
    if args.command == "time" and extra and not any(e.startswith("-") for e in extra):
        args.sources.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose, args.command)
    out = sys.stdout
    try:
        status: int = args.func(args, out)
        out.flush()
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (TimeHTTPError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _quiet_broken_pipe()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return status


def _quiet_broken_pipe() -> int:
    """stdout was closed under us (``| head``): exit quietly, as a filter should."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return 0
