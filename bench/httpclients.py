"""One HTTP client run per process: ``python -m bench.httpclients CLIENT WORKLOAD URL [options]``.

CLIENT is ``ours``, ``aiohttp``, ``urllib3``, ``httpx`` or ``curl``;
WORKLOAD is

* ``bulk``  one GET of URL, body streamed and counted (``--expect`` bytes),
* ``seq``   ``--requests`` sequential GETs of URL on one keep-alive connection,
* ``conc``  ``--requests`` GETs spread over ``--tasks`` concurrent tasks
  (threads for urllib3, which has no async API),
* ``newconn`` ``--requests`` sequential GETs, each on a new connection (the
  request says ``Connection: close``; for https a full TLS handshake each).

``--cafile`` names the CA to trust for https URLs (the bench's own nginx).
``--proxy URL`` sends every request through that HTTP proxy, each client its
documented way: ours ``Client(proxy=)``, aiohttp ``get(proxy=)``, urllib3
``ProxyManager``, httpx ``AsyncClient(proxy=)``, curl ``-x``.

Timing is ``time.perf_counter`` around the work only — imports,
interpreter start-up and making the ``ssl.SSLContext`` (loading the system
trust store costs ~35 ms of CPU, which is setup, not requests) are excluded
(for curl, which is a separate program, it is the wall time of the curl
process, whose start-up is a few milliseconds).
Each run is its own process so ``ru_maxrss`` is the peak RSS of that client
alone.  The result is one JSON object on stdout:
``{"seconds", "cpu_seconds", "bytes", "requests", "maxrss_kib"}``.  The CPU
time (user + system, all threads, over the same span) is reported because it
hardly depends on what else the machine is doing, unlike the wall time.

Each client is used the way its documentation recommends for streaming:
ours with a consumer that counts bytes; aiohttp ``content.iter_any()``;
urllib3 ``PoolManager`` with ``preload_content=False`` and ``stream(1 MiB)``;
httpx ``AsyncClient.stream`` + ``aiter_raw()`` under Trio (through anyio).
Every body is checked (status 200, byte count) so a fast wrong answer never
counts as a result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CLIENTS = ("ours", "aiohttp", "urllib3", "httpx", "curl")
WORKLOADS = ("bulk", "seq", "conc", "newconn")
CLOSE = {"Connection": "close"}


def _ssl_context(args: argparse.Namespace) -> Any:
    import ssl

    return ssl.create_default_context(cafile=args.cafile or None)


def _headers(args: argparse.Namespace) -> dict[str, str] | None:
    return CLOSE if args.workload == "newconn" else None


class Stopwatch:
    """Wall time (``perf_counter``) and this process's CPU time (all threads) since creation."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = _cpu()

    def stop(self, total: int) -> tuple[float, int, float]:
        return time.perf_counter() - self.t0, total, _cpu() - self.c0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counted(Exception):
    """The response was not what the workload expects (status or size)."""


def _check(status: int | None, got: int, expect: int, url: str) -> None:
    if status != 200 or got != expect:
        raise Counted(f"{url}: status {status}, {got} bytes (expected 200, {expect})")


