"""``serve --workers N``: a supervisor that binds, and worker processes that serve.

How it stays one service, whatever happens:

- **The supervisor binds.** It takes a per-port lock first (an abstract Unix
  socket named after the protocols and port: the kernel frees it when the
  process dies, even by SIGKILL, and it leaves no file behind), then binds
  one set of sockets per worker with SO_REUSEPORT (so the kernel spreads the
  load across the workers). A second ``serve --workers`` on the port finds
  the lock taken and fails with "address already in use", as a second single
  ``serve`` fails on the bound port; a single ``serve`` without
  ``--reuse-port`` fails on the sockets themselves. Socket-activated, the
  workers share the sockets systemd passed instead.
- **Workers inherit their sockets** as file descriptors (``--worker-fds``)
  and never bind, so they cannot disagree about the address, and they can run
  without the privilege to bind.
- **A lifeline per worker**: one end of a Unix socket pair (``--lifeline``).
  The worker writes ``ready`` on it once serving (the supervisor tells
  systemd ``READY=1`` only when every worker has); when the supervisor dies
  -- however it dies -- the kernel closes its end, the worker reads EOF and
  stops cleanly. Every second after ``ready`` the worker also writes its
  counters (``stats ...``): the supervisor's ``--metrics-port`` page is
  their sum. (``PR_SET_PDEATHSIG`` is tied to the *thread* that forked,
  and Trio spawns from a worker thread that exits when idle: it would kill
  the workers ten seconds in.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import trio

from ._serverstats import ServerStats

__all__ = [
    "READY",
    "Hooks",
    "Worker",
    "exit_status",
    "how_it_ended",
    "port_lock",
    "report_stats",
    "supervise",
    "watch_lifeline",
]

log = logging.getLogger("trio_timehttp.cli")

READY = b"ready\n"
#: A worker's counters, every `_REPORT_INTERVAL` s after ``ready``: ``stats`` and
#: `ServerStats.FIELDS` then the open connections, as decimal integers.
_STATS = b"stats"
_REPORT_INTERVAL = 1.0

#: The supervisor talks to systemd; its workers must not (nor take its sockets).
_NOT_FOR_WORKERS = frozenset({"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})

#: How long a worker may take from exec to serving.
_START_TIMEOUT = 30.0
#: How long workers get to stop after SIGTERM before they are killed.
_STOP_TIMEOUT = 10.0


def port_lock(protocols: Sequence[str], port: int) -> list[socket.socket]:
    """Hold ``trio-timehttp serve <proto>:<port>`` in the abstract namespace, per protocol.

    Raises ``OSError(EADDRINUSE)`` when another supervisor holds one. Keep
    the returned sockets open for as long as the port is ours.
    """
    held: list[socket.socket] = []
    try:
        for proto in protocols:
            lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            held.append(lock)
            lock.bind(f"\0trio-timehttp serve {proto}:{port}".encode())
    except BaseException:
        for lock in held:
            lock.close()
        raise
    return held


@dataclass(frozen=True)
class Hooks:
    """What the supervisor's caller does at each stage (each a plain sync call).

    ``spawned()``: every worker runs, the sockets are closed here (the place
    to drop privileges: the workers were exec'd while the interpreter was
    surely readable). ``ready(pids)``: every worker serves. ``stopping()``:
    stopping has begun.
    """

    spawned: Callable[[], None]
    ready: Callable[[list[int]], None]
    stopping: Callable[[], None]
    #: Started (``nursery.start``) once every worker is ready, before ``ready``:
    #: the supervisor's own serving (its metrics page); None: nothing.
    serve: Callable[..., Awaitable[Any]] | None = None


@dataclass
class Worker:
    """A running worker: its process, the supervisor's end of its lifeline, its last report."""

    proc: trio.Process
    lifeline: socket.socket
    unread: bytes = b""
    counts: list[int] = field(default_factory=list)

    async def line(self) -> bytes | None:
        """The next line from the worker (with its newline); None at EOF."""
        while b"\n" not in self.unread:
            await trio.lowlevel.wait_readable(self.lifeline)
            try:
                chunk = self.lifeline.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self.unread += chunk
        line, _, self.unread = self.unread.partition(b"\n")
        return line + b"\n"


async def _spawn(command: list[str], socks: Sequence[socket.socket]) -> Worker:
    """Start one worker serving ``socks``; the supervisor keeps the other end of its lifeline."""
    ours, theirs = socket.socketpair()
    try:
        fds = [s.fileno() for s in socks]
        full = [*command, "--worker-fds", ",".join(map(str, fds)),
                "--lifeline", str(theirs.fileno())]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_WORKERS}
        proc = await trio.lowlevel.open_process(full, pass_fds=(*fds, theirs.fileno()), env=env)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Worker(proc, ours)


async def _wait_ready(worker: Worker) -> None:
    """Until the worker says ``ready``; ``RuntimeError`` if it exits first or takes too long."""
    got: bytes | None = b""
    with trio.move_on_after(_START_TIMEOUT):
        got = await worker.line()
        if got is None:  # its end closed: it is exiting; wait (briefly) for its status
            with trio.move_on_after(_STOP_TIMEOUT):
                await worker.proc.wait()
    if got != READY:
        code = worker.proc.returncode
        what = how_it_ended(code) if code is not None else "did not start in time"
        raise RuntimeError(f"worker {worker.proc.pid} {what}")


