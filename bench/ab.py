"""Same-run A/B of our HTTP client at several checkouts, beside peers, against nginx.

``python -m bench.ab --variant new=. --variant before=/tmp/before [--peer urllib3]
[--loads cl,conc] [--runs 5]``

Each variant is a checkout whose ``trio_timehttp`` package is measured with
this tree's ``bench.httpclients`` ("ours"); ``NAME=PATH+`` uses that
checkout's own ``bench`` too (for commits whose API this client no longer
fits; those lack the TLS and new-connection workloads). Every measurement
is a fresh process pinned to one core with nginx on the other; the order of
the variants and peers rotates every run, since on a loaded machine whatever
runs first after another workload was measurably penalised. Prints medians
of rate and CPU per unit, and each variant's ratio to each peer. Nothing
here asserts on speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _nginx
from ._common import REPO_DIR, pick_cores, pin_preexec

BULK = 512 << 20
TLS_BULK = 256 << 20
# key: (httpclients workload, site path, requests)
LOADS = {
    "cl": ("bulk", "big", 1),
    "chunked": ("bulk", "chunked", 1),
    "seq": ("seq", "small", 5000),
    "conc": ("conc", "small", 10000),
    "newconn": ("newconn", "small", 1000),
    "tls-cl": ("bulk", "tls-big", 1),
    "tls-seq": ("seq", "tls-small", 5000),
    "tls-conc": ("conc", "tls-small", 10000),
    "tls-newconn": ("newconn", "tls-small", 500),
}


def _shim(root: Path, name: str, checkout: Path, own_bench: bool) -> Path:
    """A directory putting ``checkout``'s package (and the chosen bench) on PYTHONPATH."""
    shim = root / name
    shim.mkdir()
    (shim / "trio_timehttp").symlink_to(checkout.resolve() / "trio_timehttp")
    (shim / "bench").symlink_to((checkout if own_bench else REPO_DIR).resolve() / "bench")
    return shim


def _measure(cmd: list[str], path: Path, core: int, bulk: bool) -> tuple[float, float] | None:
    env = dict(os.environ, PYTHONPATH=str(path), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=300, preexec_fn=pin_preexec(core)
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print("failed:", " ".join(cmd[3:5]), proc.stderr.strip()[-300:], file=sys.stderr)
        return None
    out = json.loads(lines[-1])
    if bulk:
        return out["bytes"] / out["seconds"] / 1e6, out["cpu_seconds"] / (out["bytes"] / 1e9)
    return out["requests"] / out["seconds"], out["cpu_seconds"] / out["requests"] * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", required=True, help="NAME=PATH or NAME=PATH+")
    p.add_argument("--peer", action="append", default=None, help="aiohttp, urllib3, httpx")
    p.add_argument("--loads", default="cl,conc,newconn,tls-cl,tls-newconn")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    peers = args.peer or ["urllib3", "aiohttp"]
    sut, load = pick_cores()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="trio-timehttp-ab-") as tmp,
        tempfile.TemporaryDirectory(prefix="trio-timehttp-ab-site-") as site_dir,
    ):
        root = Path(tmp)
        paths = {}
        own: set[str] = set()  # variants run with their own (older) bench client
        for spec in args.variant:
            name, _, where = spec.partition("=")
            if where.endswith("+"):
                own.add(name)
            paths[name] = _shim(root, name, Path(where.removesuffix("+")), name in own)
        # Peers run with this tree's client (and the first variant's package, unused).
        peer_path = _shim(root, "peers", REPO_DIR, False)
        paths.update(dict.fromkeys(peers, peer_path))
        with _nginx.running(Path(site_dir), core=load, bulk_size=BULK, tls_size=TLS_BULK) as site:
            urls = {
                "big": site.big,
                "chunked": site.chunked,
                "small": site.small,
                "tls-big": site.tls_big,
                "tls-small": site.tls_small,
            }
            order = list(paths)
            for run in range(args.runs):
                for key in args.loads.split(","):
                    mode, path, n = LOADS[key]
                    expect = {"big": BULK, "chunked": BULK, "tls-big": TLS_BULK}.get(
                        path, _nginx.SMALL_SIZE
                    )
                    k = run % len(order)
                    for who in order[k:] + order[:k]:
                        client = who if who in peers else "ours"
                        cmd = [sys.executable, "-m", "bench.httpclients", client, mode]
                        cmd += [urls[path], "--expect", str(expect), "--requests", str(n)]
                        cmd += ["--tasks", "64"]
                        if who not in own:
                            cmd += ["--cafile", site.cafile]
                        got = _measure(cmd, paths[who], sut, mode == "bulk")
                        if got is not None:
                            results.setdefault((key, who), []).append(got)
    _report(args.loads.split(","), list(paths), peers, results)


def _report(
    loads: list[str],
    names: list[str],
    peers: list[str],
    results: dict[tuple[str, str], list[tuple[float, float]]],
) -> None:
    for key in loads:
        rate = {w: statistics.median(r for r, _ in v) for (k, w), v in results.items() if k == key}
        cpu = {w: statistics.median(c for _, c in v) for (k, w), v in results.items() if k == key}
        print(key + ": " + ", ".join(f"{w} {rate[w]:.0f} (CPU {cpu[w]:.2f})" for w in rate))
        for w in names:
            if w in peers or w not in rate:
                continue
            ratios = [f"{rate[w] / rate[p]:.2f}x {p}" for p in peers if rate.get(p)]
            print(f"    {w}: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
