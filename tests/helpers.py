"""Test servers for the HTTP requester: a well-behaved h11 server and an evil one.

Both run on Trio in the test's own nursery, bind 127.0.0.1 (or ``::1``) on
port 0, and report readiness through ``task_status`` (no sleeps)::

    server = await nursery.start(serve_http, handler)
    url = server.url("/path")

``serve_http`` answers each request with what ``handler(request)`` returns:
``(status, headers, body)`` where ``body`` is ``bytes`` (sent with a
Content-Length unless the handler set its own framing headers) or an async
iterable of ``bytes`` (sent chunked on HTTP/1.1 unless a Content-Length was
given). The handler may be sync or async. Keep-alive, HEAD and
``Connection: close`` follow h11's rules. ``server.connections`` counts
accepted connections, ``server.open`` those still open, ``server.requests``
records each request seen.

``serve_evil`` runs a *script* of raw actions on each accepted connection, for
the hostile-server cases: a list of steps (``recv``, ``send``, ``drip``,
``sleep``, ``close``, ``reset``, ``forever``) or an ``async def script(conn)``
that drives an ``EvilConnection`` itself. ``scripts`` may be a list: the
n-th connection runs the n-th script (the last repeats).
"""

from __future__ import annotations

import contextlib
import http
import inspect
import os
import socket
import struct
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import h11
import trio

__all__ = [
    "EvilConnection",
    "EvilServer",
    "HTTPServer",
    "ServerRequest",
    "Step",
    "bound_socket",
    "bound_trio_socket",
    "closed_port",
    "count_open_fds",
    "serve_evil",
    "serve_http",
]


def bound_trio_socket(family: int, kind: int, address: Any) -> trio.socket.SocketType:
    """A Trio socket bound at once to a literal ``address`` (no lookup, no await).

    Bound as a stdlib socket, then handed to Trio by its public
    ``from_stdlib_socket``.
    """
    sock = socket.socket(family, kind)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return trio.socket.from_stdlib_socket(sock)


