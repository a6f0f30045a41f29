"""Soak test (issue 5): ``python -m bench.soak --minutes N`` (run by ``nox -s soak``).

For N minutes (default 1) this process drives, through the public API only:

* our time server (``serve_time`` on ephemeral loopback ports, TCP and UDP),
  queried by good clients (``query_time`` over TCP and UDP) while evil
  clients abuse it: connections reset at once, connections held open
  unread, 4- and 8-byte datagrams (must get no reply: that is how two time
  servers would ping-pong) and oversized datagrams (no reply either);
* our HTTP client (one shared ``Client`` used by many tasks, plus the
  module-level ``fetch``) against a peer process serving good responses
  (Content-Length, chunked, redirects) and evil ones (truncated heads and
  bodies, resets, silence, drips, bad status lines, endless 1xx, huge
  headers, bad framing, bytes past the framing, redirect loops, unusable
  Locations).

It reports every outcome by peer and type, open file descriptors
(``/proc/self/fd``) and RSS at the start, after warm-up and at the end, and
exits 1 when something unexpected happened: a good peer failing, an evil
peer's response accepted as good, an exception that is not a
``TimeHTTPError``, a reply to a datagram that must not get one, or file
descriptors left open after everything stopped.  Flat lines are expected.

The HTTP peers run in a child process (``--peers``) so that the descriptors
and memory we count are our library's, not the peers'.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT = 2.0  # the client's total deadline per fetch: silent/drip peers end with Timeout
TIME_TIMEOUT = 2.0
PEER_CAP = 30.0  # no peer connection lives longer than this

# ============================================================================ HTTP peers


class _Conn:
    """A peer-side connection: read request heads, write raw bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                return None
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


def _ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _redirect(location: str) -> bytes:
    return f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


async def _chunked(conn: _Conn, n: int, *, finish: bool = True, bad: bool = False) -> None:
    await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    if bad:
        await conn.send(b"zz\r\nhello\r\n0\r\n\r\n")
        return
    left = n
    while left:
        k = min(left, 4096)
        await conn.send(b"%x\r\n" % k + b"c" * k + b"\r\n")
        left -= k
        if not finish:
            return
    await conn.send(b"0\r\n\r\n")


async def _drip(conn: _Conn, prefix: bytes, piece: bytes) -> None:
    await conn.send(prefix)
    with trio.move_on_after(PEER_CAP):
        while True:
            await conn.send(piece)
            await trio.sleep(0.05)


async def _route(conn: _Conn, path: str) -> bool:
    """Answer one request; True to keep the connection for another."""
    parts = path.strip("/").split("/")
    kind, arg = parts[0], (parts[1] if len(parts) > 1 else "")
    n = int(arg) if arg.isdigit() else 0
    if kind == "good":
        await conn.send(_ok(b"g" * n))
        return True
    if kind == "chunked":
        await _chunked(conn, n)
        return True
    if kind == "redirect":
        await conn.send(_redirect(f"/good/{n}"))
        return True
    evil = arg
    if evil == "close_head":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Le")
    elif evil == "close_body":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
    elif evil == "close_chunked":
        await _chunked(conn, 10000, finish=False)
    elif evil == "reset_body":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100)
        # SO_LINGER 0: close() sends a TCP reset instead of a FIN
        conn.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    elif evil == "silent":
        await trio.sleep(PEER_CAP)
    elif evil == "drip_head":
        await _drip(conn, b"HTTP/1.1 200 OK\r\nX-Drip: ", b"a")
    elif evil == "drip_body":
        await _drip(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"d" * 10)
    elif evil == "bad_status":
        await conn.send(b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n")
    elif evil == "http09":
        await conn.send(b"hello, this is not HTTP/1.x\n")
    elif evil == "status_999":
        await conn.send(b"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n")
    elif evil == "unsolicited_101":
        await conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
        )
    elif evil == "endless_100":
        with trio.move_on_after(PEER_CAP):
            for _ in range(100_000):
                await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    elif evil == "huge_header":
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    elif evil == "many_headers":
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(1000))
        await conn.send(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")
    elif evil == "bad_chunk":
        await _chunked(conn, 0, bad=True)
    elif evil == "bad_cl":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
    elif evil == "cl_and_te":
        await conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        return True  # an honest client must not reuse this connection
    elif evil == "overlong":
        # A complete 5-byte response, then bytes beyond its framing that would
        # become the next response on a reused connection.
        await conn.send(_ok(b"hello") + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")
        return True
    elif evil == "redirect_loop":
        await conn.send(_redirect("/evil/redirect_loop"))
        return True
    elif evil == "bad_location":
        await conn.send(_redirect("file:///etc/passwd"))
        return True
    return False


async def _handle(stream: trio.SocketStream) -> None:
    conn = _Conn(stream)
    try:
        with trio.move_on_after(PEER_CAP):
            while True:
                head = await conn.read_head()
                if head is None:
                    break
                target = head.split(b" ", 2)[1].decode("ascii", "replace")
                if not await _route(conn, target):
                    break
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # clients give up on evil peers mid-way: that is the point
    finally:
        await stream.aclose()


async def _peers_main() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _handle, 0, host=LOOPBACK))
        print(json.dumps({"port": listeners[0].socket.getsockname()[1]}), flush=True)


