"""``python -m bench [tcp] [udp] [http] [options]`` — the single benchmark entry point.

``python -m bench accuracy [options]`` runs the time-accuracy bench instead
(``bench/accuracy.py``: ours beside htpdate and rdate over emulated paths).

Runs our code and the peers side by side in one run, prints the tables, and
(for full runs) writes them with the machine and the exact command into
``bench/README.md``; raw numbers go to ``bench/results/`` (git-ignored).
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from . import _install
from ._common import RESULTS_DIR, machine_info
from ._report import machine_block, update_readme

SUITES = ("tcp", "udp", "http", "proxy")


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark trio_timehttp beside asyncio/asyncore/uvloop time servers and "
        "aiohttp/urllib3/httpx/curl HTTP clients (against nginx).",
    )
    p.add_argument(
        "suites", nargs="*", metavar="SUITE", help="tcp, udp, http, proxy (default: all)"
    )
    p.add_argument("--runs", type=int, default=5, help="measured runs per cell (default 5)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="one run of small counts: checks the harness, numbers are rough",
    )
    p.add_argument("--tcp-count", type=int, default=30_000, help="connections per TCP run")
    p.add_argument(
        "--tcp-concurrency",
        type=_ints,
        default=[50, 5000],
        help="comma-separated concurrent connections (default 50,5000)",
    )
    p.add_argument("--udp-count", type=int, default=50_000, help="datagrams per UDP run")
    p.add_argument(
        "--udp-window",
        type=_ints,
        default=[1, 64],
        help="comma-separated datagrams outstanding (default 1,64)",
    )
    p.add_argument("--bulk-mib", type=int, default=1024, help="bulk body size in MiB (1024)")
    p.add_argument("--tls-bulk-mib", type=int, default=256, help="HTTPS bulk size in MiB (256)")
    p.add_argument("--newconn-requests", type=int, default=1000)
    p.add_argument("--seq-requests", type=int, default=5000)
    p.add_argument("--conc-requests", type=int, default=10_000)
    p.add_argument("--tasks", type=int, default=64, help="concurrent tasks for workload (d)")
    p.add_argument(
        "--proxy-bulk-mib", type=int, default=256, help="bulk body through the proxy, MiB (256)"
    )
    p.add_argument("--proxy-requests", type=int, default=1000, help="GETs through the proxy")
    p.add_argument(
        "--no-install", action="store_true", help="do not pip/apt-install missing peers"
    )
    readme = p.add_mutually_exclusive_group()
    readme.add_argument(
        "--readme",
        dest="readme",
        action="store_true",
        default=None,
        help="write results into bench/README.md (default unless --quick)",
    )
    readme.add_argument("--no-readme", dest="readme", action="store_false")
    args = p.parse_args(argv)
    for suite in args.suites:
        if suite not in SUITES:
            p.error(f"unknown suite {suite!r} (choose from {', '.join(SUITES)})")
    args.suites = args.suites or list(SUITES)
    if args.quick:
        args.runs = 1
        args.tcp_count, args.udp_count = 3000, 5000
        args.bulk_mib, args.seq_requests, args.conc_requests = 64, 500, 1000
        args.proxy_bulk_mib, args.proxy_requests = 64, 200
        args.tls_bulk_mib, args.newconn_requests = 64, 200
    if args.readme is None:
        args.readme = not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["accuracy"]:
        from . import accuracy

        return accuracy.main(argv[1:])
    # A SIGTERM (nox, timeout) must unwind through the finally blocks that stop our children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    args = parse_args(argv)
    if not args.no_install:
        _install.ensure_all()
    header = machine_block(argv)
    print(header)
    raw: dict[str, Any] = {"argv": argv, "machine": machine_info(), "suites": {}}
    failed = False

    def run(suite: str, body: Callable[[], str]) -> None:
        nonlocal failed
        print(f"== {suite} ==", flush=True)
        try:
            text = body()
        except Exception as exc:
            failed = True
            text = f"#### {suite}\n\nnot run: {type(exc).__name__}: {exc}\n"
        print(text, flush=True)
        if args.readme:
            update_readme(suite, header + "\n" + text)

    for proto in ("tcp", "udp"):
        if proto not in args.suites:
            continue

        def time_suite(proto: str = proto) -> str:
            from . import timebench

            count = args.tcp_count if proto == "tcp" else args.udp_count
            levels = args.tcp_concurrency if proto == "tcp" else args.udp_window
            results = timebench.run_suite(proto, count=count, levels=levels, runs=args.runs)
            raw["suites"][proto] = [asdict(r) for r in results]
            return timebench.report(proto, results, count=count)

        run(proto, time_suite)

    if "http" in args.suites:

        def http_suite() -> str:
            from . import httpbench

            sizes = httpbench.Sizes(
                bulk=args.bulk_mib << 20,
                tls_bulk=args.tls_bulk_mib << 20,
                seq=args.seq_requests,
                conc=args.conc_requests,
                tasks=args.tasks,
                newconn=args.newconn_requests,
            )
            loads, cells, chunks = httpbench.run_suite(runs=args.runs, sizes=sizes)
            raw["suites"]["http"] = {f"{w}/{c}": asdict(v) for (w, c), v in cells.items()}
            return httpbench.report(loads, cells, chunks)

        run("http", http_suite)

    if "proxy" in args.suites:

        def proxy_suite() -> str:
            from . import proxybench

            loads, cells = proxybench.run_suite(
                runs=args.runs,
                bulk_size=args.proxy_bulk_mib << 20,
                seq_requests=args.proxy_requests,
            )
            raw["suites"]["proxy"] = {f"{w}/{c}": asdict(v) for (w, c), v in cells.items()}
            return proxybench.report(loads, cells)

        run("proxy", proxy_suite)

    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps(raw, indent=1))
    print(f"raw results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