@contextlib.contextmanager
def bound_socket(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A TCP socket bound to a fresh port on ``host`` and not listening, closed on exit.

    A connection to that port is refused, and while the block runs no other
    process can take the port (no ``SO_REUSEADDR``: any other bind to it fails
    with ``EADDRINUSE``). Call ``listen()`` on it to serve there later.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A TCP port on ``host`` where connections are refused for the block's life.

    Use it wherever a test means "nothing listens there": a fixed port (1, 9)
    is only refused until some other process on the machine listens on it.
    """
    with bound_socket(host) as sock:
        yield int(sock.getsockname()[1])


def count_open_fds() -> int:
    """Open file descriptors of this process (sockets included), from /proc/self/fd."""
    return len(os.listdir("/proc/self/fd"))


def count_open_sockets() -> int:
    """Open sockets of this process (only sockets), from /proc/self/fd."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def _reset(sock: Any) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _listen(host: str) -> trio.SocketListener:
    listeners = await trio.open_tcp_listeners(0, host=host)
    return listeners[0]


def _base_url(host: str, port: int, scheme: str = "http") -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{scheme}://{h}:{port}"


# --------------------------------------------------------------------------
# The well-behaved h11 server


@dataclass
class ServerRequest:
    """One request as the test server saw it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str
    connection_index: int

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


Body: TypeAlias = bytes | AsyncIterable[bytes]
Reply: TypeAlias = tuple[int, Sequence[tuple[str, str]], Body]
Handler: TypeAlias = Callable[[ServerRequest], "Reply | Awaitable[Reply]"]


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Whatever"


def ok_handler(request: ServerRequest) -> Reply:
    """A default handler: 200 with a small body naming the target."""
    return 200, [("content-type", "text/plain")], f"hello {request.target}".encode()


@dataclass
class HTTPServer:
    """State of a running ``serve_http``: its address and what it has seen."""

    host: str
    port: int
    scheme: str = "http"
    connections: int = 0
    open: int = 0
    requests: list[ServerRequest] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return _base_url(self.host, self.port, self.scheme)

    def url(self, path: str = "/") -> str:
        return self.base_url + path


async def _h11_connection(
    stream: trio.abc.Stream, server: HTTPServer, handler: Handler, index: int
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        # Read one request.
        body = bytearray()
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
        assert request is not None
        seen = ServerRequest(
            method=request.method.decode(),
            target=request.target.decode(),
            headers=[(k.decode(), v.decode("latin-1")) for k, v in request.headers],
            body=bytes(body),
            http_version=request.http_version.decode(),
            connection_index=index,
        )
        server.requests.append(seen)
        result = handler(seen)
        if inspect.isawaitable(result):
            result = await result
        status, headers, payload = result  # type: ignore[misc]
        headers = list(headers)
        names = {k.lower() for k, _ in headers}
        if isinstance(payload, bytes | bytearray) and not names & {
            "content-length",
            "transfer-encoding",
        }:
            headers.append(("content-length", str(len(payload))))
        try:
            reason = _reason(status)
            await stream.send_all(
                conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
            )
            if isinstance(payload, bytes | bytearray):
                if payload and seen.method != "HEAD":
                    await stream.send_all(conn.send(h11.Data(data=bytes(payload))))
            else:
                aclose = getattr(payload, "aclose", None)
                try:
                    async for piece in payload:
                        if seen.method != "HEAD" and piece:
                            await stream.send_all(conn.send(h11.Data(data=piece)))
                finally:
                    if aclose is not None:
                        with trio.CancelScope(shield=True):
                            await aclose()
            await stream.send_all(conn.send(h11.EndOfMessage()))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def serve_http(
    handler: Handler = ok_handler,
    *,
    host: str = "127.0.0.1",
    ssl_context: Any = None,
    task_status: trio.TaskStatus[HTTPServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 with h11 until cancelled; ``started(HTTPServer)``.

    With ``ssl_context`` (a server-side ``ssl.SSLContext``) it serves HTTPS.
    """
    listener = await _listen(host)
    port = listener.socket.getsockname()[1]
    server = HTTPServer(host, port, "https" if ssl_context is not None else "http")

    async def on_connection(stream: trio.SocketStream) -> None:
        server.connections += 1
        server.open += 1
        index = server.connections - 1
        try:
            s: trio.abc.Stream = stream
            if ssl_context is not None:
                s = trio.SSLStream(stream, ssl_context, server_side=True)
                try:
                    await s.do_handshake()
                except trio.BrokenResourceError:
                    return
            await _h11_connection(s, server, handler, index)
        finally:
            server.open -= 1
            stream.socket.close()

    async with trio.open_nursery() as nursery:
        task_status.started(server)
        await trio.serve_listeners(on_connection, [listener], handler_nursery=nursery)


# --------------------------------------------------------------------------
# The evil server

Step: TypeAlias = tuple[Any, ...]


class EvilConnection:
    """One accepted connection, driven by a script."""

    def __init__(self, stream: trio.SocketStream, index: int) -> None:
        self.stream = stream
        self.index = index
        self.received = bytearray()

    async def recv_request(self) -> bytes:
        """Read until the end of a request head (``\\r\\n\\r\\n``) or EOF; return the head."""
        while b"\r\n\r\n" not in self.received:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            if not data:
                break
            self.received += data
        head, sep, rest = bytes(self.received).partition(b"\r\n\r\n")
        self.received = bytearray(rest)
        return head + sep

    async def send(self, data: bytes) -> bool:
        """Send ``data``; False once the peer is gone (the script may stop then)."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def drip(self, data: bytes, interval: float, size: int = 1) -> None:
        """Send ``data`` ``size`` bytes at a time, ``interval`` seconds apart."""
        for i in range(0, len(data), size):
            if not await self.send(data[i : i + size]):
                return
            await trio.sleep(interval)

    def reset(self) -> None:
        _reset(self.stream.socket)

    def close(self) -> None:
        self.stream.socket.close()


Script: TypeAlias = Sequence[Step] | Callable[[EvilConnection], Awaitable[None]]


async def run_steps(conn: EvilConnection, steps: Sequence[Step]) -> None:
    """Run a list of steps: ``("recv",)``, ``("send", b)``, ``("drip", b, interval[, size])``,
    ``("sleep", s)``, ``("forever",)``, ``("close",)``, ``("reset",)``,
    ``("drip_forever", b, interval)`` (repeat ``b`` forever).
    """
    for step in steps:
        op = step[0]
        if op == "recv":
            await conn.recv_request()
        elif op == "send":
            await conn.send(step[1])
        elif op == "drip":
            await conn.drip(step[1], step[2], *step[3:])
        elif op == "drip_forever":
            while True:
                if not await conn.send(step[1]):
                    break
                await trio.sleep(step[2])
        elif op == "sleep":
            await trio.sleep(step[1])
        elif op == "forever":
            await trio.sleep_forever()
        elif op == "close":
            conn.close()
            return
        elif op == "reset":
            conn.reset()
            return
        else:  # pragma: no cover - a typo in a test table
            raise ValueError(f"unknown step {op!r}")


@dataclass
class EvilServer:
    """State of a running ``serve_evil``."""

    host: str
    port: int
    connections: int = 0
    open: int = 0
    received: list[bytes] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return _base_url(self.host, self.port)

    def url(self, path: str = "/") -> str:
        return self.base_url + path


async def serve_evil(
    scripts: Script | list[Script],
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[EvilServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a raw script on each accepted connection until cancelled; ``started(EvilServer)``.

    After the script ends the connection is closed (a plain FIN) unless the
    script closed or reset it already. ``received`` keeps what each connection
    read with ``recv``.
    """
    if isinstance(scripts, list) and scripts and not isinstance(scripts[0], tuple):
        per_conn: list[Script] = scripts
    else:
        per_conn = [scripts]  # type: ignore[list-item]
    listener = await _listen(host)
    server = EvilServer(host, listener.socket.getsockname()[1])

    async def on_connection(stream: trio.SocketStream) -> None:
        index = server.connections
        server.connections += 1
        server.open += 1
        script = per_conn[min(index, len(per_conn) - 1)]
        conn = EvilConnection(stream, index)
        try:
            if callable(script):
                await script(conn)
            else:
                await run_steps(conn, script)
        finally:
            server.open -= 1
            server.received.append(bytes(conn.received))
            stream.socket.close()

    async with trio.open_nursery() as nursery:
        task_status.started(server)
        await trio.serve_listeners(on_connection, [listener], handler_nursery=nursery)


# --------------------------------------------------------------------------
# A consumer that records what the requester did to it


class Recorder:
    """A consumer recording every call: ``events`` in order, the body, close count.

    ``async_=True`` makes every method ``async def`` (awaited by the requester).
    ``follow`` maps a status code to a ``Request`` factory: ``http_header``
    returns that request (the redirect mechanism). ``feed_gate``: an async
    consumer's ``feed`` waits on it (backpressure tests).
    """

    def __init__(self, *, async_: bool = False, follow: Any = None) -> None:
        self.events: list[Any] = []
        self.body = bytearray()
        self.closed = 0
        self.responses: list[Any] = []
        self.errors: list[BaseException] = []
        self.feeds = 0
        self.follow = follow
        self.feed_gate: trio.Event | None = None
        self.raise_in: dict[str, BaseException] = {}
        if async_:
            self.http_header = self._a_header  # type: ignore[method-assign]
            self.feed = self._a_feed  # type: ignore[method-assign]
            self.close = self._a_close  # type: ignore[method-assign]
            self.http_error = self._a_error  # type: ignore[method-assign]

    def http_header(self, response: Any) -> Any:
        self.events.append(("header", response.status_code))
        self.responses.append(response)
        if "header" in self.raise_in:
            raise self.raise_in["header"]
        if self.follow is not None and response.status_code in self.follow:
            return self.follow[response.status_code](response)
        return None

    def feed(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.feeds += 1
        self.body += data
        if "feed" in self.raise_in:
            raise self.raise_in["feed"]

    def close(self) -> None:
        self.closed += 1
        self.events.append("close")
        if "close" in self.raise_in:
            raise self.raise_in["close"]

    def http_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.events.append(("error", type(exc).__name__))

    async def _a_header(self, response: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return Recorder.http_header(self, response)

    async def _a_feed(self, data: bytes) -> None:
        if self.feed_gate is not None:
            await self.feed_gate.wait()
        await trio.lowlevel.checkpoint()
        Recorder.feed(self, data)

    async def _a_close(self) -> None:
        Recorder.close(self)
        await trio.lowlevel.checkpoint()

    async def _a_error(self, exc: BaseException) -> None:
        await trio.lowlevel.checkpoint()
        Recorder.http_error(self, exc)


def pool_stats(client: Any) -> Any:
    """Open and idle connection counts of a Client's pool (``_pool.PoolStats``).

    The one place tests look at a Client's pool; everything else about it is
    tested through ``trio_timehttp._pool.Pool`` itself.
    """
    return client._pool.stats()
