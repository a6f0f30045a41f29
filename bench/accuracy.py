"""``python -m bench accuracy``: how right and how tight time readings are, beside htpdate, rdate.

For each emulated path (``tests/wanrelay.py``, a userspace relay in its own
process) in front of time servers whose clocks are off by known fractional
amounts (``tests/offset_servers.py``, another process), it takes readings in
turn with every method - ours plain and precise over TCP, UDP, HTTP and
HTTPS, ``htpdate -q -p 4`` and ``-p 9`` (query only), ``rdate -p`` over TCP
and UDP (print only) - and reports per method: the error against the known
truth (median, max), how many readings held the truth within their stated
interval, the half-width against the path's fastest round trip (``unc /
(rtt/2)``), and the time one reading took. It also writes, from the first
precise UDP reading over the 80 ms path, the interval after every probe
(``bench/precise_narrowing.json``, drawn by ``docs/_scripts/precise_figure.py``).

Safety: this machine can set its clock. Only ``rdate -p`` and ``htpdate -q``
are ever run here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from ._common import BENCH_DIR, REPO_DIR

sys.path.insert(0, str(REPO_DIR / "tests"))
import wantools

from trio_timehttp import query_http_time, query_time

#: The servers' clocks: ours plus these (the issue's values: whole, fractional, negative).
OFFSETS = (0.25, -3.6, 100.37, 7.81)
FIGURE_DATA = BENCH_DIR / "precise_narrowing.json"
PARTIAL = BENCH_DIR / "results" / "accuracy-partial.json"
#: rdate prints the server's clock in whole seconds; with -v it says by how much it would adjust.
RDATE_ADJUST = re.compile(r"adjust local clock by (-?\d+) seconds")
HTPDATE_OFFSET = re.compile(r"Offset (-?\d+(?:\.\d+)?) seconds")


@dataclass(frozen=True)
class Scenario:
    name: str
    up: float = 0.0
    down: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    @property
    def relayed(self) -> bool:
        return bool(self.up or self.down or self.jitter or self.loss)

    @property
    def asymmetry(self) -> float:
        """What no method can see: half the difference of the one-way delays."""
        return abs(self.up - self.down) / 2


SCENARIOS = (
    Scenario("loopback"),
    Scenario("20 ms", 0.010, 0.010),
    Scenario("80 ms", 0.040, 0.040),
    Scenario("150 ms, 5% UDP loss", 0.075, 0.075, loss=0.05),
    Scenario("40 ms +-10 ms jitter", 0.020, 0.020, jitter=0.010),
    Scenario("asymmetric 10/70 ms", 0.010, 0.070),
)


@dataclass
class Outcome:
    error: float  # estimate - truth
    seconds: float  # how long the reading took
    uncertainty: float | None = None  # ours only
    rtt: float | None = None
    probes: int | None = None


@dataclass
class Row:
    method: str
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Ports:
    """Per server (one per offset): RFC 868 tcp, udp, HTTP, HTTPS ports to talk to."""

    tcp: list[int]
    udp: list[int]
    http: list[int]
    https: list[int]


# --------------------------------------------------------------------- peers


@contextlib.contextmanager
def servers(tls: tuple[str, str]) -> Iterator[list[list[int]]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(wantools.offset_servers(o, *tls)) for o in OFFSETS]


@contextlib.contextmanager
def paths(scenario: Scenario, direct: list[list[int]]) -> Iterator[Ports]:
    tcp, udp, http, https = (list(col) for col in zip(*direct, strict=True))
    if not scenario.relayed:
        yield Ports(tcp, udp, http, https)
        return
    n = len(OFFSETS)
    with wantools.relay_many(
        tcp + http + https,
        udp,
        up=scenario.up,
        down=scenario.down,
        jitter=scenario.jitter,
        loss=scenario.loss,
    ) as ports:
        yield Ports(ports[:n], ports[3 * n :], ports[n : 2 * n], ports[2 * n : 3 * n])


def tls_files(folder: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(files[0])
    cert.private_key_pem.write_to_path(files[1])
    ca.cert_pem.write_to_path(files[2])
    return str(files[0]), str(files[1]), str(files[2])


# --------------------------------------------------------------------- methods

Method = Callable[[Ports, int], Awaitable[Outcome]]


def ours(protocol: str, precise: bool) -> Method:
    async def read(ports: Ports, i: int) -> Outcome:
        began = time.time()
        if protocol in ("tcp", "udp"):
            port = (ports.tcp if protocol == "tcp" else ports.udp)[i]
            sample = await query_time(f"127.0.0.1:{port}", udp=protocol == "udp", precise=precise)
        else:
            port = (ports.http if protocol == "http" else ports.https)[i]
            sample = await query_http_time(f"{protocol}://127.0.0.1:{port}/", precise=precise)
        took = time.time() - began
        return Outcome(
            sample.offset - OFFSETS[i], took, sample.uncertainty, sample.rtt, sample.probes
        )

    return read


async def _run(argv: list[str]) -> tuple[str, float]:
    began = time.time()
    with trio.fail_after(120):
        result = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False
        )
    out = result.stdout.decode() + result.stderr.decode()
    if result.returncode:
        raise RuntimeError(f"{argv[0]} exit {result.returncode}: {out.strip()[:200]}")
    return out, time.time() - began


def htpdate(precision: int) -> Method:
    async def read(ports: Ports, i: int) -> Outcome:
        # -q: query only, never touch the clock.
        argv = ["htpdate", "-q", "-p", str(precision), f"http://127.0.0.1:{ports.http[i]}/"]
        out, took = await _run(argv)
        match = HTPDATE_OFFSET.search(out)
        if not match:
            raise RuntimeError(f"htpdate said {out.strip()[:200]!r}")
        return Outcome(float(match[1]) - OFFSETS[i], took)

    return read


def rdate(udp: bool) -> Method:
    async def read(ports: Ports, i: int) -> Outcome:
        # -p: print only, never set the clock; -v: say the offset it found.
        port = (ports.udp if udp else ports.tcp)[i]
        argv = ["rdate", "-p", "-v", *(["-u"] if udp else []), "-o", str(port), "127.0.0.1"]
        out, took = await _run(argv)
        match = RDATE_ADJUST.search(out)
        if not match:
            raise RuntimeError(f"rdate said {out.strip()[:200]!r}")
        return Outcome(int(match[1]) - OFFSETS[i], took)

    return read


def methods(peers: bool) -> dict[str, Method]:
    table: dict[str, Method] = {}
    for protocol in ("tcp", "udp", "http", "https"):
        table[f"ours {protocol}"] = ours(protocol, False)
        table[f"ours {protocol} precise"] = ours(protocol, True)
    if peers and shutil.which("htpdate"):
        table["htpdate -p 4 (http)"] = htpdate(4)
        table["htpdate -p 9 (http)"] = htpdate(9)
    if peers and shutil.which("rdate"):
        table["rdate -p (tcp)"] = rdate(False)
        table["rdate -p -u (udp)"] = rdate(True)
    return table


# --------------------------------------------------------------------- running


class _Probes(logging.Handler):
    """Collects the probing module's per-reading records (the figure's data)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[Any, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("round %d reading"):
            self.records.append(tuple(record.args or ()))


async def figure_reading(ports: Ports) -> dict[str, Any]:
    """One precise UDP reading with every probe's interval, relative to the truth."""
    handler = _Probes()
    logger = logging.getLogger("trio_timehttp.probing")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        began = time.time()
        sample = await query_time(f"127.0.0.1:{ports.udp[2]}", udp=True, precise=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    truth = OFFSETS[2]
    probes = [
        {"round": r, "reading": n, "at": end - began, "lo": lo - truth, "hi": hi - truth}
        for r, n, _second, _start, end, lo, hi in handler.records
    ]
    return {
        "path": "80 ms (40 ms each way), UDP",
        "truth": truth,
        "offset_error": sample.offset - truth,
        "uncertainty": sample.uncertainty,
        "rtt": sample.rtt,
        "probes": probes,
    }


async def run_scenario(scenario: Scenario, ports: Ports, table: dict[str, Method],
                       readings: int) -> list[Row]:  # fmt: skip
    rows = {name: Row(name) for name in table}
    for k in range(readings):
        i = k % len(OFFSETS)
        for name, method in table.items():
            try:
                rows[name].outcomes.append(await method(ports, i))
            except Exception as exc:  # a failed reading is a result too
                rows[name].failures.append(f"{type(exc).__name__}: {exc}")
        print(f"  {scenario.name}: reading {k + 1}/{readings} done", flush=True)
    return list(rows.values())


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"scenarios": []}
    table = methods(not args.no_peers)
    PARTIAL.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, ca = tls_files(Path(tmp))
        os.environ["SSL_CERT_FILE"] = ca  # our default TLS context trusts the test CA
        with servers((cert, key)) as direct:
            for scenario in SCENARIOS:
                if args.only and not any(o in scenario.name for o in args.only):
                    continue
                print(f"== {scenario.name}", flush=True)
                with paths(scenario, direct) as ports:
                    if scenario.name == "80 ms" and not args.no_figure:
                        results["figure"] = await figure_reading(ports)
                    rows = await run_scenario(scenario, ports, table, args.readings)
                results["scenarios"].append(
                    {"scenario": asdict(scenario), "rows": [asdict(r) for r in rows]}
                )
                # Progress that survives an interrupted run: the rows so far.
                print(report({"scenarios": results["scenarios"][-1:]}), flush=True)
                PARTIAL.write_text(json.dumps(results, indent=1))
    return results


# --------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}" if abs(x) >= 0.0995 else f"{x * 1000:.2f}"


def report(results: dict[str, Any]) -> str:
    lines = [
        "| path | method | error median / max (ms) | holds truth | half-width median (ms) "
        "| unc / (rtt/2) median / max | goal met | s per reading | probes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["scenarios"]:
        scenario = Scenario(**entry["scenario"])
        rows = [Row(r["method"], [Outcome(**o) for o in r["outcomes"]], r["failures"])
                for r in entry["rows"]]  # fmt: skip
        # The path's fastest round trip, as UDP (a bare datagram each way) measured it.
        rtts = [o.rtt for r in rows if r.method.startswith("ours udp") for o in r.outcomes
                if o.rtt is not None]  # fmt: skip
        rtt_min = min(rtts) if rtts else 0.0
        for row in rows:
            lines.append(_line(scenario, row, rtt_min))
    return "\n".join(lines)


def _line(scenario: Scenario, row: Row, rtt_min: float) -> str:
    out = row.outcomes
    failed = f" ({len(row.failures)} failed)" if row.failures else ""
    if not out:
        return f"| {scenario.name} | {row.method} | - | - | - | - | - | - | -{failed} |"
    errors = [abs(o.error) for o in out]
    error = f"{_ms(statistics.median(errors))} / {_ms(max(errors))}"
    took = f"{statistics.median(o.seconds for o in out):.2f}"
    if out[0].uncertainty is None:
        return f"| {scenario.name} | {row.method} | {error} | - | - | - | - | {took} | -{failed} |"
    held = sum(abs(o.error) <= (o.uncertainty or 0) + 1e-6 for o in out)
    uncs = [o.uncertainty or 0.0 for o in out]
    half = _ms(statistics.median(uncs))
    ratio = "-"
    goal = "-"
    if "precise" in row.method:
        if rtt_min > 0:
            ratios = [u / (rtt_min / 2) for u in uncs]
            ratio = f"{statistics.median(ratios):.2f} / {max(ratios):.2f}"
        limit = 0.001 if not scenario.relayed else 1.1 * rtt_min / 2 + 0.001
        met = sum(u <= limit for u in uncs)
        near = sum(abs(o.error) <= scenario.asymmetry + 0.002 for o in out)
        goal = f"width {met}/{len(out)}, error {near}/{len(out)}"
    probes = statistics.median(o.probes or 1 for o in out)
    return (f"| {scenario.name} | {row.method} | {error} | {held}/{len(out)} | {half} | {ratio} "
            f"| {goal} | {took} | {probes:g}{failed} |")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench accuracy", description=__doc__)
    parser.add_argument("--readings", type=int, default=8, help="readings per method and path")
    parser.add_argument("--only", action="append", help="paths whose name contains this")
    parser.add_argument("--no-peers", action="store_true", help="ours only (no htpdate, rdate)")
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 readings per method and path")
    parser.add_argument("--readme", action="store_true", help="write the table into README")
    args = parser.parse_args(argv)
    if args.quick:
        args.readings = 2
    # A SIGTERM must unwind through the context managers that stop our children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    began = time.time()
    results = trio.run(run_all, args)
    text = report(results)
    print(text)
    if "figure" in results:
        FIGURE_DATA.write_text(json.dumps(results["figure"], indent=1) + "\n")
        print(f"figure data: {FIGURE_DATA}")
    from ._common import RESULTS_DIR

    RESULTS_DIR.mkdir(exist_ok=True)
    raw = RESULTS_DIR / time.strftime("accuracy-%Y%m%d-%H%M%S.json")
    raw.write_text(json.dumps(results, indent=1))
    print(f"raw results: {raw}; {time.time() - began:.0f} s")
    if args.readme:
        from ._report import machine_block, update_readme

        update_readme("accuracy", machine_block(["accuracy", *argv]) + "\n" + text)
    return 0
