"""In-process microbenchmark: the requester's own CPU per request, no nginx needed.

``python -m bench.microbench [--requests N] [--runs R]``

A tiny server runs in a *thread* of this process (blocking sockets, canned
responses, so its cost is small and, above all, not counted): the client is
timed with ``time.thread_time()`` of the Trio thread only, so the figure is
what the requester itself costs per request, whatever the machine's load.
Workloads, each over plain TCP and TLS (a trustme CA):

* ``keepalive``: sequential small GETs on one keep-alive connection;
* ``newconn``:   sequential small GETs, each on a new connection;
* ``bulk``:      one 64 MiB Content-Length body (CPU per GB).

Prints one line per workload: the median over ``--runs`` of the client's CPU
per request (µs) or per GB (s), and min-max. A regression shows as a larger
number; nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator

SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 100
BULK = 64 << 20
CHUNK = b"\0" * (1 << 20)


class _Server:
    """A blocking server thread: answers every request head with a canned response."""

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self.listener.getsockname()[1]
        self.ctx = ctx
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn: socket.socket = sock
            if self.ctx is not None:
                conn = self.ctx.wrap_socket(sock, server_side=True)
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    if head.startswith(b"GET /bulk"):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BULK)
                        for _ in range(BULK // len(CHUNK)):
                            conn.sendall(CHUNK)
                    else:
                        conn.sendall(SMALL)
                    if b"connection: close" in head.lower():
                        conn.close()
                        return
        sock.close()

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def _contexts() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield server, client


class _Count:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def feed(self, data: bytes) -> None:
        self.n += len(data)

    def close(self) -> None:
        pass


async def _measure(url: str, workload: str, requests: int, ctx: ssl.SSLContext | None) -> float:
    import trio_timehttp as t

    headers = {"Connection": "close"} if workload == "newconn" else None
    async with t.Client(timeout=None, ssl_context=ctx) as client:
        await client.fetch(url, _Count(), headers=headers)  # warm: connect, memo, caches
        n = 1 if workload == "bulk" else requests
        start = time.thread_time()
        for _ in range(n):
            c = _Count()
            await client.fetch(url, c, headers=headers)
        cpu = time.thread_time() - start
    if workload == "bulk":
        return cpu / (n * BULK / 1e9)  # s per GB
    return cpu / n * 1e6  # µs per request


def main(argv: list[str] | None = None) -> None:
    import trio

    p = argparse.ArgumentParser(prog="python -m bench.microbench", description=__doc__)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", nargs="*", default=[], help="e.g. http/keepalive https/bulk")
    args = p.parse_args(argv)
    with _contexts() as (server_ctx, client_ctx):
        for scheme, sctx, cctx in (("http", None, None), ("https", server_ctx, client_ctx)):
            server = _Server(sctx)
            try:
                for workload in ("keepalive", "newconn", "bulk"):
                    if args.only and f"{scheme}/{workload}" not in args.only:
                        continue
                    path = "/bulk" if workload == "bulk" else "/small"
                    url = f"{scheme}://127.0.0.1:{server.port}{path}"
                    n = args.requests // 5 if workload == "newconn" else args.requests
                    got = [trio.run(_measure, url, workload, n, cctx) for _ in range(args.runs)]
                    unit = "CPU s/GB" if workload == "bulk" else "CPU µs/request"
                    print(
                        f"{scheme:5} {workload:9} {statistics.median(got):9.2f} {unit}"
                        f"  ({min(got):.2f}-{max(got):.2f}, {args.runs} runs)",
                        flush=True,
                    )
            finally:
                server.close()


if __name__ == "__main__":
    main()