# ============================================================================ HTTP side

GOOD = ("good", "chunked", "redirect")
EVIL_FAIL = (
    "close_head", "close_body", "close_chunked", "reset_body", "silent", "drip_head",
    "drip_body", "bad_status", "http09", "status_999", "unsolicited_101", "endless_100",
    "huge_header", "many_headers", "bad_chunk", "bad_cl", "cl_and_te", "redirect_loop",
    "bad_location",
)  # fmt: skip
EVIL_OK = ("overlong",)  # a complete response with junk after it: fine once, never pooled
REDIRECTING = ("redirect", "redirect_loop", "bad_location")
SLOW = ("silent", "drip_head", "drip_body")  # each costs a whole deadline: pick them rarely


class Stats:
    """Outcomes by peer kind, and the unexpected ones."""

    def __init__(self) -> None:
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.unexpected: list[str] = []

    def record(self, kind: str, outcome: str, *, bad: bool, detail: str = "") -> None:
        self.outcomes[kind][outcome] += 1
        if bad and len(self.unexpected) < 50:
            self.unexpected.append(f"{kind}: {outcome} {detail}".strip())


class Counting:
    """A consumer that counts body bytes and checks close() comes exactly once."""

    def __init__(self) -> None:
        self.n = 0
        self.closed = 0
        self.status: int | None = None

    def http_header(self, response: Any) -> None:
        self.status = response.status_code

    def feed(self, data: bytes) -> None:
        self.n += len(data)

    def close(self) -> None:
        self.closed += 1


