"""Shared plumbing for the benchmark: processes, pinning, CPU accounting, statistics, tables.

Nothing here measures anything by itself; the suites (`bench.timebench`,
`bench.httpbench`) use these helpers so every suite starts, pins, times and
stops its processes the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "_build"
RESULTS_DIR = BENCH_DIR / "results"
LOOPBACK = "127.0.0.1"

CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMES = "\u00d7"  # multiplication sign, for ratios
DASH = "\u2013"  # en dash, for min-max ranges


# --------------------------------------------------------------------------- cores


def pick_cores() -> tuple[int, int]:
    """The two cores used for pinning: (system under test, load).

    Servers under test and clients under test go on the first core; the load
    generator (or nginx, for the client suite) on the second, so the two never
    compete for one core and the CPU we charge to the system under test is its
    own.  With a single usable core both land on it (noted in the results).
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        return cores[0], cores[1]
    return cores[0], cores[0]


def pin_preexec(core: int) -> Any:
    """A ``preexec_fn`` pinning the child to ``core`` and giving it its own process group."""

    def _pin() -> None:
        os.sched_setaffinity(0, {core})
        os.setpgrp()  # so stop() can kill the whole group (nginx forks a worker)

    return _pin


# --------------------------------------------------------------------------- processes


def python_cmd(module: str, *args: str) -> list[str]:
    """Command line running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env() -> dict[str, str]:
    """Environment for Python children: the repository importable, no stray warnings output."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_DIR) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """Stop a child started with `pin_preexec` and its whole process group; always reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Kill leftovers of the group (e.g. an nginx worker) even if the leader is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def started(cmd: Sequence[str], *, core: int, **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """Run ``cmd`` pinned to ``core`` for the duration of a ``with`` block; always stop it."""
    proc: subprocess.Popen[str] = subprocess.Popen(
        list(cmd),
        preexec_fn=pin_preexec(core),
        text=True,
        **kwargs,
    )
    try:
        yield proc
    finally:
        stop(proc)


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """One line from a child's stdout within ``deadline`` seconds (bounded readiness wait)."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no output from {proc.args!r} within {deadline} s")
            if sel.select(left):
                line = proc.stdout.readline()
                if not line:
                    err = proc.stderr.read() if proc.stderr is not None else ""
                    raise RuntimeError(
                        f"{proc.args!r} exited (status {proc.wait()}) before it was ready:\n"
                        + err[-2000:]
                    )
                return line.strip()


def wait_for_tcp(
    port: int, proc: subprocess.Popen[Any] | None = None, deadline: float = 15.0
) -> None:
    """Bounded connect-retry until something accepts on loopback ``port``."""
    end = time.monotonic() + deadline
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with status {proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > end:
                raise
        time.sleep(delay)  # back-off between attempts, bounded by the deadline
        delay = min(delay * 2, 0.1)


def unused_port() -> int:
    """A TCP port the kernel just handed out on loopback (for programs that cannot take port 0)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from ``/proc/<pid>/stat``.

    This is what the kernel charged to the server, whatever the load generator
    did, which is why we report it rather than only a rate: a rate also
    depends on the client, the scheduler and the other core.
    """
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name (field 2) may contain spaces: split after its closing ')'.
    fields = data[data.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def run_json(cmd: Sequence[str], *, core: int, timeout: float) -> dict[str, Any]:
    """Run a child pinned to ``core`` that prints one JSON object; return it (bounded in time)."""
    with started(
        cmd, core=core, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{cmd[0]} ... did not finish within {timeout} s") from exc
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}: {err.strip()[-2000:]}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"no JSON result; stderr: {err.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


# --------------------------------------------------------------------------- statistics


@dataclass
class Series:
    """Repeated measurements of one quantity; we quote the median and the min-max."""

    values: list[float] = field(default_factory=list)
    note: str = ""  # why it is unavailable, when it is

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def ok(self) -> bool:
        return bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)


def fmt(value: float) -> str:
    """Human number: thousands separators, fewer decimals as values grow."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(s: Series) -> str:
    """``median (min-max)`` or the reason the value is missing."""
    if not s.ok:
        return s.note or "not available"
    if len(s.values) == 1:
        return fmt(s.median)
    return f"{fmt(s.median)} ({fmt(s.lo)}{DASH}{fmt(s.hi)})"


def ratio(ours: Series, other: Series) -> str:
    """``ours ÷ other`` of the medians, or a dash when either is missing."""
    if not ours.ok or not other.ok or other.median == 0:
        return "—"
    return f"{ours.median / other.median:.2f}{TIMES}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (it also reads fine on a terminal)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
    """What the numbers depend on: cores, CPU model, kernel, Python, library versions."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info = {
        "nproc": str(os.cpu_count()),
        "usable cores": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    for dist in ("trio", "h11", "uvloop", "aiohttp", "httpx", "urllib3"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[dist] = version(dist)
    return info


def ours_status(*names: str) -> str | None:
    """None when ``trio_timehttp`` provides ``names``; otherwise why our rows are skipped."""
    try:
        import trio_timehttp
    except Exception as exc:
        return f"not available (import failed: {type(exc).__name__}: {exc})"
    for name in names:
        if getattr(trio_timehttp, name, None) is None:
            return f"not available (trio_timehttp.{name} is a placeholder)"
    return None
