"""RFC 868 server suites: CPU per TCP connection and per UDP datagram, ours beside the peers.

Method (see bench/README.md): every server runs in its own process pinned to
one core; the C load generator runs pinned to the other core.  Around each
load run we read the server's user+system CPU time from /proc/<pid>/stat and
divide the difference by the number of connections (datagrams) answered.
All servers are started once and then driven round-robin, one run each per
round, so slow drifts of the machine spread over all of them equally.  A
short warm-up run per server precedes the measured rounds (imports, lazy
allocations, the first epoll registrations are not what we measure).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _build
from ._common import (
    DASH,
    LOOPBACK,
    TIMES,
    Series,
    cell,
    child_env,
    cpu_seconds,
    fmt,
    markdown_table,
    ours_status,
    pick_cores,
    python_cmd,
    ratio,
    read_line,
    run_json,
    started,
)
from .timeservers import IMPLS


@dataclass
class ServerResult:
    """Measurements of one server at one concurrency (or window)."""

    impl: str
    level: int
    us_per_op: Series = field(default_factory=Series)
    ops_per_s: Series = field(default_factory=Series)
    loadgen_us: Series = field(default_factory=Series)  # the generator's own CPU per op
    failures: int = 0  # connections/datagrams not answered correctly, over all runs
    note: str = ""

    def unavailable(self, why: str) -> None:
        self.note = why
        self.us_per_op.note = why
        self.ops_per_s.note = why


def _available(impl: str, proto: str) -> str | None:
    """None when this server can run here, else the reason it is skipped."""
    if impl == "ours":
        return ours_status("serve_time_tcp" if proto == "tcp" else "serve_time_udp")
    if impl == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            return "not available (pip install uvloop)"
    return None


def run_suite(
    proto: str,
    *,
    count: int,
    levels: Sequence[int],
    runs: int,
    impls: Sequence[str] = IMPLS,
    timeout: float = 120.0,
) -> list[ServerResult]:
    """Measure every server in ``impls`` at every concurrency/window in ``levels``.

    ``proto`` is ``"tcp"`` (levels = concurrent connections) or ``"udp"``
    (levels = datagrams outstanding).  Returns one `ServerResult` per
    (server, level); unavailable servers come back with a note instead of
    numbers.
    """
    gen = _build.loadgen()
    sut_core, load_core = pick_cores()
    results = {(impl, lvl): ServerResult(impl, lvl) for impl in impls for lvl in levels}
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
        for impl in impls:
            why = _available(impl, proto)
            if why is None:
                try:
                    proc = stack.enter_context(
                        started(
                            python_cmd("bench.timeservers", impl, proto),
                            core=sut_core,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=child_env(),
                        )
                    )
                    port = int(read_line(proc, deadline=20.0))
                    servers[impl] = (proc, port)
                except Exception as exc:
                    why = f"failed to start: {exc}".splitlines()[0][:200]
            if why is not None:
                for lvl in levels:
                    results[impl, lvl].unavailable(why)

        def load(port: int, n: int, level: int) -> dict[str, Any]:
            cmd = [gen, proto, LOOPBACK, str(port), str(n), str(level), str(timeout)]
            return run_json(cmd, core=load_core, timeout=timeout + 10)

        # Warm-up: a small run per server, not measured.
        for impl, (_, port) in servers.items():
            try:
                load(port, max(1000, count // 20), levels[0])
            except Exception as exc:
                for lvl in levels:
                    results[impl, lvl].unavailable(f"warm-up failed: {exc}"[:200])
        for _ in range(runs):
            for lvl in levels:
                for impl, (proc, port) in servers.items():
                    res = results[impl, lvl]
                    if res.note:
                        continue
                    if proc.poll() is not None:
                        res.unavailable(f"server exited with status {proc.returncode}")
                        continue
                    before = cpu_seconds(proc.pid)
                    try:
                        out = load(port, count, lvl)
                    except Exception as exc:
                        res.unavailable(f"load run failed: {exc}"[:200])
                        continue
                    cpu = cpu_seconds(proc.pid) - before
                    answered = int(out["ok"])
                    res.failures += int(out["count"]) - answered
                    if answered == 0:
                        res.unavailable("no correct replies")
                        continue
                    res.us_per_op.add(cpu / answered * 1e6)
                    res.ops_per_s.add(answered / float(out["elapsed"]))
                    res.loadgen_us.add(float(out["cpu"]) / answered * 1e6)
    return list(results.values())


# Targets from issue 6, as (peer, maximum of ours ÷ peer) on CPU per operation.
TARGETS = {
    "tcp": [("asyncore", 1.0), ("uvloop", 1.0), ("asyncio", 0.4)],
    "udp": [("asyncore", 1.0)],
}


def report(proto: str, results: list[ServerResult], *, count: int) -> str:
    """Markdown tables for one suite: per-op CPU and rate, ratios vs ours, issue-6 targets."""
    unit = "connection" if proto == "tcp" else "datagram"
    level_name = "concurrent connections" if proto == "tcp" else "datagrams outstanding"
    levels = sorted({r.level for r in results})
    by = {(r.impl, r.level): r for r in results}
    rows = []
    for lvl in levels:
        ours = by.get(("ours", lvl))
        for r in (x for x in results if x.level == lvl):
            rows.append(
                [
                    r.impl,
                    f"{lvl:,}",
                    cell(r.us_per_op),
                    cell(r.ops_per_s),
                    ratio(ours.us_per_op, r.us_per_op) if ours and r.impl != "ours" else "",
                    str(r.failures) if r.us_per_op.ok else "",
                    fmt(r.loadgen_us.median) if r.loadgen_us.ok else "",
                ]
            )
    title = (
        f"RFC 868 over {proto.upper()}: server CPU per {unit} "
        f"({count:,} per run; median (min{DASH}max); lower µs is better)"
    )
    table = markdown_table(
        [
            "server",
            level_name,
            f"CPU µs/{unit}",
            f"{unit}s/s",
            "ours ÷ this (CPU)",
            "unanswered",
            f"load generator CPU µs/{unit}",
        ],
        rows,
    )
    lines = [f"#### {title}", "", table, ""]
    checks = []
    for peer, limit in TARGETS[proto]:
        for lvl in levels:
            ours, other = by.get(("ours", lvl)), by.get((peer, lvl))
            if ours is None or other is None:
                continue
            if ours.us_per_op.ok and other.us_per_op.ok:
                got = ours.us_per_op.median / other.us_per_op.median
                verdict = "met" if got <= limit else "NOT met"
                label = f"- ours ≤ {limit}{TIMES} {peer} at {lvl:,}"
                checks.append(f"{label}: {got:.3f}{TIMES} — {verdict}")
            else:
                checks.append(f"- ours ≤ {limit}{TIMES} {peer} at {lvl:,}: not measured")
    ours_levels = [by[("ours", lvl)] for lvl in levels if ("ours", lvl) in by]
    if proto == "tcp" and len(ours_levels) >= 2 and all(r.us_per_op.ok for r in ours_levels):
        flat = " → ".join(f"{fmt(r.us_per_op.median)} µs at {r.level:,}" for r in ours_levels)
        checks.append(f"- flatness of ours across {level_name}: {flat}")
    if checks:
        lines += ["Targets (issue 6):", "", *checks, ""]
    return "\n".join(lines)
