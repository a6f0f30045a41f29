"""``trio-timehttp serve``: the RFC 868 time service as a daemon, one process or several workers.

The order of a start is the whole design, and the same on every path:

1. check the arguments (a bad ``--allow`` or an unknown ``--user`` fails here);
2. get the sockets: inherited from systemd (``LISTEN_FDS``), or from the
   supervisor (a worker's ``--worker-fds``), or bound here -- as root if the
   port needs it;
3. drop to ``--user``/``--group`` (after binding, before serving anything);
4. serve (`serve_time` with ``sockets=``), then tell systemd ``READY=1``
   (or the supervisor ``ready``); on SIGTERM/SIGINT ``STOPPING=1``, stop,
   exit 0.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TextIO

import trio

from . import _systemd, _workers
from ._access import AllowList
from ._binding import bind_sockets, connected_stream, format_address, split_by_kind
from ._cli_args import (
    CommandError,
    Parser,
    UsageError,
    cannot_listen,
    int_in,
    listen_reason,
    non_negative_float,
    single,
)
from ._metrics_server import serve_metrics_listeners
from ._privileges import (
    Identity,
    LateImports,
    PrivilegeError,
    drop_privileges,
    preload,
    resolve_identity,
)
from ._serverstats import ServerStats, log_summaries, totals_line
from ._timeserver import serve_time

log = logging.getLogger("trio_timehttp.cli")


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``serve`` subcommand to ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="run the RFC 868 time service (TCP and UDP)",
        description="Run the RFC 868 time service until Ctrl-C or SIGTERM. Started by "
        "systemd socket activation (LISTEN_FDS), it serves the sockets it was given.",
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
        "--allow",
        action="append",
        metavar="CIDR",
        help="answer only sources in this network (repeatable; default: everybody)",
    )
    serve.add_argument(
        "--user", help="after binding, run as this user (needs root; supplementary groups dropped)"
    )
    serve.add_argument("--group", help="with --user: run as this group (default: the user's)")
    serve.add_argument(
        "--stats-interval",
        type=non_negative_float,
        default=600.0,
        metavar="S",
        help="log a summary of answers, denials and errors every S seconds; 0: never "
        "(default 600)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int_in(0, 65535),
        metavar="P",
        help="serve Prometheus metrics at http://HOST:P/metrics (needs prometheus_client; "
        "bound before --user takes effect, like the time port; with --workers the "
        "supervisor's, summing the workers' counts)",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --metrics-port (default 127.0.0.1: this machine only)",
    )
    serve.add_argument(
        "--workers",
        type=int_in(1, 256),
        default=1,
        help="worker processes sharing the port, to use several cores (default 1)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so other processes may serve the same port",
    )
    # A worker's sockets and lifeline, from its supervisor (see _workers).
    serve.add_argument("--worker-fds", help=argparse.SUPPRESS)
    serve.add_argument("--lifeline", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)


# --------------------------------------------------------------------------- logging


def _configure_logging(with_pid: bool) -> None:
    """The service's log format: the PID when there are several processes; no time for journald."""
    fmt = "%(name)s[%(process)d] %(levelname)s %(message)s" if with_pid else (
        "%(name)s %(levelname)s %(message)s"
    )  # fmt: skip
    if not _systemd.journal_stderr(os.environ):
        fmt = "%(asctime)s " + fmt
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(fmt))


# --------------------------------------------------------------------------- the open step


