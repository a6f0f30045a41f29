"""Time servers whose clock is off by a known fractional amount, in their own process.

    python tests/offset_servers.py --offset 100.37 [--cert CERT.pem --key KEY.pem]

Serves RFC 868 over TCP and UDP (no rate limit) and HTTP/1.1 (keep-alive; a
``Date`` from the shifted clock on every response), and HTTPS too when given
a certificate, all on 127.0.0.1 port 0. Prints one line
``READY <tcp> <udp> <http> <https or 0>``, then serves until killed. Its
clock is ours plus the offset, so the truth of any reading is exactly that
offset; being another process, our scheduler cannot delay its clock reads.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import ssl
import sys
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_timehttp import serve_time

from helpers import ServerRequest, serve_http


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offset", type=float, required=True)
    parser.add_argument("--cert", default=None)
    parser.add_argument("--key", default=None)
    args = parser.parse_args(argv)
    offset = args.offset

    def clock() -> float:
        return time.time() + offset

    def dated(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("date", email.utils.formatdate(clock(), usegmt=True))], b"ok\n"

    async with trio.open_nursery() as nursery:
        listeners, socks = await nursery.start(
            partial(serve_time, 0, host="127.0.0.1", clock=clock, rate_limit=None)
        )
        http = await nursery.start(serve_http, dated)
        https_port = 0
        if args.cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.cert, args.key)
            https = await nursery.start(partial(serve_http, dated, ssl_context=context))
            https_port = https.port
        tcp = listeners[0].socket.getsockname()[1]
        udp = socks[0].getsockname()[1]
        print(f"READY {tcp} {udp} {http.port} {https_port}", flush=True)  # noqa: T201


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1:])
