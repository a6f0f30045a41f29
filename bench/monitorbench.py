"""``python -m bench.monitorbench``: ``trio-timehttp monitor`` at scale (issue 14).

Three processes: the time servers (``--sources`` RFC 868 TCP servers on
loopback, one ``serve_time(port=0)`` each, in one Trio process pinned to the
load core), the monitor under test (``python -m trio_timehttp monitor`` over
all of them, pinned to the other core), and this one, which scrapes
``/metrics`` every ``--scrape-every`` seconds with a ``--scrape-deadline``
and samples the monitor's CPU time (``/proc/<pid>/stat``) and RSS
(``/proc/<pid>/status``) at each scrape.

Reported: CPU per reading (CPU seconds charged to the monitor between the end
of its first round and the end of the run, over the readings made
meanwhile), RSS after each round (flat or growing), round durations (from its
log), and scrape latency under load (median, max, misses of the deadline;
scrapes land inside rounds as well as between them). Nothing asserts on
speed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import RESULTS_DIR, child_env, cpu_seconds, machine_info, pick_cores, started


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- the servers


def serve(count: int, dead: int) -> None:
    """Run ``count`` TCP time servers; print their ports (and ``dead`` closed ports) as JSON."""
    import socket

    import trio

    from trio_timehttp import serve_time

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ports = []
            for _ in range(count):
                listeners, _ = await nursery.start(
                    lambda task_status: serve_time(
                        0, host="127.0.0.1", udp=False, task_status=task_status
                    )
                )
                ports.append(listeners[0].socket.getsockname()[1])
            closed = []
            for _ in range(dead):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    closed.append(s.getsockname()[1])
            print(json.dumps({"ports": ports, "dead": closed}), flush=True)
            await trio.sleep_forever()

    trio.run(main)


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    t: float
    cpu: float
    rss_kib: int
    rounds: int
    readings: int
    scrape_s: float | None  # None: missed the deadline or failed
    wall: float = 0.0  # time.time() when the scrape began


@dataclass
class Run:
    sources: int
    dead: int
    interval: float
    seconds: float
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    rounds_log: list[float] = field(default_factory=list)  # seconds per round, from the log
    round_spans: list[tuple[float, float]] = field(default_factory=list)  # wall clock
    cpu_per_scrape: float = 0.0


_ROUND = re.compile(
    r"^(\S+ \S+) \S+ INFO round (\d+): (\d+) of (\d+) sources answered in ([0-9.]+) s", re.M
)


def _spans(log: str) -> list[tuple[float, float]]:
    """Wall-clock (start, end) of every round, from the monitor's log lines."""
    import datetime

    spans = []
    for m in _ROUND.finditer(log):
        moment = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        end = moment.timestamp()  # the log's local time, as time.time() sees it
        spans.append((end - float(m.group(5)), end))
    return spans