def _inherited(args: argparse.Namespace) -> list[socket.socket] | None:
    """The sockets handed down (supervisor's ``--worker-fds``, or systemd's); None: bind."""
    if args.worker_fds:
        socks = []
        try:
            fds = [int(text) for text in args.worker_fds.split(",")]
        except ValueError:
            raise UsageError(
                f"--worker-fds: not descriptor numbers: {args.worker_fds!r}"
            ) from None
        for fd in fds:
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(False)
            socks.append(sock)
        return socks
    try:
        passed = _systemd.inherited_sockets(os.environ, os.getpid())
    except ValueError as exc:
        raise UsageError(f"socket activation: {exc}") from None
    if not passed:
        return None
    for item in passed:
        kind = "tcp" if item.sock.type == socket.SOCK_STREAM else "udp"
        if kind == "tcp" and connected_stream(item.sock):
            raise CommandError(
                f"socket activation: fd {item.fd} ({item.name}) is one TCP connection"
                " (systemd's Accept=yes, systemd-socket-activate --accept, inetd), not a"
                " listening socket: serve accepts its own connections; use Accept=no"
                " (the default), or run without --accept"
            )
        log.info("socket activation: fd %d (%s) is %s %s", item.fd, item.name, kind,
                 _sockname(item.sock))  # fmt: skip
    return [item.sock for item in passed]


def _sockname(sock: socket.socket) -> str:
    try:
        return format_address(sock.getsockname())
    except (OSError, IndexError, TypeError):
        return "(not an IP socket)"


def _bind(args: argparse.Namespace, reuse_port: bool) -> list[socket.socket]:
    """Bind ``--host``/``--port`` for TCP and UDP as asked; errors as one clear UsageError."""
    socks: list[socket.socket] = []
    try:
        if args.tcp:
            socks += bind_sockets(args.host, args.port, socket.SOCK_STREAM, reuse_port)
        if args.udp:
            socks += bind_sockets(args.host, args.port, socket.SOCK_DGRAM, reuse_port)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise _bind_error(args, exc) from exc
    return socks


def _bind_error(args: argparse.Namespace, exc: OSError) -> Exception:
    """A failed bind in words: a runtime failure (exit 1), not a usage mistake."""
    if isinstance(exc, PermissionError) and args.port < 1024:
        return CommandError(f"cannot bind port {args.port}: {listen_reason(exc, args.port)}; "
                            "try --port 8037")  # fmt: skip
    if exc.errno == errno.EADDRINUSE:
        return CommandError(f"cannot bind port {args.port}: {listen_reason(exc, args.port)}")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return CommandError(f"cannot bind {args.host!r}: {listen_reason(exc, args.port)}")
    return exc


def _drop(identity: Identity | None) -> None:
    if identity is None:
        return
    preload()  # what serving would load lazily, while the interpreter's files are readable
    try:
        drop_privileges(identity)
    except PrivilegeError as exc:
        # Refuse to go on as root: nothing has been served yet.
        raise UsageError(f"refusing to run: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- the serve step


def _status_line(socks: list[socket.socket]) -> str:
    tcp, udp = split_by_kind(socks)
    parts = [f"{kind} {', '.join(_sockname(s) for s in group)}"
             for kind, group in (("tcp", tcp), ("udp", udp)) if group]  # fmt: skip
    return "serving " + "; ".join(parts)


async def _serve(
    args: argparse.Namespace,
    socks: list[socket.socket],
    stats: ServerStats,
    metrics: _Metrics | None,
) -> None:
    """Serve ``socks`` until a signal (or, in a worker, the supervisor's death).

    With ``metrics`` (``--metrics-port``) the metrics page is served too,
    before readiness is announced: a service that says READY=1 answers both.
    """
    rate = None if args.udp_rate == 0 else (args.udp_rate, args.udp_burst)
    status = _status_line(socks)
    lifeline = None if args.lifeline is None else socket.socket(fileno=args.lifeline)
    # The receiver outlives the nursery: a second signal during the stop is
    # taken (and dropped) by it, not by the command line's "terminated".
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if args.stats_interval > 0:  # before serving: every answer is in a summary
                await nursery.start(log_summaries, stats, args.stats_interval, log)
            await nursery.start(
                partial(serve_time, sockets=socks, tcp=args.tcp, udp=args.udp,
                        max_connections=args.max_connections, rate_limit=rate,
                        allow=args.allow, stats=stats)
            )  # fmt: skip
            if metrics is not None:
                listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s))
                             for s in metrics.socks]  # fmt: skip
                await nursery.start(partial(serve_metrics_listeners, metrics.render, listeners))
            if lifeline is not None:
                lifeline.send(_workers.READY)
                nursery.start_soon(_workers.watch_lifeline, lifeline, nursery.cancel_scope.cancel,
                                   args.supervisor)  # fmt: skip
                nursery.start_soon(_workers.report_stats, lifeline, stats)
            else:
                _systemd.notify(f"READY=1\nSTATUS={status}", os.environ)
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                break
            if lifeline is None:
                _systemd.notify("STOPPING=1", os.environ)
            else:
                _block_stop_signals()
            nursery.cancel_scope.cancel()
    if lifeline is not None:
        lifeline.close()


