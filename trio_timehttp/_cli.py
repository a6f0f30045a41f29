"""The ``trio-timehttp`` command: ``serve``, ``time``, ``get`` and ``demo``.

Each subcommand lives in its own module (``_cli_serve``, ``_cli_time``,
``_cli_get``) with an ``add_parser(sub)`` and a ``cmd_*(args, out)``; this one
assembles the parser and owns what is common: logging, and turning every
failure into one line on stderr and an exit status, never a traceback; a closed
stdout pipe (``| head``) ends quietly, except under ``get -o -``, whose body
is then lost (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TextIO

import trio

from . import _cli_get, _cli_monitor, _cli_serve, _cli_time
from ._cli_args import (
    PROG,
    CommandError,
    Parser,
    TopParser,
    UsageError,
    VersionAction,
    describe,
    printable,
    single,
    usage_text,
)
from ._demo import run_demo
from ._errors import TimeHTTPError
from ._version import __version__

__all__ = ["main"]

log = logging.getLogger("trio_timehttp.cli")


def _build_parser() -> argparse.ArgumentParser:
    parser = TopParser(
        prog=PROG,
        description="Tell the time and fetch web pages: serve and read the RFC 868 "
        "time protocol, measure how far this machine's clock is from other servers "
        "(time servers, or web servers by their Date header), and fetch URLs over HTTP/1.1.",
    )
    parser.add_argument("--version", action=VersionAction, version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(
        dest="command", required=False, metavar="COMMAND", parser_class=Parser
    )

    _cli_serve.add_parser(sub)
    _cli_time.add_parser(sub)
    _cli_get.add_parser(sub)
    _cli_monitor.add_parser(sub)

    demo = sub.add_parser(
        "demo",
        help="try everything on this machine: a time server, a web server and their clients",
        description="Start a time server and a small web server (with a redirect) on "
        "this machine only (loopback), then run against them: a time reading over RFC 868, "
        "an HTTP GET that prints the status and headers, the same GET following the "
        "redirect, and a time reading from the web server's Date header. Prints what "
        "happened and exits 0; nothing goes beyond this machine.",
    )
    demo.set_defaults(func=_cmd_demo)
    for command in sub.choices.values():
        command.set_defaults(parser=command)  # its own errors point to its own --help
    return parser


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    trio.run(run_demo, out)
    return 0


class _PrintableFormatter(logging.Formatter):
    """Log lines with a ``printable`` message: a server's words logged cannot drive the terminal.

    A traceback (``-vv``) is added after the message, keeping its own lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _setup_logging(verbose: int, command: str) -> None:
    level = logging.WARNING
    if command in ("serve", "monitor") or verbose == 1:  # the services say what they do
        level = logging.INFO
    if verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; a mistake exits 2 via the parser it belongs to."""
    args, extra = parser.parse_known_args(argv)
    if args.command is None:  # checked here, so ``-x`` is named rather than COMMAND missed
        unknown = f"unrecognized arguments: {' '.join(extra)}"
        parser.error(unknown if extra else "the following arguments are required: COMMAND")
    # Sources may come after options (``time --port 8037 a b``): argparse
    # leaves those positionals over; anything else left over is a mistake,
    # reported by the subcommand's parser (so it points to its --help).
    positional = extra and not any(e.startswith("-") for e in extra)
    if args.command in ("time", "monitor") and positional:
        args.sources.extend(extra)
    elif extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.verbose += getattr(args, "more_verbose", 0)
    return args


class _Signals:
    """SIGTERM ends a command as Ctrl-C does (cleanup runs, partial files go), exit 143.

    While ``trio.run`` runs, SIGINT's handler is Trio's, which raises
    ``KeyboardInterrupt`` where that is safe and delivers it to the main task
    otherwise; SIGTERM hands its signal to that same handler, so both unwind
    through every ``finally`` and ``close()``. (``serve`` installs its own
    receivers for both while it runs: there SIGTERM is a clean stop, exit 0.)

    Trio installs its handler only over Python's default one, but a job a
    shell started with ``&`` inherits SIGINT *ignored*; raising
    ``KeyboardInterrupt`` from a signal handler at a random point inside
    Trio corrupts its run loop. So an ignored SIGINT is blocked at the OS
    level instead (still never delivered) and Python's default handler put
    back for Trio to replace; both are restored at the end (restoring
    SIG_IGN first drops any SIGINT left pending).
    """

    def __init__(self) -> None:
        self.terminated = False

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)  # raises KeyboardInterrupt, or has Trio deliver it
            return
        raise KeyboardInterrupt  # someone set SIGINT to SIG_DFL meanwhile

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        except ValueError:  # not the main thread (main() called from a thread)
            yield
            return
        interrupt = signal.getsignal(signal.SIGINT)
        if interrupt is signal.SIG_IGN:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        if not callable(interrupt):
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            if not callable(interrupt):
                signal.signal(signal.SIGINT, interrupt)
            if interrupt is signal.SIG_IGN:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _leaf(exc: BaseException) -> BaseException:
    """What to report for ``exc``: Ctrl-C or a closed pipe anywhere in a group wins."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    for kind in (KeyboardInterrupt, BrokenPipeError):
        matched, _ = exc.split(kind)
        if matched is not None:
            return single(matched)
    return single(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (130 on Ctrl-C, 143 on SIGTERM)."""
    signals = _Signals()
    with signals.installed():
        try:
            return _main(argv, signals)
        except KeyboardInterrupt:  # before or after the command ran
            return _interrupted(signals)


def _usage_status(argv: Sequence[str]) -> int:
    """2 for a mistake in the command line; 3 (UNKNOWN) in plugin mode (``time --warn/--crit``).

    A monitoring system reads 2 from a plugin as CRITICAL: a plugin's bad
    arguments are UNKNOWN (monitoring-plugins guidelines). Abbreviations
    argparse accepts (``--cr``) count.
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    names = {a.partition("=")[0] for a in argv if a.startswith("--") and len(a) > 3}
    plugin = any(flag.startswith(n) for n in names for flag in ("--warn", "--crit"))
    return 3 if command == "time" and plugin else 2


def _main(argv: Sequence[str] | None, signals: _Signals) -> int:
    usage_status = _usage_status(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(_build_parser(), argv)
    except SystemExit as exc:  # argparse's usage error (its line is on stderr), or --help
        if exc.code == 2:
            return usage_status
        raise
    except OSError as exc:  # --help or --version could not be written
        print(f"{PROG}: error: cannot write to stdout: {describe(exc)}", file=sys.stderr)
        _quiet_broken_pipe()
        return 1
    _setup_logging(args.verbose, args.command)
    # A closed stdout (``>&-``): what would go there is lost quietly, as with
    # ``| head``; ``get -o -``, whose whole point is that output, says so.
    out = sys.stdout if sys.stdout is not None else open(os.devnull, "w")  # noqa: SIM115
    try:
        try:
            status: int = args.func(args, out)
            out.flush()
        except BaseExceptionGroup as group:
            raise _leaf(group) from None
    except UsageError as exc:
        where = f"{PROG} {args.command}"
        print(f"{where}: error: {usage_text(str(exc))} (see {where} --help)", file=sys.stderr)
        return usage_status
    except BrokenPipeError as exc:
        if exc.filename is None:  # stdout's reader went (``| head``): end quietly
            return _quiet_broken_pipe()
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)  # -o FIFO's reader went
        return 1
    except (TimeHTTPError, OSError) as exc:
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted(signals)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if isinstance(exc, _cli_get.StdoutClosed):
            _quiet_broken_pipe()  # what is still buffered for the dead pipe goes nowhere
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with -vv
        log.debug("internal error", exc_info=True)
        print(f"{PROG}: internal error: {describe(exc)} (-vv shows where)", file=sys.stderr)
        return 70  # EX_SOFTWARE
    return status


def _interrupted(signals: _Signals) -> int:
    print(f"{PROG}: {'terminated' if signals.terminated else 'interrupted'}", file=sys.stderr)
    return 143 if signals.terminated else 130


def _quiet_broken_pipe() -> int:
    """stdout was closed under us (``| head``): exit quietly, as a filter should."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):  # stdout None, or not a file
        pass
    return 0
