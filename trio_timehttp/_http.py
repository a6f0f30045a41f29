"""The streaming HTTP/1.1 requester: ``Client`` and ``fetch``.

One exchange, start to end, runs in the calling task (an HTTP/1.1
request/response needs no background task, so no internal nursery and no
``ExceptionGroup`` can leak):

1. A connection is taken from the pool — an idle keep-alive connection to the
   same origin that is still quiet and not expired, or a new one (TCP with
   Happy Eyeballs via ``trio.open_tcp_stream``, then TLS via
   ``trio.SSLStream``). ``max_connections`` bounds all open connections.
2. h11 serialises the request (once per prepared request) and parses the
   response head (status line, header fields, any 1xx responses) — a fresh
   ``h11.Connection`` per exchange, reads bounded so its incomplete-event cap
   is a real cap; a head byte-identical to one h11 already accepted on this
   Client reuses that result (``_Head``).
3. The body does *not* go through h11 (its buffer copies every byte): the
   bytes h11 already buffered (``trailing_data``) and every later socket read
   go through a ``_framing`` reader, and Content-Length bodies reach the
   consumer as the very ``bytes`` objects the socket returned.
4. The connection goes back to the pool only when the exchange provably ended
   clean; anything else closes the socket.

One ``trio.CancelScope`` with a deadline covers the pool wait, connecting,
TLS, sending and the whole response across a redirect chain; the consumer's
``close()`` (and error reporting) runs outside it, so it happens even after
the deadline.
"""

from __future__ import annotations

import inspect
import logging
import select
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import h11
import trio

from ._errors import ConnectError, HTTPError, InvalidURL, ProtocolError, TimeHTTPError, Timeout
from ._framing import BodyReader, ContentLengthReader, FramingError, UntilCloseReader, body_reader
from ._headers import Headers, HeadersLike
from ._models import Request, Response
from ._urls import URL, parse_url
from ._version import __version__

__all__ = ["Client", "fetch"]

log = logging.getLogger("trio_timehttp.http")

USER_AGENT: Final = f"trio-timehttp/{__version__}"

# Socket read sizes. Head reads are bounded so that h11's incomplete-event
# cap (max_header_bytes) is checked at least every HEAD_READ bytes; body reads
# are large because each read costs a trip through Trio's I/O loop. Measured
# once against nginx on loopback (1 GiB, Content-Length, shared 2-core box):
# 64 KiB ~2.0 GB/s, 256 KiB ~3.4 GB/s, 1 MiB ~1.2 GB/s (and a larger peak RSS).
HEAD_READ: Final = 65536
BODY_READ: Final = 262144
# Body bytes read without waiting (raw-socket path) between two checkpoints.
BODY_CHECKPOINT: Final = 1 << 20
# Plain-TCP Content-Length bodies: once a burst of RCVLOWAT_BURST bytes came in
# between two waits (the body is flowing in bulk, not dripping), each wait sets
# SO_RCVLOWAT to min(RCVLOWAT, bytes still missing), so epoll reports the socket
# readable only when that much is buffered (Linux honours it for TCP; EOF, RST
# and errors still wake it). The last wait asks for exactly the rest, so no wait
# can outlast the body. The socket goes back to 1 before it is pooled
# (``_exchange``). Measured against nginx, 1 GiB on loopback, two round-robin
# runs of 7, mark off / 64 KiB / 256 KiB: client CPU 0.29/0.25/0.22 and
# 0.25/0.22/0.21 s/GB; rate vs urllib3 in the same run 0.87/0.88/0.81 and
# 0.95/0.98/0.89. A larger mark makes nginx wait on us (the rate drops), so
# 64 KiB: about -12% CPU at an unchanged rate. Cost: a body that slows down
# after a bulk start reaches the consumer in RCVLOWAT batches.
RCVLOWAT: Final = 65536
RCVLOWAT_BURST: Final = 65536
# When a consumer's http_header() returns the next Request, the rest of the
# current response is read and dropped if that costs at most DRAIN_LIMIT
# bytes (so the connection can be reused); otherwise the connection is closed.
DRAIN_LIMIT: Final = 65536
# RFC 9110 section 9.2.2: methods whose repetition has the same effect; only
# these are retried after a reused connection turned out to be dead.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Methods that carry content by definition: send "Content-Length: 0" without a
# body (RFC 9110 section 8.6: a user agent SHOULD send it for POST, PUT...).
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
# Header fields the requester owns on the wire (recomputed for every hop).
_OWNED: Final = frozenset({"host", "content-length", "transfer-encoding"})