def _block_stop_signals() -> None:
    """In a worker that is stopping: a further SIGTERM stays pending, and dies with the process.

    systemd's SIGTERM to the whole cgroup and the supervisor's own may both
    arrive; the worker stops once. (SIGINT is blocked from the worker's
    start: Ctrl-C reaches the whole process group, and the supervisor alone
    acts on it, with one SIGTERM per worker.)
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


@dataclass(frozen=True)
class _Metrics:
    """``--metrics-port``: the page's render function and its bound, listening sockets."""

    render: Callable[[], bytes]
    socks: list[socket.socket]


def _bind_metrics(args: argparse.Namespace, render: Callable[[], bytes] | None) -> _Metrics | None:
    """Bind the metrics port now, before any drop (it may be a privileged port, too).

    Renders the page once as well: whatever the renderer loads on first use
    is loaded while the interpreter's files are surely readable.
    """
    if render is None:
        return None
    try:
        socks = bind_sockets(args.metrics_host, args.metrics_port, socket.SOCK_STREAM)
    except OSError as exc:
        raise cannot_listen("for metrics ", args.metrics_host, args.metrics_port, exc) from None
    render()
    return _Metrics(render, socks)


def _metrics_page(args: argparse.Namespace, stats: ServerStats) -> Callable[[], bytes] | None:
    """``--metrics-port``: the page's render function; checked before anything is bound."""
    if args.metrics_port is None:
        return None
    try:
        from ._serve_metrics import ServiceMetrics
    except ImportError:
        raise UsageError(
            "--metrics-port needs prometheus_client (pip install trio_timehttp[metrics])"
        ) from None
    return ServiceMetrics(stats).render


def _serve_sockets_checked(
    args: argparse.Namespace,
    socks: list[socket.socket],
    stats: ServerStats,
    metrics: _Metrics | None,
) -> None:
    """Run `_serve`, turning a mismatch of sockets and flags into one clear error."""
    tcp, udp = split_by_kind(socks)
    if (tcp and not args.tcp) or (udp and not args.udp):
        raise UsageError("the inherited sockets include a kind switched off (--no-tcp/--no-udp)")
    try:
        trio.run(_serve, args, socks, stats, metrics)
    except BaseExceptionGroup as group:
        leaf = single(group)
        if leaf is group:
            raise
        raise leaf from None


# --------------------------------------------------------------------------- workers


def _worker_command(args: argparse.Namespace) -> list[str]:
    """A worker's command line (without its fds): this serve, as a single process."""
    command = _workers.python_command() + ["-v"] * args.verbose + [
        "serve", "--max-connections", str(args.max_connections),
        "--udp-rate", repr(args.udp_rate), "--udp-burst", str(args.udp_burst),
        "--stats-interval", repr(args.stats_interval),
    ]  # fmt: skip
    for network in args.allow or ():
        command += ["--allow", network]
    if args.user is not None:  # each worker drops for itself, once it has its sockets
        command += ["--user", args.user] + (["--group", args.group] if args.group else [])
    if not args.tcp:
        command.append("--no-tcp")
    if not args.udp:
        command.append("--no-udp")
    return command


