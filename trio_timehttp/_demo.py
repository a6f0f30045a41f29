"""``trio-timehttp demo``: the seed's examples 7-7 to 7-11, run on loopback.

A time server and a small h11 HTTP server (with a redirect) run on ephemeral
ports under one nursery; the client side of the seed's examples runs against
them, then everything is cancelled. Nothing leaves the machine.
"""

from __future__ import annotations

import email.utils
import http
import logging
from functools import partial
from typing import TextIO

import h11
import trio

from ._cli_args import printable
from ._errors import ConnectError
from ._http import fetch
from ._httptime import query_http_time
from ._models import Response
from ._redirects import RedirectingConsumer
from ._timeclient import query_time
from ._timeserver import serve_time
from ._version import __version__

__all__ = ["DummyConsumer", "print_head", "run_demo", "serve_demo_http"]

log = logging.getLogger("trio_timehttp.demo")

_PAGE = (
    b"<!doctype html><html><head><title>trio_timehttp demo</title></head><body>\n"
    b"<h1>Hello from the demo server</h1>\n"
    b'<p><a href="/">home</a> <a href="/redirect">a redirect</a></p>\n'
    b"</body></html>\n"
)


def print_head(response: Response, out: TextIO) -> None:
    """The seed's report of a response head: redirects taken, status line, ``name = value``.

    A failed connection is the seed's ``connection failed``; any other failure
    before a response (a timeout, a redirect loop, a malformed reply) prints
    nothing here: it is not a failed connection, and the caller reports it.
    """
    if response.status_code is None:
        if isinstance(response.error, ConnectError):
            print("connection failed", file=out)
        return
    # Each earlier hop was a redirect to the URL of the hop after it.
    if response.history:
        for hop in [*response.history[1:], response]:
            print(printable(f"redirecting to {hop.url} ..."), file=out)
    status = f"HTTP/{response.http_version} {response.status_code} {response.reason}"
    print(printable(f"status => {status}"), file=out)
    for name, value in response.headers.items():
        print(printable(f"{name} = {value}"), file=out)


class DummyConsumer:
    """The seed's 7-10 consumer: prints status and headers, counts the body."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.size = 0

    def http_header(self, response: Response) -> None:
        """Print the status line and each header, as the seed's DummyConsumer did."""
        print_head(response, self.out)

    def feed(self, data: bytes) -> None:
        """Count the body; the demo does not keep it."""
        self.size += len(data)

    def close(self) -> None:
        """End of data: report the size, as the seed did."""
        print(f"{self.size} bytes in body", file=self.out)


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    """The next h11 event from the client, reading as needed (an idle client gets 10 s)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(10):
            conn.receive_data(await stream.receive_some(65536))


async def _answer(stream: trio.SocketStream) -> None:
    """Serve HTTP/1.1 requests on one connection until the client is done."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = await _next_event(conn, stream)
            if not isinstance(event, h11.Request):
                return
            target = event.target.split(b"?", 1)[0]
            headers = [
                (b"date", email.utils.formatdate(usegmt=True).encode()),
                (b"server", f"trio-timehttp-demo/{__version__}".encode()),
            ]
            if target == b"/redirect":
                status, body = 302, b""
                headers.append((b"location", b"/"))
            elif target == b"/":
                status, body = 200, _PAGE
                headers.append((b"content-type", b"text/html; charset=utf-8"))
            else:
                status, body = 404, b"not found\n"
                headers.append((b"content-type", b"text/plain"))
            headers.append((b"content-length", str(len(body)).encode()))
            reason = http.HTTPStatus(status).phrase.encode()
            data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
            if event.method != b"HEAD":
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            # Read the rest of the request (a body we ignore) before the next cycle.
            while conn.their_state is h11.SEND_BODY:
                if isinstance(await _next_event(conn, stream), h11.ConnectionClosed):
                    return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (h11.ProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        log.debug("demo HTTP connection ended: %r", exc)
    finally:
        await stream.aclose()


async def serve_demo_http(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A tiny HTTP/1.1 server on 127.0.0.1 (ephemeral port): ``/``, ``/redirect`` -> ``/``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        task_status.started(port)
        await trio.serve_listeners(_answer, listeners, handler_nursery=nursery)


async def run_demo(out: TextIO) -> None:
    """Start both servers, run the seed's clients against them, print what happened."""
    async with trio.open_nursery() as nursery:
        listeners, sockets = await nursery.start(partial(serve_time, 0, host="127.0.0.1"))
        tcp_port = listeners[0].socket.getsockname()[1]
        udp_port = sockets[0].getsockname()[1]
        http_port = await nursery.start(serve_demo_http)
        base = f"http://127.0.0.1:{http_port}"
        print(f"time server on 127.0.0.1 port {tcp_port} (TCP) and {udp_port} (UDP)", file=out)
        print(f"HTTP server on {base}/", file=out)

        print("\n== 7-7: time client (RFC 868 over TCP)", file=out)
        sample = await query_time("127.0.0.1", tcp_port)
        # The seed prints local - server in whole seconds; our offset is server - local.
        print(f"time difference is {int(sample.local_time) - int(sample.server_time)}", file=out)
        udp = await query_time("127.0.0.1", udp_port, udp=True)
        print(
            f"over UDP: offset {udp.offset:+.3f} s (+- {udp.uncertainty:.3f} s), "
            f"round trip {udp.rtt * 1000:.2f} ms",
            file=out,
        )

        print("\n== 7-10: HTTP GET into a consumer", file=out)
        await fetch(f"{base}/", DummyConsumer(out), timeout=10)

        print("\n== 7-11: the same consumer behind RedirectingConsumer", file=out)
        await fetch(f"{base}/redirect", RedirectingConsumer(DummyConsumer(out)), timeout=10)

        print("\n== time from the HTTP Date header", file=out)
        http = await query_http_time(f"{base}/")
        print(
            f"{base}/: offset {http.offset:+.3f} s (+- {http.uncertainty:.3f} s), "
            f"round trip {http.rtt * 1000:.2f} ms",
            file=out,
        )
        nursery.cancel_scope.cancel()
