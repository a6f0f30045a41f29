"""A WAN emulator for the tests and the accuracy bench: a userspace TCP+UDP relay on loopback.

    python tests/wanrelay.py [--tcp HOST:PORT ...] [--udp HOST:PORT ...] [--up 0.04]
        [--down 0.04] [--jitter 0.01] [--loss 0.05] [--seed 1]

Each ``--tcp``/``--udp`` target (repeatable) gets its own port on 127.0.0.1;
prints one line ``READY <port>...`` (the TCP targets' ports in order, then
the UDP ones) once it listens, then relays until killed. Run it in its own
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


Chunks = trio.MemorySendChannel[tuple[float, bytes]]


async def _read(source: trio.SocketStream, out: Chunks, path: Path, rng: random.Random,
                up: bool) -> None:  # fmt: skip
    """Queue what ``source`` sends with its delivery instants (b"" at EOF), in order."""
    last = 0.0
    while True:
        try:
            data = await source.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        last = max(last, trio.current_time() + path.delay(rng, up))
        out.send_nowait((last, data))
        if not data:
            return


async def _deliver(queue: trio.MemoryReceiveChannel[tuple[float, bytes]],
                   sink: trio.SocketStream) -> None:  # fmt: skip
    """Send each queued chunk at its instant; half-close ``sink`` at EOF."""
    async for when, data in queue:
        await trio.sleep_until(when)
        if not data:
            break
        await sink.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await sink.send_eof()


async def _tcp_connection(
    client: trio.SocketStream, *, target: tuple[str, int], path: Path, rng: random.Random
) -> None:
    up_send, up_receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)
    down_send, down_receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)
    async with client:
        try:
            async with trio.open_nursery() as nursery:
                # What the client sends is timed from when it arrived, even
                # before the server is reached.
                nursery.start_soon(_read, client, up_send, path, rng, True)
                # The connection's way up: the server sees it one up-delay later.
                await trio.sleep(path.delay(rng, True))
                try:
                    server = await trio.open_tcp_stream(*target)
                except OSError:
                    nursery.cancel_scope.cancel()
                    return
                async with server:
                    nursery.start_soon(_deliver, up_receive, server)
                    nursery.start_soon(_read, server, down_send, path, rng, False)
                    await _deliver(down_receive, client)
                    nursery.cancel_scope.cancel()
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
    parser.add_argument("--tcp", type=_address, action="append", default=[])
    parser.add_argument("--udp", type=_address, action="append", default=[])
    parser.add_argument("--up", type=float, default=0.0)
    parser.add_argument("--down", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    path = Path(args.up, args.down, args.jitter, args.loss)
    rng = random.Random(args.seed)
    ports: list[int] = []
    async with trio.open_nursery() as nursery:
        for target in args.tcp:
            handler = partial(_tcp_connection, target=target, path=path, rng=rng)
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            ports.append(listeners[0].socket.getsockname()[1])
        for target in args.udp:
            listen = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await listen.bind(("127.0.0.1", 0))
            ports.append(listen.getsockname()[1])
            nursery.start_soon(_udp_relay, listen, target, path, rng)
        print("READY", *ports, flush=True)  # noqa: T201 (the protocol)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1:])
