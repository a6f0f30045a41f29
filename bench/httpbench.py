"""HTTP client suite: ours beside aiohttp, urllib3, httpx (on Trio) and curl, against nginx.

nginx runs with one worker pinned to the load core; every client run is a
fresh process pinned to the other core (`bench.httpclients`), timed inside
itself, and reports bytes, requests and its peak RSS.  Rounds are
round-robin over workloads and clients, so machine drift spreads evenly.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _nginx
from ._common import (
    DASH,
    TIMES,
    Series,
    cell,
    fmt,
    markdown_table,
    ours_status,
    pick_cores,
    python_cmd,
    run_json,
)
from ._install import which

CLIENTS = ("ours", "aiohttp", "urllib3", "httpx", "curl")


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str  # "MB/s" or "req/s"
    mode: str  # httpclients workload: bulk / seq / conc / newconn
    path: str  # "big", "chunked", "small", "tls-big" or "tls-small"
    clients: tuple[str, ...] = CLIENTS


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    bulk: int = 1 << 30  # bytes of the plain bulk bodies
    tls_bulk: int = 256 << 20  # bytes of the HTTPS bulk body
    seq: int = 5000  # sequential keep-alive GETs
    conc: int = 10_000  # GETs over ``tasks`` tasks
    tasks: int = 64
    newconn: int = 1000  # GETs, each on a new connection


def _size(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def workloads(sizes: Sizes) -> list[Workload]:
    seq_requests, conc_requests, tasks = sizes.seq, sizes.conc, sizes.tasks
    size = _size(sizes.bulk)
    return [
        Workload("cl", f"(a) {size} Content-Length body", "MB/s", "bulk", "big"),
        Workload("chunked", f"(b) {size} chunked body", "MB/s", "bulk", "chunked"),
        Workload(
            "seq",
            f"(c) {seq_requests:,} sequential keep-alive GETs of 100 B",
            "req/s",
            "seq",
            "small",
        ),
        Workload(
            "conc",
            f"(d) {conc_requests:,} GETs of 100 B over {tasks} concurrent tasks",
            "req/s",
            "conc",
            "small",
            ("ours", "aiohttp", "urllib3", "httpx"),
        ),
        Workload(
            "newconn",
            f"(f) {sizes.newconn:,} GETs of 100 B, each on a new connection",
            "req/s",
            "newconn",
            "small",
        ),
        Workload(
            "tls-cl",
            f"(g) HTTPS: {_size(sizes.tls_bulk)} Content-Length body",
            "MB/s",
            "bulk",
            "tls-big",
        ),
        Workload(
            "tls-seq",
            f"(h) HTTPS: {seq_requests:,} sequential keep-alive GETs of 100 B",
            "req/s",
            "seq",
            "tls-small",
        ),
        Workload(
            "tls-conc",
            f"(i) HTTPS: {conc_requests:,} GETs of 100 B over {tasks} concurrent tasks",
            "req/s",
            "conc",
            "tls-small",
            ("ours", "aiohttp", "urllib3", "httpx"),
        ),
        Workload(
            "tls-newconn",
            f"(j) HTTPS: {sizes.newconn:,} GETs of 100 B, each on a new TLS connection",
            "req/s",
            "newconn",
            "tls-small",
        ),
    ]


@dataclass
class Cell:
    """One (workload, client): its rate, its CPU cost per unit, its peak RSS."""

    rate: Series = field(default_factory=Series)
    cpu: Series = field(default_factory=Series)  # CPU s per GB (bulk) or µs per request
    rss_mib: Series = field(default_factory=Series)

    def unavailable(self, why: str) -> None:
        self.rate.note = why
        self.cpu.note = why
        self.rss_mib.note = why


def _available(client: str) -> str | None:
    import importlib.util

    if client == "ours":
        return ours_status("Client")
    if client == "curl":
        return None if which("curl") else "not available (apt-get install curl)"
    if importlib.util.find_spec(client) is None:
        return f"not available (pip install {client})"
    if client == "httpx" and importlib.util.find_spec("anyio") is None:
        return "not available (pip install anyio)"
    return None


def _warm_up(url: str, cafile: str) -> None:
    """Read ``url`` once, untimed: the first client measured must not pay the first touch.

    The first read of the sparse bulk file makes the kernel map its pages and
    nginx fill its caches; without this, whichever client runs first in the
    first round was measured at a fraction of its speed (a 390 MB/s outlier).
    """
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, timeout=120, context=ctx) as response:
        while response.read(1 << 20):
            pass


def run_suite(
    *, runs: int, sizes: Sizes, clients: Sequence[str] = CLIENTS
) -> tuple[list[Workload], dict[tuple[str, str], Cell], list[int]]:
    """Run every (workload, client) ``runs`` times; returns the workloads, cells, chunk sizes."""
    sut_core, load_core = pick_cores()
    loads = workloads(sizes)
    cells = {(w.key, c): Cell() for w in loads for c in clients if c in w.clients}
    for c in clients:
        why = _available(c)
        if why:
            for w in loads:
                if (w.key, c) in cells:
                    cells[w.key, c].unavailable(why)
    with (
        tempfile.TemporaryDirectory(prefix="trio-timehttp-bench-") as tmp,
        _nginx.running(
            Path(tmp), core=load_core, bulk_size=sizes.bulk, tls_size=sizes.tls_bulk
        ) as site,
    ):
        chunks = _nginx.chunk_sizes(site, limit=4)
        urls = {
            "big": site.big,
            "chunked": site.chunked,
            "small": site.small,
            "tls-big": site.tls_big,
            "tls-small": site.tls_small,
        }
        for url in urls.values():
            _warm_up(url, site.cafile)
        for _ in range(runs):
            for w in loads:
                expect = _nginx.SMALL_SIZE
                if w.mode == "bulk":
                    expect = sizes.tls_bulk if w.path == "tls-big" else sizes.bulk
                for c in clients:
                    cell_ = cells.get((w.key, c))
                    if cell_ is None or cell_.rate.note:
                        continue
                    n = {"bulk": 1, "seq": sizes.seq, "conc": sizes.conc}.get(
                        w.mode, sizes.newconn
                    )
                    cmd = python_cmd(
                        "bench.httpclients",
                        c,
                        w.mode,
                        urls[w.path],
                        "--expect",
                        str(expect),
                        "--requests",
                        str(n),
                        "--tasks",
                        str(sizes.tasks),
                        "--cafile",
                        site.cafile,
                    )
                    try:
                        out = run_json(cmd, core=sut_core, timeout=300.0)
                    except Exception as exc:
                        cell_.unavailable(f"failed: {exc}".splitlines()[0][:160])
                        continue
                    if w.unit == "MB/s":
                        cell_.rate.add(out["bytes"] / out["seconds"] / 1e6)
                        cell_.cpu.add(out["cpu_seconds"] / (out["bytes"] / 1e9))
                    else:
                        cell_.rate.add(out["requests"] / out["seconds"])
                        cell_.cpu.add(out["cpu_seconds"] / out["requests"] * 1e6)
                    cell_.rss_mib.add(out["maxrss_kib"] / 1024)
    return loads, cells, chunks


def report(
    loads: list[Workload],
    cells: dict[tuple[str, str], Cell],
    chunk_sizes: list[int],
    clients: Sequence[str] = CLIENTS,
) -> str:
    """Markdown: rates per client, ratios ours ÷ client, peak RSS, and the issue-6 targets."""
    header = ["workload", *clients]
    rows = []
    for w in loads:
        rows.append(
            [f"{w.title}, {w.unit}"]
            + [cell(cells[w.key, c].rate) if (w.key, c) in cells else "—" for c in clients]
        )
    for key, label in (
        ("cl", "(e) peak RSS streaming the bulk body (CL), MiB"),
        ("chunked", "peak RSS streaming the bulk body (chunked), MiB"),
    ):
        rows.append(
            [label] + [cell(cells[key, c].rss_mib) if (key, c) in cells else "—" for c in clients]
        )
    cpu_rows = []
    for w in loads:
        unit = "CPU s/GB" if w.unit == "MB/s" else "CPU µs/request"
        cpu_rows.append(
            [f"{w.title}, {unit}"]
            + [cell(cells[w.key, c].cpu) if (w.key, c) in cells else "—" for c in clients]
        )
    ratio_rows = []
    for w in loads:
        ours = cells.get((w.key, "ours"))
        row = [w.title]
        for c in clients[1:]:
            other = cells.get((w.key, c))
            if ours and other and ours.rate.ok and other.rate.ok:
                text = f"{ours.rate.median / other.rate.median:.2f}{TIMES}"
                if ours.cpu.ok and other.cpu.ok:
                    text += f" (CPU {ours.cpu.median / other.cpu.median:.2f}{TIMES})"
                row.append(text)
            else:
                row.append("—")
        ratio_rows.append(row)
    lines = [
        "#### HTTP/1.1 client against nginx (one worker), "
        f"median (min{DASH}max); higher is better",
        "",
        markdown_table(header, rows),
        "",
        "Client CPU time (user + system, all threads) per unit of work; lower is better. "
        "It depends far less on other load on the machine than the rates do:",
        "",
        markdown_table(header, cpu_rows),
        "",
        "Ratios ours ÷ client of the median rates (above 1: ours is faster), and in "
        "parentheses of the median CPU per unit (below 1: ours is cheaper):",
        "",
        markdown_table(["workload", *clients[1:]], ratio_rows),
        "",
        f"nginx's chunk sizes on the chunked URL (first chunks): {chunk_sizes}; "
        "MB = 10^6 bytes; RSS is the client process's ru_maxrss (interpreter included).",
        "",
    ]
    lines += ["Targets (issues 6 and 11):", "", *targets(cells), ""]
    return "\n".join(lines)


# (workload, peer, minimum of ours ÷ peer) from issues 6 and 11.
TARGETS = [
    ("cl", "urllib3", 1.0),
    ("cl", "httpx", 4.0),
    ("chunked", "urllib3", 1.0),
    ("chunked", "aiohttp", 1.0),
    ("seq", "aiohttp", 1.7),
    ("conc", "aiohttp", 2.2),
    ("newconn", "aiohttp", 1.0),
    ("tls-cl", "urllib3", 1.0),
    ("tls-seq", "aiohttp", 1.5),
    ("tls-conc", "aiohttp", 1.3),
    ("tls-newconn", "aiohttp", 1.0),
]
RSS_LIMIT_MIB = 40.0


def targets(cells: dict[tuple[str, str], Cell]) -> list[str]:
    out = []
    for key, peer, minimum in TARGETS:
        ours, other = cells.get((key, "ours")), cells.get((key, peer))
        label = f"- {key}: ours ≥ {minimum}{TIMES} {peer}"
        if ours and other and ours.rate.ok and other.rate.ok:
            got = ours.rate.median / other.rate.median
            verdict = "met" if got >= minimum else "NOT met"
            out.append(f"{label}: {got:.3f}{TIMES} — {verdict}")
        else:
            out.append(f"{label}: not measured")
    ours_rss = cells.get(("cl", "ours"))
    if ours_rss and ours_rss.rss_mib.ok:
        peak = ours_rss.rss_mib.hi
        verdict = "met" if peak < RSS_LIMIT_MIB else "NOT met"
        out.append(
            f"- peak RSS of ours streaming the bulk body < {RSS_LIMIT_MIB:g} MiB: "
            f"{fmt(peak)} MiB (worst run) — {verdict}"
        )
    else:
        out.append(f"- peak RSS of ours < {RSS_LIMIT_MIB:g} MiB: not measured")
    return out