# Entries in a Client's cache of parsed URLs and serialisable request events.
_PREPARED_CACHE: Final = 256
# The Client's memo of response heads (see _Head): at most this many heads of
# at most this many bytes each (about 256 KiB in all), cleared when full.
HEAD_MEMO_ENTRIES: Final = 64
HEAD_MEMO_BYTES: Final = 4096

_DEFAULT: Any = object()


def _has_close(value: bytes | str | None) -> bool:
    """Whether a Connection header value lists the ``close`` option (RFC 9112 section 9.6)."""
    if not value:
        return False
    if isinstance(value, str):
        value = value.encode("latin-1")
    return any(t.strip(b" \t").lower() == b"close" for t in value.split(b","))


class _Conn:
    """One open connection: the stream, its raw socket (for a synchronous close), pool data."""

    __slots__ = (
        "_pool",
        "closed",
        "idle_since",
        "lowat",
        "origin",
        "raw",
        "recv",
        "reused",
        "send_all",
        "sock",
        "tls",
        "waited",
    )

    def __init__(
        self, pool: _Pool, origin: tuple[str, str, int], stream: trio.abc.Stream, sock: Any
    ) -> None:
        self._pool = pool
        self.origin = origin
        self.sock = sock
        self.tls = isinstance(stream, trio.SSLStream)
        # Plain TCP: I/O straight on the non-blocking stdlib socket under the
        # Trio socket, waiting (wait_readable/wait_writable) only when the call
        # would block. Every Trio socket call that completes at once still
        # yields to the scheduler (trio._socket._try_sync: a
        # cancel_shielded_checkpoint), i.e. one scheduler pass and an
        # epoll_wait per send and per recv: two per small GET, one per body
        # read. The exchange instead keeps one checkpoint per request (see
        # ``_exchange``) and the body loop one per BODY_CHECKPOINT bytes read
        # without waiting, so cancellation and fairness hold. Measured against
        # nginx: about -25 us CPU per small keep-alive GET.
        # A SocketStream (the TLS transport) adds a conflict detector and a
        # wrapper per call; TLS keeps Trio's own stream methods.
        raw = None if self.tls else getattr(sock, "_sock", None)
        self.raw: socket.socket | None = raw
        self.recv: Callable[[int], Awaitable[bytes]]
        self.send_all: Callable[[bytes], Awaitable[None]]
        if raw is None:
            self.recv = cast(
                Callable[[int], Awaitable[bytes]],
                stream.receive_some if self.tls else sock.recv,
            )
            self.send_all = stream.send_all if self.tls else self._send_trio
        else:
            self.recv = self._recv_raw
            self.send_all = self._send_raw
        # Whether this connection's I/O blocked (a full checkpoint) since the
        # exchange began; Trio's own methods always checkpoint.
        self.waited = raw is None
        self.idle_since = 0.0
        self.lowat = 1
        self.reused = False
        self.closed = False

    async def _recv_raw(self, size: int) -> bytes:
        """``recv`` on the raw socket; waits (a checkpoint) only if nothing is there yet."""
        raw = self.raw
        assert raw is not None
        try:
            return raw.recv(size)
        except BlockingIOError:
            pass
        self.waited = True
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(size)
            except BlockingIOError:
                pass

    async def _send_raw(self, data: bytes) -> None:
        """``send_all`` on the raw socket; waits (a checkpoint) only while the buffer is full."""
        raw = self.raw
        assert raw is not None
        with memoryview(data) as view:
            sent = 0
            total = len(view)
            while sent < total:
                try:
                    sent += raw.send(view[sent:] if sent else view)
                except BlockingIOError:
                    self.waited = True
                    await trio.lowlevel.wait_writable(raw)

    async def _send_trio(self, data: bytes) -> None:
        """``send_all`` on the Trio socket (when the raw socket is not reachable)."""
        send = self.sock.send
        with memoryview(data) as view:
            sent = await send(view)
            while sent < len(view):
                sent += await send(view[sent:])

    def close(self) -> None:
        """Close the socket now (synchronous: no cancellation can skip it), free the slot."""
        if not self.closed:
            self.closed = True
            self.sock.close()
            self._pool.released()

    def is_quiet(self) -> bool:
        """An idle connection must have nothing to read: readable means the server
        closed it (EOF) or sent bytes nobody asked for. Either way it is unusable."""
        if self.tls:
            # TLS may legitimately carry post-handshake records (session
            # tickets); a dead TLS connection is caught by the retry instead.
            return True
        try:
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False


