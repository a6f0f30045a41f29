"""Proxy suite (issue 13): the HTTP clients through tinyproxy, against nginx.

nginx (one worker) and tinyproxy (a private config, loopback only, CONNECT
allowed to nginx's TLS port only) run pinned to the load core; each client
run is a fresh ``bench.httpclients`` process with ``--proxy`` pinned to the
other core. Workloads: sequential small GETs (http targets in absolute-form;
https through one CONNECT tunnel each client keeps) and one bulk body over
each. Round-robin over workloads and clients, as the HTTP suite does.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import _nginx
from ._common import (
    DASH,
    LOOPBACK,
    cell,
    markdown_table,
    pick_cores,
    python_cmd,
    ratio,
    run_json,
    started,
    unused_port,
    wait_for_tcp,
)
from ._install import which
from .httpbench import CLIENTS, Cell, Workload, _available, _warm_up

TINYPROXY_CONF = """\
Port {port}
Listen {host}
Timeout 600
PidFile "{prefix}/tinyproxy.pid"
LogFile "{prefix}/tinyproxy.log"
LogLevel Warning
MaxClients 256
Allow {host}
DisableViaHeader Yes
ConnectPort {tls_port}
"""


@contextlib.contextmanager
def tinyproxy(prefix: Path, *, core: int, tls_port: int) -> Iterator[str]:
    """Run tinyproxy pinned to ``core`` on a private config; yields its URL; always stops it."""
    binary = which("tinyproxy")
    if binary is None:
        raise RuntimeError("tinyproxy is not installed (apt-get install tinyproxy)")
    port = unused_port()
    conf = prefix / "tinyproxy.conf"
    conf.write_text(
        TINYPROXY_CONF.format(port=port, host=LOOPBACK, prefix=prefix, tls_port=tls_port)
    )
    cmd = [binary, "-d", "-c", str(conf)]
    with started(cmd, core=core, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_for_tcp(port, proc, deadline=15.0)
        yield f"http://{LOOPBACK}:{port}"


def workloads(seq_requests: int, bulk_size: int) -> list[Workload]:
    size = f"{bulk_size >> 20} MiB"
    return [
        Workload("p-seq", f"(p1) {seq_requests:,} GETs of 100 B, http via proxy", "req/s",
                 "seq", "small"),
        Workload("p-seq-tls", f"(p2) {seq_requests:,} GETs of 100 B, https via CONNECT",
                 "req/s", "seq", "small-tls"),
        Workload("p-bulk", f"(p3) {size} body, http via proxy", "MB/s", "bulk", "big"),
        Workload("p-bulk-tls", f"(p4) {size} body, https via CONNECT", "MB/s", "bulk",
                 "big-tls"),
    ]  # fmt: skip


def run_suite(
    *, runs: int, bulk_size: int, seq_requests: int, clients: Sequence[str] = CLIENTS
) -> tuple[list[Workload], dict[tuple[str, str], Cell]]:
    """Run every (workload, client) ``runs`` times through tinyproxy."""
    sut_core, load_core = pick_cores()
    loads = workloads(seq_requests, bulk_size)
    cells = {(w.key, c): Cell() for w in loads for c in clients}
    for c in clients:
        why = _available(c)
        if why:
            for w in loads:
                cells[w.key, c].unavailable(why)
    with (
        tempfile.TemporaryDirectory(prefix="trio-timehttp-proxybench-") as tmp,
        _nginx.running(Path(tmp), core=load_core, bulk_size=bulk_size) as site,
        tinyproxy(Path(tmp), core=load_core, tls_port=site.tls_port) as proxy,
    ):
        urls = {
            "small": site.small,
            "small-tls": site.tls_url("/small.txt"),
            "big": site.big,
            "big-tls": site.tls_url("/big.bin"),
        }
        _warm_up(site.big, site.cafile)
        for _ in range(runs):
            for w in loads:
                expect = bulk_size if w.mode == "bulk" else _nginx.SMALL_SIZE
                for c in clients:
                    _measure(cells[w.key, c], w, c, urls[w.path], expect, seq_requests,
                             proxy, site.cafile, sut_core)  # fmt: skip
    return loads, cells


def _measure(
    cell_: Cell, w: Workload, client: str, url: str, expect: int, n: int,
    proxy: str, cafile: str, core: int,
) -> None:  # fmt: skip
    if cell_.rate.note:
        return
    cmd = python_cmd("bench.httpclients", client, w.mode, url, "--expect", str(expect),
                     "--requests", str(n if w.mode == "seq" else 1), "--proxy", proxy,
                     "--cafile", cafile)  # fmt: skip
    try:
        out = run_json(cmd, core=core, timeout=300.0)
    except Exception as exc:
        cell_.unavailable(f"failed: {exc}".splitlines()[0][:160])
        return
    if w.unit == "MB/s":
        cell_.rate.add(out["bytes"] / out["seconds"] / 1e6)
        cell_.cpu.add(out["cpu_seconds"] / (out["bytes"] / 1e9))
    else:
        cell_.rate.add(out["requests"] / out["seconds"])
        cell_.cpu.add(out["cpu_seconds"] / out["requests"] * 1e6)
    cell_.rss_mib.add(out["maxrss_kib"] / 1024)


def report(
    loads: list[Workload], cells: dict[tuple[str, str], Cell], clients: Sequence[str] = CLIENTS
) -> str:
    """Markdown: rates, CPU per unit and ratios ours ÷ each peer, through tinyproxy."""
    rates = [[f"{w.title}, {w.unit}"] + [cell(cells[w.key, c].rate) for c in clients]
             for w in loads]  # fmt: skip
    cpus = [
        [f"{w.title}, {'CPU s/GB' if w.unit == 'MB/s' else 'CPU µs/request'}"]
        + [cell(cells[w.key, c].cpu) for c in clients]
        for w in loads
    ]
    ratios = [[w.title] + [ratio(cells[w.key, "ours"].rate, cells[w.key, c].rate)
                           for c in clients[1:]] for w in loads]  # fmt: skip
    return "\n\n".join(
        [
            f"#### Through tinyproxy (median, min{DASH}max over runs)",
            markdown_table(["workload", *clients], rates),
            markdown_table(["workload", *clients], cpus),
            "Ratios, ours ÷ peer (rate; > 1 means ours is faster):",
            markdown_table(["workload", *clients[1:]], ratios),
        ]
    )
