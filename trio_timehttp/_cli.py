"""The ``trio-timehttp`` command: ``serve``, ``time``, ``get`` and ``demo``.

Each subcommand lives in its own module (``_cli_serve``, ``_cli_time``,
``_cli_get``) with an ``add_parser(sub)`` and a ``cmd_*(args, out)``; this one
assembles the parser and owns what is common: logging, and turning every
failure into one line on stderr and an exit status, never a traceback; a closed
stdout pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import trio

from . import _cli_get, _cli_monitor, _cli_serve, _cli_time
from ._cli_args import PROG, Parser, UsageError
from ._demo import run_demo
from ._errors import TimeHTTPError
from ._version import __version__

__all__ = ["main"]

log = logging.getLogger("trio_timehttp.cli")


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="RFC 868 time service and client, and a streaming HTTP/1.1 requester.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    _cli_serve.add_parser(sub)
    _cli_time.add_parser(sub)
    _cli_get.add_parser(sub)
    _cli_monitor.add_parser(sub)

    demo = sub.add_parser(
        "demo",
        help="run the seed's examples against local servers",
        description="Start a time server and an HTTP server on loopback, "
        "run the seed's clients against them, print what happened.",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    trio.run(run_demo, out)
    return 0


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