def _pick(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        kind = rng.choice(GOOD)
        return f"/{kind}/{rng.choice((0, 1, 100, 4096, 65536, rng.randrange(200_000)))}"
    if r < 0.53:
        return f"/evil/{rng.choice(SLOW)}"
    fast = [k for k in (*EVIL_FAIL, *EVIL_OK) if k not in SLOW]
    return f"/evil/{rng.choice(fast)}"


async def http_worker(api: Any, base: str, client: Any, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        path = _pick(rng)
        parts = path.strip("/").split("/")
        kind = parts[0] if parts[0] != "evil" else parts[1]
        expect = int(parts[1]) if parts[0] in GOOD else (5 if kind == "overlong" else None)
        counting = Counting()
        consumer = api.RedirectingConsumer(counting) if kind in REDIRECTING else counting
        use_module_fetch = rng.random() < 0.05
        try:
            if use_module_fetch:
                await api.fetch(base + path, consumer, timeout=HTTP_TIMEOUT)
            else:
                await client.fetch(base + path, consumer, timeout=HTTP_TIMEOUT)
        except api.TimeHTTPError as exc:
            outcome = type(exc).__name__
            stats.record(kind, outcome, bad=kind not in EVIL_FAIL, detail=str(exc)[:120])
        except Exception as exc:  # anything else escaping the client is a bug
            stats.record(kind, f"NOT-TimeHTTPError {type(exc).__name__}", bad=True,
                         detail=str(exc)[:120])  # fmt: skip
        else:
            good = counting.status == 200 and counting.n == expect
            outcome = "ok" if good else f"wrong response ({counting.status}, {counting.n} B)"
            stats.record(kind, outcome, bad=kind in EVIL_FAIL or not good)
        if counting.closed != 1:
            stats.record(kind, f"close() called {counting.closed} times", bad=True)


# ============================================================================ time side


async def time_worker(api: Any, port: int, udp: bool, stats: Stats) -> None:
    kind = "time-udp" if udp else "time-tcp"
    while True:
        try:
            await api.query_time(LOOPBACK, port, udp=udp, timeout=TIME_TIMEOUT)
        except api.TimeHTTPError as exc:
            # UDP: the server's per-source rate limit may drop some queries (Timeout).
            stats.record(kind, type(exc).__name__, bad=not (udp and isinstance(exc, api.Timeout)))
        except Exception as exc:
            stats.record(kind, f"NOT-TimeHTTPError {type(exc).__name__}", bad=True)
        else:
            stats.record(kind, "ok", bad=False)
        if udp:
            await trio.sleep(0.01)


async def evil_tcp_clients(port: int, stats: Stats, seed: int) -> None:
    """Connections reset at once, and connections held open unread for a while."""
    rng = random.Random(seed)
    held: list[tuple[float, trio.socket.SocketType]] = []
    try:
        while True:
            sock = trio.socket.socket()
            try:
                await sock.connect((LOOPBACK, port))
            except OSError as exc:
                sock.close()
                stats.record("time-evil-tcp", f"connect {type(exc).__name__}", bad=True)
                await trio.sleep(0.1)
                continue
            if rng.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                sock.close()
                stats.record("time-evil-tcp", "reset", bad=False)
            else:
                held.append((trio.current_time() + rng.uniform(1, 5), sock))
                stats.record("time-evil-tcp", "held unread", bad=False)
            now = trio.current_time()
            for item in [h for h in held if h[0] < now]:
                item[1].close()
                held.remove(item)
            await trio.sleep(0.02 if len(held) < 50 else 0.2)
    finally:
        for _, sock in held:
            sock.close()


async def evil_udp_clients(port: int, stats: Stats) -> None:
    """Datagrams the server must not answer: 4 and 8 bytes (a time reply), over 512 bytes."""
    with trio.socket.socket(type=socket.SOCK_DGRAM) as sock:
        await sock.bind((LOOPBACK, 0))
        while True:
            for size in (4, 8, 600):
                await sock.sendto(b"\0" * size, (LOOPBACK, port))
            with trio.move_on_after(0.2):
                data = await sock.recv(64)
                stats.record("time-evil-udp", f"reply of {len(data)} B", bad=True)
                continue
            stats.record("time-evil-udp", "no reply", bad=False)


# ============================================================================ driver


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


async def soak(api: Any, seconds: float, http_tasks: int, peer_port: int) -> int:
    stats = Stats()
    samples: list[tuple[str, float, int, float]] = []
    t0 = time.monotonic()

    def sample(label: str) -> None:
        samples.append((label, time.monotonic() - t0, fds(), rss_mib()))

    sample("start")
    base = f"http://{LOOPBACK}:{peer_port}"
    async with trio.open_nursery() as outer:
        listeners, socks = await outer.start(
            partial(api.serve_time, 0, host=LOOPBACK, rate_limit=(200.0, 400))
        )
        tcp_port = listeners[0].socket.getsockname()[1]
        udp_port = socks[0].getsockname()[1]
        with trio.move_on_after(seconds):
            async with (
                api.Client(timeout=HTTP_TIMEOUT, max_connections=32) as client,
                trio.open_nursery() as nursery,
            ):
                workers: list[Callable[[], Awaitable[None]]] = [
                    partial(time_worker, api, tcp_port, False, stats),
                    partial(time_worker, api, tcp_port, False, stats),
                    partial(time_worker, api, udp_port, True, stats),
                    partial(evil_tcp_clients, tcp_port, stats, 1),
                    partial(evil_udp_clients, udp_port, stats),
                ]
                workers += [
                    partial(http_worker, api, base, client, stats, 100 + i)
                    for i in range(http_tasks)
                ]
                for w in workers:
                    nursery.start_soon(w)
                await trio.sleep(min(10.0, seconds / 5))
                sample("after warm-up")
                while True:
                    await trio.sleep(max(5.0, seconds / 12))
                    sample("running")
        sample("load stopped (server up)")
        outer.cancel_scope.cancel()
    sample("everything stopped")

    print(f"soak: {seconds:.0f} s, {http_tasks} HTTP tasks + time clients, through the public API")
    print("\noutcomes by peer:")
    for kind in sorted(stats.outcomes):
        counts = ", ".join(f"{o} {n}" for o, n in stats.outcomes[kind].most_common())
        print(f"  {kind:16} {counts}")
    print("\nresources (open fds, RSS):")
    for label, t, n, rss in samples:
        print(f"  {t:7.1f} s  {label:26} fds {n:4d}  RSS {rss:7.1f} MiB")
    problems = list(stats.unexpected)
    leaked = samples[-1][2] - samples[0][2]
    if leaked > 0:
        problems.append(f"{leaked} file descriptors still open after everything stopped")
    warm, end = samples[1], samples[-2]
    print(f"\nRSS after warm-up → end of load: {warm[3]:.1f} → {end[3]:.1f} MiB;"
          f" fds start → stopped: {samples[0][2]} → {samples[-1][2]}")  # fmt: skip
    if problems:
        print("\nUNEXPECTED:")
        for p in problems:
            print("  " + p)
        return 1
    print("\nno unexpected outcome")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--http-tasks", type=int, default=16)
    p.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peers:
        trio.run(_peers_main)
        return 0
    try:
        import trio_timehttp as api
    except Exception as exc:
        print(f"soak: not available (import trio_timehttp failed: {exc})")
        return 0
    missing = [
        n for n in ("serve_time", "query_time", "Client", "fetch") if getattr(api, n) is None
    ]
    if missing:
        print(f"soak: not available (placeholders: {', '.join(missing)})")
        return 0
    peers = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--peers"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert peers.stdout is not None
        line = peers.stdout.readline()
        if not line:
            print("soak: the peer process did not start", file=sys.stderr)
            return 1
        port = int(json.loads(line)["port"])
        return trio.run(soak, api, args.minutes * 60, args.http_tasks, port)
    finally:
        peers.terminate()
        try:
            peers.wait(5)
        except subprocess.TimeoutExpired:
            peers.kill()
            peers.wait()


if __name__ == "__main__":
    sys.exit(main())