def _run_workers(
    args: argparse.Namespace,
    inherited: list[socket.socket] | None,
    drop: Callable[[], None],
    metrics: _Metrics | None,
    stats: ServerStats,
) -> int:
    """The supervisor: lock the port, bind one SO_REUSEPORT set per worker, supervise.

    Workers are exec'd before anyone drops privileges (the interpreter may
    not be readable by the target user) and drop for themselves; the
    supervisor drops once they run (``Hooks.spawned``).
    """
    locks: list[socket.socket] = []
    if inherited is not None:
        sets = [inherited] * args.workers
    else:
        try:
            locks = _workers.port_lock(["tcp"] * args.tcp + ["udp"] * args.udp, args.port)
        except OSError as exc:
            raise _bind_error(args, exc) from exc
        sets = []
        try:
            for _ in range(args.workers):
                sets.append(_bind(args, reuse_port=True))
        except BaseException:
            for socks in sets:
                for sock in socks:
                    sock.close()
            raise
    where = _status_line(sets[0])

    def ready(pids: list[int]) -> None:
        log.info("started %d workers (pids %s), %s", len(pids), ", ".join(map(str, pids)), where)
        _systemd.notify(f"READY=1\nSTATUS={where} with {len(pids)} workers", os.environ)

    def stopping() -> None:
        _systemd.notify("STOPPING=1", os.environ)

    serve = None
    if metrics is not None:
        # The supervisor serves the page: the sum of what the workers report each second.
        def serve(task_status: trio.TaskStatus[object]) -> Awaitable[object]:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s))
                         for s in metrics.socks]  # fmt: skip
            return serve_metrics_listeners(metrics.render, listeners, task_status=task_status)

    try:
        hooks = _workers.Hooks(spawned=drop, ready=ready, stopping=stopping, serve=serve)
        return trio.run(_workers.supervise, _worker_command(args), sets, hooks, stats)
    finally:
        for lock in locks:
            lock.close()


# --------------------------------------------------------------------------- the command


def _check(args: argparse.Namespace) -> Identity | None:
    """Every argument check that needs no socket; returns who to become, if anyone."""
    if not (args.tcp or args.udp):
        raise UsageError("nothing to serve: --no-tcp and --no-udp together")
    if args.allow is not None:
        try:
            AllowList.parse(args.allow)
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
    if args.group is not None and args.user is None:
        raise UsageError("--group needs --user")
    if args.user is None:
        return None
    try:
        return resolve_identity(args.user, args.group)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """Run the service (see the module docstring for the order); returns the exit status."""
    identity = _check(args)
    stats = ServerStats()
    render = _metrics_page(args, stats)
    worker = args.worker_fds is not None
    if worker:
        args.supervisor = os.getppid()  # remembered now: once it is gone, this is init's
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # the supervisor's to handle
    _configure_logging(with_pid=worker or args.workers > 1)
    inherited = _inherited(args)
    if args.workers > 1 and not worker:
        if args.port == 0 and inherited is None:
            raise UsageError("--workers needs a fixed --port (each worker would get its own)")
        metrics = _bind_metrics(args, render)
        try:
            return _run_workers(args, inherited, partial(_drop, identity), metrics, stats)
        finally:
            for sock in metrics.socks if metrics is not None else ():
                sock.close()
    socks = inherited if inherited is not None else _bind(args, reuse_port=args.reuse_port)
    try:
        metrics = _bind_metrics(args, render)
        try:
            _drop(identity)
        except BaseException:
            for sock in metrics.socks if metrics is not None else ():
                sock.close()
            raise
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    late = LateImports()
    try:
        _serve_sockets_checked(args, socks, stats, metrics)
    finally:
        if identity is not None:
            # Each would have been read from disk as the unprivileged user.
            loaded = ", ".join(late.names()) or "nothing"
            log.debug("imported after the privilege drop: %s", loaded)
    log.info("stopped; in all %s", totals_line(stats))
    return 0