def scrape(url: str, deadline: float) -> tuple[float | None, int, int]:
    """(latency or None, rounds_total, sum of readings_total) from one scrape."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=deadline) as response:
            body = response.read().decode()
    except OSError:
        return None, -1, -1
    took = time.monotonic() - began
    rounds = readings = 0
    for line in body.splitlines():
        if line.startswith("timehttp_rounds_total "):
            rounds = int(float(line.split()[1]))
        elif line.startswith("timehttp_readings_total{"):
            readings += int(float(line.rsplit(" ", 1)[1]))
    return (took if took <= deadline else None), rounds, readings


def scrape_cost(url: str, pid: int, rounds: int, count: int = 20) -> float:
    """The monitor's CPU seconds per scrape, measured between two rounds.

    Waits for the next round to end (polling ``rounds_total``), then makes
    ``count`` scrapes back to back while no reading runs.
    """
    while scrape(url, 10.0)[1] <= rounds:
        time.sleep(0.05)
    before = cpu_seconds(pid)
    for _ in range(count):
        scrape(url, 10.0)
    return (cpu_seconds(pid) - before) / count


@contextmanager
def servers(count: int, dead: int, core: int) -> Iterator[tuple[list[int], list[int]]]:
    cmd = [sys.executable, "-m", "bench.monitorbench", "--serve", str(count), "--dead", str(dead)]
    with started(
        cmd, core=core, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"servers failed: {proc.stderr.read() if proc.stderr else ''}")
        data = json.loads(line)
        yield data["ports"], data["dead"]


def wait_for_url(log: Path, deadline: float) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        match = re.search(r"metrics at (http://\S+)", log.read_text())
        if match and "monitor:" in log.read_text():
            return match.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"monitor did not start: {log.read_text()[-2000:]}")


def measure(args: argparse.Namespace) -> Run:
    sut, load = pick_cores()
    run = Run(args.sources, args.dead, args.interval, args.seconds, args.concurrency)
    with servers(args.sources, args.dead, load) as (ports, closed):
        sources = [f"127.0.0.1:{p}" for p in ports + closed]
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "monitor.log"
            cmd = [sys.executable, "-m", "trio_timehttp", "-v", "monitor", *sources,
                   "--interval", str(args.interval), "--metrics-port", "0",
                   "--concurrency", str(args.concurrency)]  # fmt: skip
            with (
                log.open("w") as err,
                started(
                    cmd, core=sut, stdout=subprocess.DEVNULL, stderr=err, env=child_env()
                ) as proc,
            ):
                url = wait_for_url(log, 30)
                began = time.monotonic()
                while (now := time.monotonic()) - began < args.seconds:
                    wall = time.time()
                    latency, rounds, readings = scrape(url, args.scrape_deadline)
                    cpu, rss = cpu_seconds(proc.pid), rss_kib(proc.pid)
                    sample = Sample(now - began, cpu, rss, rounds, readings, latency, wall)
                    run.samples.append(sample)
                    time.sleep(max(0.0, args.scrape_every - (time.monotonic() - now)))
                run.cpu_per_scrape = scrape_cost(url, proc.pid, run.samples[-1].rounds)
            text = log.read_text()
            run.rounds_log = [float(m.group(5)) for m in _ROUND.finditer(text)]
            run.round_spans = _spans(text)
    return run


# --------------------------------------------------------------------------- reporting


def report(run: Run) -> dict[str, Any]:
    ok = [s for s in run.samples if s.rounds >= 1]
    first = next(s for s in ok if s.rounds >= 1)
    last = ok[-1]
    readings = last.readings - first.readings
    # Scrapes between the two samples cost the monitor CPU too: take them out.
    scrapes = sum(1 for s in ok if s.t > first.t and s.t <= last.t)
    reading_cpu = last.cpu - first.cpu - scrapes * run.cpu_per_scrape
    per_round: dict[int, Sample] = {}
    for s in ok:
        per_round.setdefault(s.rounds, s)  # the first sample after each round ended

    def in_round(s: Sample) -> bool:
        done = s.wall + (s.scrape_s if s.scrape_s is not None else 0.0)
        return any(start <= done and s.wall <= end for start, end in run.round_spans)

    during = [s for s in run.samples if in_round(s)]
    between = [s for s in run.samples if not in_round(s)]
    return {
        "sources": run.sources,
        "dead": run.dead,
        "interval_s": run.interval,
        "concurrency": run.concurrency,
        "seconds": run.seconds,
        "rounds": last.rounds,
        "cpu_per_reading_us": reading_cpu / readings * 1e6 if readings else None,
        "cpu_per_scrape_ms": run.cpu_per_scrape * 1e3,
        "cpu_share": (last.cpu - first.cpu) / (last.t - first.t) if last.t > first.t else None,
        "rss_kib_by_round": {r: s.rss_kib for r, s in sorted(per_round.items())},
        "round_s": {
            "median": statistics.median(run.rounds_log) if run.rounds_log else None,
            "max": max(run.rounds_log) if run.rounds_log else None,
        },
        "scrapes_during_rounds": _latency(during),
        "scrapes_between_rounds": _latency(between),
    }


def _latency(samples: list[Sample]) -> dict[str, Any]:
    took = sorted(s.scrape_s for s in samples if s.scrape_s is not None)
    if not took:
        return {"count": len(samples), "missed": len(samples)}
    return {
        "count": len(samples),
        "missed": sum(1 for s in samples if s.scrape_s is None),
        "median_ms": statistics.median(took) * 1e3,
        "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1e3,
        "max_ms": took[-1] * 1e3,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.monitorbench", description=__doc__)
    p.add_argument("--sources", type=int, default=1000, help="live time servers (default 1000)")
    p.add_argument("--dead", type=int, default=0, help="closed ports among the sources too")
    p.add_argument("--interval", type=float, default=10.0, help="monitor --interval (default 10)")
    p.add_argument("--seconds", type=float, default=180.0, help="measured run (default 180)")
    p.add_argument("--scrape-every", type=float, default=0.25, help="seconds between scrapes")
    p.add_argument("--scrape-deadline", type=float, default=1.0, help="a scrape's deadline")
    p.add_argument("--concurrency", type=int, default=64, help="monitor --concurrency")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.dead)
        return 0
    result = report(measure(args))
    result["machine"] = machine_info()
    print(json.dumps(result, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    name = f"monitor-{args.sources}-{int(time.time())}.json"
    (RESULTS_DIR / name).write_text(json.dumps({**result, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