class _Pool:
    """Idle connections per origin (LIFO) and a bound on all open connections.

    No background task: idle connections are expired lazily when the pool is
    used. A ``trio.Semaphore`` holds one token per open connection (idle or
    busy); closing a connection gives its token back.
    """

    def __init__(self, max_connections: int, keepalive_expiry: float) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self.slots = trio.Semaphore(max_connections)
        self.keepalive_expiry = keepalive_expiry
        self.closed = False
        self.waiting = 0  # tasks blocked in acquire(): cheaper than statistics()

    def released(self) -> None:
        self.slots.release()

    def take_idle(self, origin: tuple[str, str, int]) -> _Conn | None:
        """The most recently used idle connection to ``origin`` still fit for reuse."""
        conns = self.idle.get(origin)
        if not conns:
            return None
        now = trio.current_time()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since > self.keepalive_expiry:
                # LIFO: everything below this one is older still.
                conn.close()
                for older in conns:
                    older.close()
                conns.clear()
                break
            if conn.is_quiet():
                conn.reused = True
                return conn
            log.debug("idle connection to %s was closed by the server", conn.origin)
            conn.close()
        return None

    def expire(self) -> None:
        """Close idle connections past ``keepalive_expiry`` (lazily, no timer task)."""
        now = trio.current_time()
        for origin, conns in list(self.idle.items()):
            keep = [c for c in conns if now - c.idle_since <= self.keepalive_expiry]
            for c in conns:
                if now - c.idle_since > self.keepalive_expiry:
                    c.close()
            if keep:
                self.idle[origin] = keep
            else:
                del self.idle[origin]

    def evict_other(self, origin: tuple[str, str, int]) -> None:
        """At the bound, make room by closing the oldest idle connection to another origin."""
        oldest: _Conn | None = None
        for other, conns in self.idle.items():
            if (
                other != origin
                and conns
                and (oldest is None or conns[0].idle_since < oldest.idle_since)
            ):
                oldest = conns[0]
        if oldest is not None:
            self.idle[oldest.origin].remove(oldest)
            oldest.close()

    def put(self, conn: _Conn) -> None:
        """Keep a clean connection for reuse (or close it if nobody may keep it)."""
        if self.closed or conn.closed:
            conn.close()
            return
        if self.waiting:
            # Someone waits for a slot: give them ours rather than park it idle.
            conn.close()
            return
        conn.idle_since = trio.current_time()
        self.idle.setdefault(conn.origin, []).append(conn)

    def close_all(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class _Hooks:
    """The consumer's methods, looked up once, and which exception came from it."""

    __slots__ = ("close", "consumer", "error", "feed", "header", "raised", "sent")

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.header: Callable[[Response], Any] | None = getattr(consumer, "http_header", None)
        # Private, for our own time-over-HTTP reader: told (synchronously) the
        # instant the request has left, so a round trip excludes the connect.
        self.sent: Callable[[], None] | None = getattr(consumer, "_trio_timehttp_sent", None)
        self.error: Callable[[BaseException], Any] | None = getattr(consumer, "http_error", None)
        self.feed: Callable[[bytes], Any] = consumer.feed
        self.close: Callable[[], Any] = consumer.close
        # The exception a consumer method raised, so it propagates unchanged.
        self.raised: BaseException | None = None

    async def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call a consumer method, plain or async; await its result (backpressure)."""
        try:
            result = method(*args)
            if result is not None and inspect.isawaitable(result):
                result = await result
        except trio.Cancelled:
            raise
        except BaseException as exc:
            self.raised = exc
            raise
        return result


class _Head:
    """A final response head as the exchange uses it, derived from h11's event.

    A ``Client`` memoises these by the exact bytes of the head (status line
    to the blank line), for heads h11 accepted on that Client: parsing is a
    pure function of those bytes, and every check applied here (status range,
    HTTP version, field count and size caps, which are the Client's own) gave
    the same verdict on them, so byte-identical heads share one ``_Head``.
    Servers repeat heads exactly (nginx changes only ``Date``, once a
    second), and h11 was most of a small keep-alive GET's Python: measured
    with an in-process socket stub, 51 -> 14 us per request; against nginx
    (5,000 sequential GETs of 100 B, 5 runs) client CPU 141 -> 76 us per
    request. The request side likewise sends the bytes h11 made once per
    prepared request (``Client._prepare``). Everything shared is immutable
    (``Headers`` is); the framing reader is still made per response. Any
    other head (new bytes, split across reads, 1xx before it, larger than
    HEAD_MEMO_BYTES) goes through a fresh ``h11.Connection`` as before.
    """

    __slots__ = (
        "headers",
        "http_version",
        "length",
        "persistent",
        "raw_headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        status: int,
        reason: str,
        http_version: str,
        raw_headers: list[tuple[bytes, bytes]],
        headers: Headers,
        persistent: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.raw_headers = raw_headers
        self.headers = headers
        # HTTP/1.1 and no "Connection: close" from the server.
        self.persistent = persistent
        # The body length when any request but HEAD gets a Content-Length body
        # (body_reader depends on the method only for HEAD): saves running
        # body_reader and parse_content_length per response, about 6% of a
        # small GET's CPU in py-spy. None: ask body_reader every time.
        self.length: int | None = None
        try:
            probe = body_reader("GET", status, raw_headers)
        except FramingError:
            return
        if type(probe) is ContentLengthReader:
            self.length = probe.length


class _State:
    """Per-fetch bookkeeping shared by the hops of a redirect chain."""

    __slots__ = ("delivered", "history", "request", "retryable", "url")

    def __init__(self, url: str) -> None:
        self.url = url  # the URL of the hop in progress (for messages)
        self.request: Request | None = None  # the hop in progress
        self.history: list[Response] = []  # the hops before it
        self.delivered = False  # http_header got a real response for this hop
        self.retryable = False  # the last failure hit a reused connection before any byte


def _prepare(request: Request, url: URL, defaults: Headers) -> tuple[h11.Request, bytes | None]:
    """The h11 request event for ``request``: our header fields on top of the caller's.

    ``Host`` comes from the URL (RFC 9112 section 3.2: "A client MUST send a
    Host header field in all HTTP/1.1 request messages"), always recomputed;
    caller-supplied Content-Length/Transfer-Encoding are replaced by ours.
    """
    fields: list[tuple[str, str]] = [("host", url.authority)]
    given = request.headers
    names = set()
    for name, value in given.items():
        if name not in _OWNED:
            fields.append((name, value))
            names.add(name)
    for name, value in defaults.items():
        if name not in names and name not in _OWNED:
            fields.append((name, value))
    names.update(n for n, _ in defaults.items())
    if "user-agent" not in names:
        fields.append(("user-agent", USER_AGENT))
    if "accept-encoding" not in names:
        # We decode no content codings: ask for the representation as is.
        fields.append(("accept-encoding", "identity"))
    body = request.body
    if body is not None:
        fields.append(("content-length", str(len(body))))
    elif request.method in _BODY_METHODS:
        fields.append(("content-length", "0"))
    try:
        event = h11.Request(
            method=request.method.encode("ascii"),
            target=url.target.encode("ascii"),
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields],
        )
    except (h11.LocalProtocolError, UnicodeError) as exc:
        raise HTTPError(f"invalid request for {request.url}: {exc}") from exc
    return event, body


class Client(trio.abc.AsyncResource):
    """A keep-alive HTTP/1.1 client: ``async with Client() as client: await client.fetch(...)``.

    ``timeout``: default total deadline per fetch (seconds, ``None`` for none).
    ``max_connections``: bound on all open connections, idle and busy.
    ``keepalive_expiry``: seconds an idle connection may wait for reuse.
    ``headers``: default request header fields (a request's own fields win).
    ``ssl_context``: for https (default: ``ssl.create_default_context()``,
    which verifies certificates against the system trust store).
    ``max_header_fields`` / ``max_header_bytes`` / ``max_informational``: caps
    on a response head's field count, its size, and the number of 1xx
    responses before the final one; beyond them the response is a
    ``ProtocolError``.
    """

    def __init__(
        self,
        *,
        timeout: float | None = 30.0,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        headers: HeadersLike | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_header_fields: int = 100,
        max_header_bytes: int = 65536,
        max_informational: int = 10,
    ) -> None:
        self._timeout = timeout
        self._pool = _Pool(max_connections, keepalive_expiry)
        self._headers = Headers(headers)
        self._ssl_context = ssl_context
        self._max_header_fields = max_header_fields
        self._max_header_bytes = max_header_bytes
        self._max_informational = max_informational
        self._closed = False
        self._prepared: dict[tuple[Any, ...], tuple[URL, h11.Request, bytes, bool]] = {}
        self._heads: dict[bytes, _Head] = {}

    async def aclose(self) -> None:
        """Close every connection (idle now, busy ones when their fetch ends). Idempotent."""
        self._closed = True
        self._pool.close_all()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ fetch

    async def fetch(
        self,
        url: str,
        consumer: Any,
        *,
        method: str = "GET",
        headers: HeadersLike | None = None,
        body: bytes | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Response:
        """Send one request and stream the response body into ``consumer``.

        See the module docstring and the contract (API.md, "HTTP requester"):
        ``http_header(response)`` (optional; may return the next ``Request``),
        ``feed(bytes)``, ``close()`` exactly once; failures are reported to the
        consumer, then raised as ``TimeHTTPError`` subclasses; the consumer's
        own exceptions propagate unchanged. Returns the final ``Response``.
        """
        hooks = _Hooks(consumer)
        if timeout is _DEFAULT:
            timeout = self._timeout
        state = _State(url)
        try:
            if self._closed:
                raise HTTPError(f"the Client is closed (fetching {url})")
            request = Request(method, url, headers, body)
            self._prepare(request)
        except BaseException:
            await hooks.call(hooks.close)
            raise
        error: TimeHTTPError
        try:
            if timeout is None:
                # No deadline, no scope: entering and leaving a CancelScope
                # costs about 6 us (measured), ~4% of a small keep-alive GET.
                # Outer scopes still cancel us (Cancelled is no TimeHTTPError).
                response = await self._follow(request, hooks, state)
                timed_out = False
            else:
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    response = await self._follow(request, hooks, state)
                timed_out = scope.cancelled_caught
        except BaseException as exc:
            if (
                exc is hooks.raised
                or not isinstance(exc, TimeHTTPError)
                or isinstance(exc, InvalidURL)
                or (isinstance(exc, HTTPError) and type(exc) is HTTPError)
            ):
                # The consumer's own exception, a cancellation from outside, a
                # caller mistake, or (never expected) a bug: close, propagate.
                await hooks.call(hooks.close)
                raise
            error = exc
        else:
            if not timed_out:
                await hooks.call(hooks.close)
                return response
            error = Timeout(f"timed out after {timeout} s fetching {state.url}")
        await self._report(hooks, state, request, error)
        raise error

    def _prepare(self, request: Request) -> tuple[URL, h11.Request, bytes, bool]:
        """The parsed URL, the h11 request event and the bytes h11 makes of it, cached.

        Parsing the URL and having h11 validate every header field costs about
        15 us; a client repeating the same request (polling, benchmarks,
        crawling one site) pays it once. Events are immutable, so sharing is
        safe; the cache is bounded by clearing it when full. The bytes are
        what ``h11.Connection.send(event)`` returns (deterministic for an
        event), so an exchange sends them without a state machine; h11 gets
        the event only when it must parse the response (see ``_Head``).
        """
        key = (
            request.method,
            request.url,
            request.headers,
            request.body is None,
            len(request.body or b""),
        )
        hit = self._prepared.get(key)
        if hit is None:
            url = parse_url(request.url)
            event = _prepare(request, url, self._headers)[0]
            wire = h11.Connection(h11.CLIENT).send(event)
            assert wire is not None
            # Whether the request itself asks to close the connection.
            closes = _has_close(request.headers.get("connection"))
            hit = (url, event, wire, closes)
            if len(self._prepared) >= _PREPARED_CACHE:
                self._prepared.clear()
            self._prepared[key] = hit
        return hit

    async def _report(
        self, hooks: _Hooks, state: _State, request: Request, error: TimeHTTPError
    ) -> None:
        """Tell the consumer about a failure (outside the deadline), then close it once."""
        log.debug("fetch %s failed: %s", state.url, error)
        try:
            if state.delivered:
                if hooks.error is not None:
                    await hooks.call(hooks.error, error)
            elif hooks.header is not None:
                failed = Response(
                    url=state.url,
                    request=state.request or request,
                    status_code=None,
                    history=list(state.history),
                    error=error,
                )
                await hooks.call(hooks.header, failed)
        finally:
            await hooks.call(hooks.close)

    async def _follow(self, request: Request, hooks: _Hooks, state: _State) -> Response:
        """Run the hops: one exchange per request the consumer asks for."""
        history = state.history
        while True:
            state.url = request.url
            state.request = request
            state.delivered = False
            url, event, wire, closes = self._prepare(request)
            response, follow = await self._hop(
                request, url, event, wire, closes, request.body, hooks, state, history
            )
            if follow is None:
                return response
            history.append(response)
            request = follow

    async def _hop(
        self,
        request: Request,
        url: URL,
        event: h11.Request,
        wire: bytes,
        closes: bool,
        body: bytes | None,
        hooks: _Hooks,
        state: _State,
        history: list[Response],
    ) -> tuple[Response, Request | None]:
        """One request, retried once on a fresh connection if a reused one was dead."""
        attempt = 0
        while True:
            conn = await self._checkout(url, fresh=attempt > 0)
            state.retryable = False
            try:
                return await self._exchange(
                    conn, request, url, event, wire, closes, body, hooks, state, history
                )
            except ProtocolError:
                if state.retryable and attempt == 0 and request.method in IDEMPOTENT:
                    log.debug("reused connection to %s was dead; retrying", url.authority)
                    attempt += 1
                    continue
                raise

    # ------------------------------------------------------------ connections

    async def _checkout(self, url: URL, *, fresh: bool) -> _Conn:
        """An idle connection to the URL's origin, or a new one within the bound."""
        pool = self._pool
        origin = url.origin
        if not fresh:
            conn = pool.take_idle(origin)
            if conn is not None:
                return conn
        pool.expire()
        if pool.slots.value == 0:
            pool.evict_other(origin)
        pool.waiting += 1
        try:
            await pool.slots.acquire()
        finally:
            pool.waiting -= 1
        try:
            return await self._connect(url)
        except BaseException:
            pool.released()
            raise

    async def _connect(self, url: URL) -> _Conn:
        host, port = url.host, url.port
        log.debug("connecting to %s:%s", host, port)
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {url.authority} ({url}): {exc}") from exc
        sock = tcp.socket
        stream: trio.abc.Stream = tcp
        try:
            if url.scheme == "https":
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
                tls = trio.SSLStream(
                    tcp, self._ssl_context, server_hostname=host, https_compatible=True
                )
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    cause = exc.__cause__ or exc
                    raise ConnectError(
                        f"TLS handshake with {url.authority} failed ({url}): {cause}"
                    ) from exc
                stream = tls
        except BaseException:
            sock.close()
            raise
        conn = _Conn(self._pool, url.origin, stream, sock)
        if self._pool.closed:
            conn.close()
            raise HTTPError(f"the Client was closed while connecting to {url}")
        return conn

    # --------------------------------------------------------------- exchange

    async def _exchange(
        self,
        conn: _Conn,
        request: Request,
        url: URL,
        event: h11.Request,
        wire: bytes,
        closes: bool,
        body: bytes | None,
        hooks: _Hooks,
        state: _State,
        history: list[Response],
    ) -> tuple[Response, Request | None]:
        """Send, read the head, hand it to the consumer, stream the body.

        The connection is closed on every path but the one that proves the
        exchange ended clean, which returns it to the pool.
        """
        keep = False
        try:
            received = 0
            # Raw-socket I/O does not checkpoint when it need not wait (see
            # _Conn): this exchange is a cancel point here, and a schedule
            # point once the head is in, whether or not any I/O had to wait.
            conn.waited = conn.raw is None
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                await conn.send_all(wire)
                if body:
                    await conn.send_all(body)
                if hooks.sent is not None:
                    hooks.sent()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                state.retryable = conn.reused
                raise ProtocolError(
                    f"connection to {url.authority} broke while sending the request "
                    f"({request.url}): {exc}"
                ) from exc
            # ---- the head (and any 1xx responses) -------------------------
            h: h11.Connection | None = None
            head: _Head | None = None
            informational = 0
            head_start = 0
            first_read = b""
            ev: Any = h11.NEED_DATA  # nothing to parse before the first read
            while True:
                if ev is h11.NEED_DATA:
                    try:
                        data = await conn.recv(HEAD_READ)
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        state.retryable = conn.reused and received == 0
                        raise ProtocolError(
                            f"connection to {url.authority} broke before the response was "
                            f"complete ({request.url}): {exc}"
                        ) from exc
                    if not data:
                        state.retryable = conn.reused and received == 0
                    received += len(data)
                    if h is None:
                        # A head byte-identical to one h11 already accepted
                        # on this Client (see _Head) needs no parsing.
                        first_read = data
                        cut = data.find(b"\r\n\r\n") + 4
                        if cut > 3:
                            head = self._heads.get(data[:cut])
                            if head is not None:
                                first = data[cut:]
                                break
                        h = h11.Connection(
                            h11.CLIENT, max_incomplete_event_size=self._max_header_bytes
                        )
                        h.send(event)
                    h.receive_data(data)
                    try:
                        ev = h.next_event()
                    except h11.RemoteProtocolError as exc:
                        raise self._head_error(exc, url, request, received) from exc
                    continue
                assert h is not None
                if isinstance(ev, h11.ConnectionClosed):
                    raise ProtocolError(
                        f"{url.authority} closed the connection without a response ({request.url})"
                    )
                assert isinstance(ev, h11.InformationalResponse | h11.Response)
                head_end = received - len(h.trailing_data[0])
                if head_end - head_start > self._max_header_bytes:
                    raise ProtocolError(
                        f"response head from {url.authority} is larger than "
                        f"{self._max_header_bytes} bytes ({request.url})"
                    )
                head_start = head_end
                if len(ev.headers) > self._max_header_fields:
                    raise ProtocolError(
                        f"response from {url.authority} has more than "
                        f"{self._max_header_fields} header fields ({request.url})"
                    )
                if ev.http_version not in (b"1.1", b"1.0"):
                    raise ProtocolError(
                        f"{url.authority} answered with unsupported HTTP version "
                        f"{ev.http_version.decode()} ({request.url})"
                    )
                if isinstance(ev, h11.Response):
                    break
                informational += 1
                try:
                    ev = h.next_event()
                except h11.RemoteProtocolError as exc:
                    raise self._head_error(exc, url, request, received) from exc
                if informational > self._max_informational:
                    raise ProtocolError(
                        f"{url.authority} sent more than {self._max_informational} "
                        f"informational (1xx) responses ({request.url})"
                    )
            if not conn.waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            if head is None:
                assert h is not None
                head = self._new_head(ev, url, request)
                first = h.trailing_data[0]
                del h
                # Memoise only a final response whose head came whole in the
                # first read and ends at its first CRLFCRLF: then exactly these
                # bytes, seen again, are found by the lookup above.
                cut = first_read.find(b"\r\n\r\n") + 4
                if (
                    informational == 0
                    and cut == head_start
                    and cut <= HEAD_MEMO_BYTES
                    and len(first_read) >= cut
                ):
                    if len(self._heads) >= HEAD_MEMO_ENTRIES:
                        self._heads.clear()
                    self._heads[first_read[:cut]] = head
            status = head.status
            try:
                reader: BodyReader
                if head.length is not None and request.method != "HEAD":
                    reader = ContentLengthReader(head.length)
                else:
                    reader = body_reader(request.method, status, head.raw_headers)
            except FramingError as exc:
                raise ProtocolError(
                    f"bad response from {url.authority} ({request.url}): {exc}"
                ) from exc
            # RFC 9112 section 9.3: HTTP/1.1 defaults to persistent connections;
            # "close" from either side (section 9.6) ends the connection, and we
            # do not trust HTTP/1.0 keep-alive.
            reusable = reader.reusable and head.persistent and not closes
            response = Response(
                url=request.url,
                request=request,
                status_code=status,
                reason=head.reason,
                http_version=head.http_version,
                headers=head.headers,
                history=list(history),
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %s %s", request.method, request.url, status, response.reason)
            # ---- the consumer sees the head --------------------------------
            follow: Request | None = None
            if hooks.header is not None:
                result = await hooks.call(hooks.header, response)
                if isinstance(result, Request):
                    follow = result
            state.delivered = follow is None
            if follow is not None:
                keep = reusable and await self._drain(conn, reader, first, url, request)
                return response, follow
            # ---- the body --------------------------------------------------
            await self._body(conn, reader, first, url, request, hooks)
            keep = reusable and not reader.trailing
            if reader.trailing:
                log.debug("bytes beyond the framing from %s: connection not reused", url.authority)
            return response, None
        finally:
            if keep:
                conn.reused = False
                if conn.lowat != 1 and conn.raw is not None:
                    conn.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                    conn.lowat = 1
                self._pool.put(conn)
            else:
                conn.close()

    def _new_head(self, ev: h11.Response, url: URL, request: Request) -> _Head:
        """What an exchange needs from h11's final response event (checked)."""
        status = ev.status_code
        if status > 599:
            # RFC 9110 section 15: "Values outside the range 100..599 are invalid".
            raise ProtocolError(
                f"{url.authority} answered with invalid status code {status} ({request.url})"
            )
        # h11's Headers is a Sequence whose iteration goes through
        # __getitem__ per field; its list of (raw, lower, value) is 10x cheaper.
        full = getattr(ev.headers, "_full_items", None)
        raw_headers: list[tuple[bytes, bytes]] = (
            [(n, v) for _, n, v in full] if full is not None else list(ev.headers)
        )
        fields = []
        close = False
        for n, v in raw_headers:
            fields.append((n.decode("latin-1"), v.decode("latin-1")))
            if n == b"connection" and _has_close(v):
                close = True
        return _Head(
            status,
            ev.reason.decode("latin-1"),
            ev.http_version.decode("ascii"),
            raw_headers,
            Headers._from_lower(fields),
            ev.http_version == b"1.1" and not close,
        )

    def _head_error(
        self, exc: h11.RemoteProtocolError, url: URL, request: Request, received: int
    ) -> ProtocolError:
        """Say what the server did wrong in terms a user can act on."""
        text = str(exc)
        low = text.lower()
        if "closed" in low:
            if received == 0:
                what = "closed the connection without sending a response"
            else:
                what = "closed the connection in the middle of the response head"
        elif "too long" in low or "exceed" in low:
            what = f"sent a response head larger than {self._max_header_bytes} bytes"
        elif "_switch_upgrade" in low:
            what = "sent an unsolicited 101 Switching Protocols"
        else:
            what = "sent a malformed response head"
        return ProtocolError(f"{url.authority} {what} ({request.url}): {text}")

    async def _body(
        self,
        conn: _Conn,
        reader: BodyReader,
        first: bytes,
        url: URL,
        request: Request,
        hooks: _Hooks,
    ) -> None:
        """Stream the body into the consumer until its framing says it is complete."""
        feed = hooks.feed
        if first:
            try:
                pieces = reader.feed(first)
            except FramingError as exc:
                raise ProtocolError(
                    f"bad body from {url.authority} ({request.url}): {exc}"
                ) from exc
            for piece in pieces:
                await hooks.call(feed, piece)
        recv = conn.recv
        raw = conn.raw
        # Bytes read on the raw socket since the last checkpoint: a body that
        # is always ready would otherwise never yield nor see its deadline.
        unchecked = 0
        # SO_RCVLOWAT in force on the socket, and bytes read since the last wait.
        lowat = 1
        burst = 0
        sized = reader if raw is not None and type(reader) is ContentLengthReader else None
        while not reader.done:
            try:
                if raw is None:
                    data = await recv(BODY_READ)
                else:
                    # conn._recv_raw inlined (this is the hot loop).
                    try:
                        data = raw.recv(BODY_READ)
                    except BlockingIOError:
                        # Bulk Content-Length body: wake only once RCVLOWAT
                        # bytes (or the whole rest) are in (see RCVLOWAT).
                        if sized is not None and (lowat > 1 or burst >= RCVLOWAT_BURST):
                            want = min(sized.remaining, RCVLOWAT)
                            if want != lowat:
                                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                                conn.lowat = lowat = want
                        burst = 0
                        await trio.lowlevel.wait_readable(raw)
                        unchecked = 0
                        continue
                    burst += len(data)
                    unchecked += len(data)
                    if unchecked >= BODY_CHECKPOINT:
                        unchecked = 0
                        await trio.lowlevel.checkpoint()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ProtocolError(
                    f"connection to {url.authority} broke in the middle of the body "
                    f"({request.url}): {exc}"
                ) from exc
            try:
                if data:
                    pieces = reader.feed(data)
                else:
                    reader.feed_eof()
                    break
            except FramingError as exc:
                raise ProtocolError(
                    f"bad body from {url.authority} ({request.url}): {exc}"
                ) from exc
            for piece in pieces:
                # hooks.call() inlined: this is the hot loop.
                try:
                    result = feed(piece)
                    if result is not None and inspect.isawaitable(result):
                        await result  # an async consumer: backpressure
                except trio.Cancelled:
                    raise
                except BaseException as exc:
                    hooks.raised = exc
                    raise

    async def _drain(
        self, conn: _Conn, reader: BodyReader, first: bytes, url: URL, request: Request
    ) -> bool:
        """Read and drop what is left of a response the consumer won't read.

        True if that ended clean within ``DRAIN_LIMIT`` bytes (the connection
        can be reused), False if the connection should rather be closed.
        """
        if isinstance(reader, UntilCloseReader):
            return False
        budget = DRAIN_LIMIT
        try:
            reader.feed(first)
            while not reader.done and budget > 0:
                data = await conn.recv(min(BODY_READ, budget))
                if not data:
                    return False
                budget -= len(data)
                reader.feed(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, FramingError):
            return False
        return reader.done and not reader.trailing


async def fetch(
    url: str,
    consumer: Any,
    *,
    method: str = "GET",
    headers: HeadersLike | None = None,
    body: bytes | None = None,
    timeout: float | None = 30.0,
) -> Response:
    """One request through a short-lived ``Client`` (see ``Client.fetch``)."""
    async with Client(timeout=timeout, max_connections=1) as client:
        return await client.fetch(url, consumer, method=method, headers=headers, body=body)
