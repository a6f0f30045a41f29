"""The RFC 868 servers under test, one per process: ``python -m bench.timeservers IMPL PROTO``.

IMPL is ``ours``, ``asyncio``, ``uvloop`` or ``asyncore``; PROTO is ``tcp`` or
``udp``.  The server binds an ephemeral port on 127.0.0.1, prints that port on
stdout (the harness's readiness signal) and serves until it is killed.

Each peer is written the way an experienced user of that framework would
write a small fast time server, so the comparison is with good code, not
with straw men:

* asyncio / uvloop: a ``Protocol`` whose ``connection_made`` writes the 4
  bytes and closes the transport (no coroutine, no stream objects); UDP: a
  ``DatagramProtocol``.  The same code runs on both loops.
* asyncore: the seed's design (example 7-8): a listening dispatcher whose
  ``handle_accept`` creates a ``TimeChannel`` that writes the time and closes
  when it becomes writable; UDP: one dispatcher that answers in
  ``handle_read``.
* ours: ``trio_timehttp.serve_time_tcp`` / ``serve_time_udp`` through the
  public API with default settings, except ``rate_limit=None`` for UDP (the
  load comes from one address).

Every UDP server applies the same admission rules as ours (no reply to
source ports below 1024, to 4- or 8-byte datagrams, or to datagrams over
512 bytes) so all do the same work.  Listen backlogs are 4096 for the peers
(ours uses Trio's default, the kernel's maximum): the seed's ``listen(5)``
would only measure SYN retransmissions at 5,000 concurrent connections.
"""

from __future__ import annotations

import socket
import sys
import time
import warnings
from typing import Any, cast

TIME1970 = 2208988800
HOST = "127.0.0.1"
BACKLOG = 4096


def encode_now() -> bytes:
    """The current time as RFC 868's 4 big-endian bytes (seconds since 1900, mod 2**32)."""
    return ((int(time.time()) + TIME1970) & 0xFFFFFFFF).to_bytes(4, "big")


def should_answer(data: bytes, addr: tuple[Any, ...]) -> bool:
    """The UDP admission rules of the API contract, shared by all the peers."""
    n = len(data)
    return addr[1] >= 1024 and n != 4 and n != 8 and n <= 512


def announce(port: int) -> None:
    print(port, flush=True)


# --------------------------------------------------------------------------- asyncio / uvloop


def run_asyncio(proto: str, use_uvloop: bool) -> None:
    import asyncio

    class TimeProtocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # (uvloop's transports do not subclass asyncio's: no isinstance checks here)
            t = cast(asyncio.WriteTransport, transport)
            t.write(encode_now())
            t.close()

    class TimeDatagramProtocol(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
            if should_answer(data, addr):
                self.transport.sendto(encode_now(), addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if proto == "tcp":
            server = await loop.create_server(TimeProtocol, HOST, 0, backlog=BACKLOG)
            announce(server.sockets[0].getsockname()[1])
            await server.serve_forever()
        else:
            transport, _ = await loop.create_datagram_endpoint(
                TimeDatagramProtocol, local_addr=(HOST, 0)
            )
            announce(transport.get_extra_info("sockname")[1])
            await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# --------------------------------------------------------------------------- asyncore


def run_asyncore(proto: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asyncore

    class TimeChannel(asyncore.dispatcher):
        def handle_write(self) -> None:
            self.send(encode_now())
            self.close()

    class TimeServer(asyncore.dispatcher):
        def __init__(self) -> None:
            super().__init__()
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.bind((HOST, 0))
            self.listen(BACKLOG)

        def handle_accept(self) -> None:
            pair = self.accept()
            if pair is not None:
                TimeChannel(pair[0])

    class UDPTimeServer(asyncore.dispatcher):
        def __init__(self) -> None:
            super().__init__()
            self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.bind((HOST, 0))

        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            try:
                data, addr = self.socket.recvfrom(513)
            except BlockingIOError:
                return
            if should_answer(data, addr):
                self.socket.sendto(encode_now(), addr)

    server = TimeServer() if proto == "tcp" else UDPTimeServer()
    announce(server.socket.getsockname()[1])
    asyncore.loop(timeout=30.0, use_poll=True)


# --------------------------------------------------------------------------- ours


def run_ours(proto: str) -> None:
    from functools import partial

    import trio

    import trio_timehttp

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if proto == "tcp":
                listeners = await nursery.start(
                    partial(trio_timehttp.serve_time_tcp, 0, host=HOST)
                )
                announce(listeners[0].socket.getsockname()[1])
            else:
                socks = await nursery.start(
                    partial(trio_timehttp.serve_time_udp, 0, host=HOST, rate_limit=None)
                )
                announce(socks[0].getsockname()[1])

    trio.run(main)


IMPLS = ("ours", "asyncio", "asyncore", "uvloop")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in IMPLS or argv[1] not in ("tcp", "udp"):
        sys.exit(f"usage: python -m bench.timeservers {{{','.join(IMPLS)}}} {{tcp,udp}}")
    impl, proto = argv
    if impl == "ours":
        run_ours(proto)
    elif impl == "asyncore":
        run_asyncore(proto)
    else:
        run_asyncio(proto, use_uvloop=impl == "uvloop")


if __name__ == "__main__":
    main(sys.argv[1:])
