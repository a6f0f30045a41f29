"""A WAN emulator for the tests and the accuracy bench: a userspace TCP+UDP relay on loopback.

    python tests/wanrelay.py --tcp HOST:PORT --udp HOST:PORT [--up 0.04] [--down 0.04]
        [--jitter 0.01] [--loss 0.05] [--seed 1]

Prints one line ``READY <tcp_port> <udp_port>`` (0 for a side not relayed)
once it listens on 127.0.0.1, then relays until killed. Run it in its own
process: its timing must not depend on the scheduler of the process under test.

What it emulates, per direction (``up``: client -> server, ``down``: back):

- delay: every datagram / TCP chunk is delivered ``up`` (``down``) seconds
  after it arrived, plus a uniform jitter in ``[-jitter, +jitter]`` (never
  below zero);
- reordering: UDP datagrams are delivered at their own instants, so jitter
  reorders them; a TCP stream keeps its order (a chunk never overtakes the
  one before it, as TCP's own reassembly would ensure);
- loss: each UDP datagram is dropped with probability ``loss``, each way
  (TCP is reliable: its losses would show as delay).

What it cannot emulate: the TCP handshake. The kernel completes the client's
handshake with the relay at once; the relay connects to the server ``up``
seconds later, so the server reads its clock about one up-delay after the
client's ``connect()`` - as on a real path once the handshake is done, but
the client's kernel measures a loopback SYN round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import socket
import sys
from dataclasses import dataclass
from functools import partial

import trio


@dataclass(frozen=True)
class Path:
    up: float
    down: float
    jitter: float
    loss: float

    def delay(self, rng: random.Random, up: bool) -> float:
        base = self.up if up else self.down
        return max(0.0, base + rng.uniform(-self.jitter, self.jitter))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------- TCP


async def _pump(
    source: trio.SocketStream, sink: trio.SocketStream, path: Path, rng: random.Random, up: bool
) -> None:
    """Copy ``source`` to ``sink``, each chunk delayed; half-close ``sink`` at EOF."""
    send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

    async def deliver() -> None:
        async for when, data in receive:
            await trio.sleep_until(when)
            if not data:
                break
            await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError):
            await sink.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deliver)
        last = 0.0
        while True:
            try:
                data = await source.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            last = max(last, trio.current_time() + path.delay(rng, up))
            send.send_nowait((last, data))
            if not data:
                break


async def _tcp_connection(
    client: trio.SocketStream, target: tuple[str, int], path: Path, rng: random.Random
) -> None:
    async with client:
        # The request's way up: the server sees the connection one up-delay later.
        await trio.sleep(path.delay(rng, True))
        try:
            server = await trio.open_tcp_stream(*target)
        except OSError:
            return
        async with server:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, server, path, rng, True)
                    nursery.start_soon(_pump, server, client, path, rng, False)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


# --------------------------------------------------------------------- UDP


async def _udp_relay(
    listen: trio.socket.SocketType, target: tuple[str, int], path: Path, rng: random.Random
) -> None:
    upstream: dict[tuple[object, ...], trio.socket.SocketType] = {}

    async def later(when: float, sock: trio.socket.SocketType, data: bytes,
                    to: tuple[object, ...] | None) -> None:  # fmt: skip
        await trio.sleep_until(when)
        try:
            if to is None:
                await sock.send(data)
            else:
                await sock.sendto(data, to)
        except OSError:
            pass

    async def replies(sock: trio.socket.SocketType, client: tuple[object, ...]) -> None:
        while True:
            try:
                data = await sock.recv(65536)
            except OSError:
                continue
            if rng.random() < path.loss:
                continue
            when = trio.current_time() + path.delay(rng, False)
            nursery.start_soon(later, when, listen, data, client)

    async with trio.open_nursery() as nursery:
        while True:
            data, client = await listen.recvfrom(65536)
            sock = upstream.get(client)
            if sock is None:
                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                # The relay is the client the server sees: a port >= 1024.
                await sock.bind(("127.0.0.1", 0))
                await sock.connect(target)
                upstream[client] = sock
                nursery.start_soon(replies, sock, client)
            if rng.random() < path.loss:
                continue
            when = trio.current_time() + path.delay(rng, True)
            nursery.start_soon(later, when, sock, data, None)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tcp", type=_address, default=None)
    parser.add_argument("--udp", type=_address, default=None)
    parser.add_argument("--up", type=float, default=0.0)
    parser.add_argument("--down", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    path = Path(args.up, args.down, args.jitter, args.loss)
    rng = random.Random(args.seed)
    async with trio.open_nursery() as nursery:
        tcp_port = udp_port = 0
        if args.tcp:
            target = args.tcp

            async def handler(stream: trio.SocketStream) -> None:
                await _tcp_connection(stream, target, path, rng)

            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            tcp_port = listeners[0].socket.getsockname()[1]
        if args.udp:
            listen = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await listen.bind(("127.0.0.1", 0))
            udp_port = listen.getsockname()[1]
            nursery.start_soon(_udp_relay, listen, args.udp, path, rng)
        print(f"READY {tcp_port} {udp_port}", flush=True)  # noqa: T201 (the protocol)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1:])