def how_it_ended(returncode: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL`` (a negative code: the signal)."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def exit_status(returncode: int) -> int:
    """The supervisor's status for a worker that died: its own, or 128 + its signal; never 0."""
    if returncode < 0:
        return 128 + -returncode  # as a shell reports a killed command
    return returncode or 1


async def report_stats(lifeline: socket.socket, stats: ServerStats) -> NoReturn:
    """In a worker: send ``stats`` to the supervisor every second (it sums them for /metrics).

    A send that fails (the supervisor is gone) ends the reports; `watch_lifeline` stops us.
    """
    while True:
        await trio.sleep(_REPORT_INTERVAL)
        values = [*stats.snapshot().values(), stats.active_connections]
        try:
            await trio.lowlevel.wait_writable(lifeline)
            lifeline.send(b" ".join([_STATS, *(b"%d" % v for v in values)]) + b"\n")
        except OSError:
            await trio.sleep_forever()


class _Sum:
    """The supervisor's `ServerStats`: what the workers last reported, added up."""

    def __init__(self, total: ServerStats, workers: Sequence[Worker]) -> None:
        self.total = total
        self.workers = workers
        self.active = 0
        total.watch_connections(self)

    def update(self) -> None:
        width = len(ServerStats.FIELDS) + 1
        sums = [0] * width
        for worker in self.workers:
            for i, value in enumerate(worker.counts[:width]):
                sums[i] += value
        for name, value in zip(ServerStats.FIELDS, sums, strict=False):
            setattr(self.total, name, value)
        self.active = sums[-1]


async def _follow(worker: Worker, summed: _Sum) -> None:
    """The supervisor's reader of one worker's reports (a dead worker's last one still counts)."""
    while (line := await worker.line()) is not None:
        words = line.split()
        if words[:1] != [_STATS]:
            continue
        try:
            counts = [int(word) for word in words[1:]]
        except ValueError:
            continue
        if len(counts) == len(ServerStats.FIELDS) + 1:
            worker.counts = counts
            summed.update()


async def watch_lifeline(
    lifeline: socket.socket, on_gone: Callable[[], None], supervisor: int
) -> None:
    """In a worker: wait until the supervisor's end closes, then call ``on_gone``.

    ``supervisor``: its pid, remembered at the worker's start (once it is
    gone, ``os.getppid()`` names whoever adopted the worker, often 1).
    """
    while True:
        await trio.lowlevel.wait_readable(lifeline)
        try:
            if lifeline.recv(64):
                continue  # nothing is ever sent this way; ignore it
        except OSError:
            pass
        break
    log.warning("supervisor (pid %d) is gone; stopping", supervisor)
    on_gone()


async def supervise(
    command: list[str],
    socket_sets: list[list[socket.socket]],
    hooks: Hooks,
    stats: ServerStats | None = None,
) -> int:
    """Run one worker per socket set until a signal or a worker's death; returns the status.

    Each set is handed to its worker; once all are started every set is
    closed here (the workers hold them; a dead worker's sockets then leave the
    SO_REUSEPORT group instead of queueing connections nobody accepts). The
    same set may be given for every worker (systemd's sockets). `Hooks` are
    called as they say. Workers get SIGTERM, then SIGKILL after 10 s.
    ``stats``: kept equal to the sum of the workers' reports (default: not kept).
    """
    status = 0
    workers: list[Worker] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            try:
                for socks in socket_sets:
                    workers.append(await _spawn(command, socks))
            finally:
                for socks in socket_sets:
                    for sock in socks:
                        sock.close()  # idempotent: a shared set is closed once
            hooks.spawned()
            try:
                for worker in workers:
                    await _wait_ready(worker)
            except RuntimeError as exc:
                log.error("%s; stopping the others", exc)
                return 1
            async with trio.open_nursery() as nursery:
                summed = _Sum(ServerStats() if stats is None else stats, workers)
                for worker in workers:
                    nursery.start_soon(_follow, worker, summed)
                if hooks.serve is not None:
                    await nursery.start(hooks.serve)
                hooks.ready([w.proc.pid for w in workers])

                async def watch(worker: Worker) -> None:
                    nonlocal status
                    code = await worker.proc.wait()
                    if not nursery.cancel_scope.cancel_called:
                        log.error("worker %d %s; stopping the others", worker.proc.pid,
                                  how_it_ended(code))  # fmt: skip
                        status = exit_status(code)
                        nursery.cancel_scope.cancel()

                for worker in workers:
                    nursery.start_soon(watch, worker)
                async for signum in signals:
                    log.info("received %s, stopping the workers", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
        finally:
            hooks.stopping()
            with trio.CancelScope(shield=True):
                await _stop_all(workers)
    return status


async def _stop_all(workers: Sequence[Worker]) -> None:
    """SIGTERM every worker, give them 10 s to stop cleanly, then kill the rest."""
    for worker in workers:
        if worker.proc.returncode is None:
            worker.proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(_STOP_TIMEOUT):
        for worker in workers:
            await worker.proc.wait()
    for worker in workers:
        if worker.proc.returncode is None:
            worker.proc.kill()
            await worker.proc.wait()
        worker.lifeline.close()


def python_command() -> list[str]:
    """How to run this package again: this interpreter, ``-m trio_timehttp``."""
    return [sys.executable, "-m", "trio_timehttp"]
