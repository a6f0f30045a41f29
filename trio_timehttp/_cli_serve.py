"""``trio-timehttp serve``: the RFC 868 time service, one process or several workers."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import trio

from ._cli_args import Parser, UsageError, int_in, non_negative_float, single
from ._timeserver import serve_time

log = logging.getLogger("trio_timehttp.cli")


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``serve`` subcommand to ``sub``."""
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
        type=int_in(0, 65535),
        default=37,
        help="port (default 37, which needs root; 0 picks one)",
    )
    serve.add_argument("--no-tcp", dest="tcp", action="store_false", help="do not serve TCP")
    serve.add_argument("--no-udp", dest="udp", action="store_false", help="do not serve UDP")
    serve.add_argument(
        "--max-connections",
        type=int_in(1, 1_000_000),
        default=1024,
        help="TCP connections answered at once; more wait (default 1024)",
    )
    serve.add_argument(
        "--udp-rate",
        type=non_negative_float,
        default=10.0,
        help="UDP replies per second per source address; 0: no limit (default 10)",
    )
    serve.add_argument(
        "--udp-burst",
        type=int_in(1, 1_000_000),
        default=20,
        help="UDP replies a source may get at once (default 20)",
    )
    serve.add_argument(
        "--workers",
        type=int_in(1, 256),
        default=1,
        help="processes sharing the port via SO_REUSEPORT, to use several cores (default 1)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so other processes may serve the same port",
    )
    serve.set_defaults(func=cmd_serve)


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


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
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
            leaf = single(group)
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