def _split(total: int, parts: int) -> list[int]:
    """``total`` requests split over ``parts`` workers as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# --------------------------------------------------------------------------- ours


def run_ours(args: argparse.Namespace) -> tuple[float, int, float]:
    import trio

    import trio_timehttp

    class CountingConsumer:
        """The cheapest useful consumer: counts the body bytes."""

        __slots__ = ("n",)

        def __init__(self) -> None:
            self.n = 0

        def feed(self, data: bytes) -> None:
            self.n += len(data)

        def close(self) -> None:
            pass

    headers = _headers(args)

    async def one(client: Any, expect: int) -> int:
        consumer = CountingConsumer()
        response = await client.fetch(args.url, consumer, headers=headers, timeout=None)
        _check(response.status_code, consumer.n, expect, args.url)
        return consumer.n

    # Made before the stopwatch starts, as for urllib3 (loading a CA costs ~3 ms).
    ctx = _ssl_context(args)

    async def main() -> tuple[float, int, float]:
        watch = Stopwatch()
        total = 0
        proxy = args.proxy or None
        if args.workload == "bulk":
            async with trio_timehttp.Client(timeout=None, ssl_context=ctx, proxy=proxy) as client:
                total = await one(client, args.expect)
        elif args.workload in ("seq", "newconn"):
            async with trio_timehttp.Client(timeout=None, ssl_context=ctx, proxy=proxy) as client:
                for _ in range(args.requests):
                    total += await one(client, args.expect)
        else:
            counts = [0]

            async def worker(n: int, client: Any) -> None:
                for _ in range(n):
                    got = await one(client, args.expect)  # read counts[0] after the await
                    counts[0] += got

            async with (
                trio_timehttp.Client(
                    timeout=None, max_connections=args.tasks, ssl_context=ctx, proxy=proxy
                ) as client,
                trio.open_nursery() as nursery,
            ):
                for n in _split(args.requests, args.tasks):
                    nursery.start_soon(worker, n, client)
            total = counts[0]
        return watch.stop(total)

    return trio.run(main)


# --------------------------------------------------------------------------- aiohttp


def run_aiohttp(args: argparse.Namespace) -> tuple[float, int, float]:
    import asyncio

    import aiohttp

    headers = _headers(args)

    async def one(session: aiohttp.ClientSession, expect: int) -> int:
        async with session.get(args.url, headers=headers, proxy=args.proxy or None) as r:
            n = 0
            async for chunk in r.content.iter_any():
                n += len(chunk)
            _check(r.status, n, expect, args.url)
            return n

    ctx = _ssl_context(args)  # before the stopwatch, as for the others

    async def main() -> tuple[float, int, float]:
        watch = Stopwatch()
        connector = aiohttp.TCPConnector(
            limit=args.tasks if args.workload == "conc" else 100, ssl=ctx
        )
        timeout = aiohttp.ClientTimeout(total=None)
        total = 0
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if args.workload == "bulk":
                total = await one(session, args.expect)
            elif args.workload in ("seq", "newconn"):
                for _ in range(args.requests):
                    total += await one(session, args.expect)
            else:

                async def worker(n: int) -> int:
                    return sum([await one(session, args.expect) for _ in range(n)])

                done = await asyncio.gather(
                    *(worker(n) for n in _split(args.requests, args.tasks))
                )
                total = sum(done)
        return watch.stop(total)

    return asyncio.run(main())


# --------------------------------------------------------------------------- urllib3


def run_urllib3(args: argparse.Namespace) -> tuple[float, int, float]:
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    tasks = args.tasks if args.workload == "conc" else 1
    options: dict[str, Any] = {"maxsize": tasks, "block": True, "retries": False, "timeout": None}
    options["ssl_context"] = _ssl_context(args)
    if args.proxy:
        http: urllib3.PoolManager = urllib3.ProxyManager(args.proxy, **options)
    else:
        http = urllib3.PoolManager(**options)
    headers = _headers(args)

    def one(expect: int) -> int:
        r = http.request("GET", args.url, preload_content=False, headers=headers)
        n = 0
        for chunk in r.stream(1 << 20, decode_content=False):
            n += len(chunk)
        r.release_conn()
        _check(r.status, n, expect, args.url)
        return n

    watch = Stopwatch()
    if args.workload == "bulk":
        total = one(args.expect)
    elif args.workload in ("seq", "newconn"):
        total = sum(one(args.expect) for _ in range(args.requests))
    else:

        def worker(n: int) -> int:
            return sum(one(args.expect) for _ in range(n))

        with ThreadPoolExecutor(max_workers=tasks) as pool:
            total = sum(pool.map(worker, _split(args.requests, tasks)))
    result = watch.stop(total)
    http.clear()
    return result


# --------------------------------------------------------------------------- httpx on Trio


def run_httpx(args: argparse.Namespace) -> tuple[float, int, float]:
    import httpx
    import trio

    headers = _headers(args)

    async def one(client: httpx.AsyncClient, expect: int) -> int:
        async with client.stream("GET", args.url, headers=headers) as r:
            n = 0
            async for chunk in r.aiter_raw():
                n += len(chunk)
            _check(r.status_code, n, expect, args.url)
            return n

    ctx = _ssl_context(args)  # before the stopwatch, as for the others

    async def main() -> tuple[float, int, float]:
        watch = Stopwatch()
        tasks = args.tasks if args.workload == "conc" else 1
        limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
        total = 0
        async with httpx.AsyncClient(
            limits=limits, timeout=None, verify=ctx, proxy=args.proxy or None
        ) as client:
            if args.workload == "bulk":
                total = await one(client, args.expect)
            elif args.workload in ("seq", "newconn"):
                for _ in range(args.requests):
                    total += await one(client, args.expect)
            else:
                counts = [0]

                async def worker(n: int) -> None:
                    for _ in range(n):
                        got = await one(client, args.expect)  # read counts[0] after the await
                        counts[0] += got

                async with trio.open_nursery() as nursery:
                    for n in _split(args.requests, tasks):
                        nursery.start_soon(worker, n)
                total = counts[0]
        return watch.stop(total)

    return trio.run(main)


# --------------------------------------------------------------------------- curl


def run_curl(args: argparse.Namespace) -> tuple[float, int, float, int]:
    """curl's own process: wall time, bytes (from ``-w``), CPU time and peak RSS (from wait4)."""
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        raise Counted("curl is not installed")
    if args.workload == "conc":
        raise Counted("curl has no equivalent of concurrent tasks here")
    url = args.url
    n = 1
    if args.workload in ("seq", "newconn"):
        n = args.requests
        url = f"{args.url}?[1-{n}]"  # URL globbing: n transfers over one connection
    cmd = [curl, "-s", "-S", "-o", "/dev/null", "-w", "%{http_code} %{size_download}\\n"]
    if args.cafile:
        cmd += ["--cacert", args.cafile]
    if args.proxy:
        cmd += ["-x", args.proxy]
    if args.workload == "newconn":
        cmd += ["-H", "Connection: close"]
    cmd += ["-g", url] if n == 1 else [url]  # -g: no globbing for the plain URL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise Counted(f"curl exit status {proc.returncode}: {err.decode(errors='replace')}")
    lines = out.decode().split()
    codes, sizes = lines[0::2], [int(x) for x in lines[1::2]]
    if len(sizes) != n or any(c != "200" for c in codes) or any(s != args.expect for s in sizes):
        raise Counted(f"curl: unexpected results {codes[:3]} {sizes[:3]} ({len(sizes)} transfers)")
    return elapsed, sum(sizes), cpu, usage.ru_maxrss


RUNNERS: dict[str, Callable[[argparse.Namespace], tuple[float, int, float]]] = {
    "ours": run_ours,
    "aiohttp": run_aiohttp,
    "urllib3": run_urllib3,
    "httpx": run_httpx,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.httpclients", description=__doc__)
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("url")
    p.add_argument("--expect", type=int, required=True, help="body bytes per response")
    p.add_argument("--requests", type=int, default=1)
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--cafile", default="", help="CA certificate (PEM) to trust for https")
    p.add_argument("--proxy", default="", help="HTTP proxy URL for every request")
    args = p.parse_args(argv)
    try:
        if args.client == "curl":
            seconds, total, cpu, rss = run_curl(args)
        else:
            seconds, total, cpu = RUNNERS[args.client](args)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except Counted as exc:
        sys.exit(f"{args.client}: {exc}")
    requests = 1 if args.workload == "bulk" else args.requests
    json.dump(
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "bytes": total,
            "requests": requests,
            "maxrss_kib": rss,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
