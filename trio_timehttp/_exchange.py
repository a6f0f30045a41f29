"""One HTTP/1.1 exchange on one connection, in named phases.

``Exchange`` runs, in order: ``send_request`` (head, then the body source),
``receive_head`` (through a ``HeadReader``), then either ``stream_body``
(push into a consumer, through an optional ``Decoder``) or
``receive_pieces`` (pull, one read at a time) or ``drain``, and finally
``release``: the connection goes back to the pool only when the exchange
provably ended clean (framing complete, no bytes beyond it, both sides
willing to keep the connection, the request fully sent); every other path
closes it. There is no background task: everything runs in the caller's.

Transport errors become ours in one place, ``Exchange._broken``; a reused
connection that broke before it received a single byte raises
``StaleConnection`` (a ``ProtocolError``), which is how the caller knows a
retry on a fresh connection is safe for an idempotent request.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

import trio

from ._errors import ProtocolError
from ._framing import BodyReader, ContentLengthReader, FramingError, UntilCloseReader, body_reader
from ._headreader import Head, HeadError, HeadMemo, HeadReader
from ._models import Response
from ._pool import Connection, Pool
from ._prepare import BodySource, Prepared
from ._timing import ExchangeTimes
from ._transport import TRANSPORT_ERRORS

__all__ = [
    "BODY_READ",
    "DRAIN_LIMIT",
    "HEAD_READ",
    "Decoder",
    "Exchange",
    "Hooks",
    "StaleConnection",
]

log = logging.getLogger("trio_timehttp.http")

# Socket read sizes. Head reads are bounded so that the head cap is checked
# at least every HEAD_READ bytes; body reads are large because each read
# costs a trip through the event loop (bench/README.md has the measurements).
HEAD_READ: Final = 65536
BODY_READ: Final = 262144
# When a consumer's http_header() returns the next Request, the rest of the
# current response is read and dropped if that costs at most DRAIN_LIMIT
# bytes (so the connection can be reused); otherwise the connection is closed.
DRAIN_LIMIT: Final = 65536
# Expect: 100-continue: how long the body waits for the server's 100 before it
# is sent anyway (RFC 9110 section 10.1.1 lets a client stop waiting; curl's
# --expect100-timeout default is 1 s: a server that ignores Expect is common).
CONTINUE_WAIT: Final = 1.0


class _SendFailed(Exception):
    """The socket failed while the body was sent (the cause is the transport's error)."""


class _Answered(Exception):
    """The server answered while the body was sent and does not want the rest."""


class StaleConnection(ProtocolError):
    """A reused connection broke before any byte of the response: safe to retry once."""


class Decoder(Protocol):
    """Transforms body pieces before the consumer sees them (content decoding).

    ``decode(data)`` yields the decoded pieces ``data`` completes, each of
    bounded size (so memory stays flat whatever the compression ratio; the
    consumer is awaited between pieces); ``flush()`` the rest once the body
    is complete. Each is exhausted before the next call. They raise
    ``ProtocolError`` (or ``BodyTooLarge``) for bad input.
    """

    def decode(self, data: bytes) -> Iterable[bytes]: ...

    def flush(self) -> Iterable[bytes]: ...


class Hooks:
    """A consumer's methods, looked up once, and which exception came from it."""

    __slots__ = ("close", "complete", "consumer", "error", "feed", "header", "raised")

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.header: Callable[[Response], Any] | None = getattr(consumer, "http_header", None)
        self.error: Callable[[BaseException], Any] | None = getattr(consumer, "http_error", None)
        self.complete: Callable[[], Any] | None = getattr(consumer, "http_complete", None)
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
        except BaseException as exc:
            # A Cancelled recorded here is harmless: it is no TimeHTTPError,
            # so it propagates whether or not it is recorded.
            self.raised = exc
            raise
        return result


class Exchange:
    """One request and its response on ``conn``; see the module docstring for the phases."""

    __slots__ = (
        "_early",
        "_early_eof",
        "_early_error",
        "_first",
        "_heads",
        "_memo",
        "_send_error",
        "_times",
        "body_held",
        "complete",
        "conn",
        "cut_short",
        "head",
        "listening",
        "peer",
        "prepared",
        "reader",
        "received",
        "reusable",
    )

    def __init__(
        self, conn: Connection, prepared: Prepared, memo: HeadMemo, times: ExchangeTimes | None
    ) -> None:
        self.conn = conn
        self.prepared = prepared
        self._memo = memo
        self._times = times
        self._send_error: BaseException | None = None
        self._first = b""  # body bytes that came with the head
        self.received = 0
        self.head: Head | None = None
        self.reader: BodyReader | None = None
        self.reusable = False
        self.complete = False  # the body's framing proved it complete
        # Expect: 100-continue: what came back while the body was held.
        self._heads: HeadReader | None = None
        self._early: Head | None = None  # a final answer instead of 100
        self._early_eof = False
        self._early_error: HeadError | None = None
        self.body_held = False  # the body was never sent (the answer came first)
        # The Listener side (see _transport.Listener): while the request is
        # sent, a blocked send reads what the server says; a final answer of
        # 300 or more stops the upload (RFC 9112 section 9.5).
        self.listening = True
        self.cut_short = False  # the request was not sent whole: never reuse
        self.peer: str | None = None  # who answers, when not the origin (a forward proxy)

    # ----------------------------------------------------------------- errors

    def _broken(self, phase: str, exc: BaseException | None = None) -> ProtocolError:
        """The one place a transport failure becomes ours (``StaleConnection`` when retryable)."""
        p = self.prepared
        detail = f": {exc}" if exc is not None else ""
        stale = self.conn.reused and self.received == 0
        cls = StaleConnection if stale else ProtocolError
        return cls(f"connection to {p.url.authority} broke {phase} ({p.request.url}){detail}")

    def _bad(self, what: str, *, stale: bool = False) -> ProtocolError:
        """The server did something wrong: ``what`` says what."""
        p = self.prepared
        cls = StaleConnection if stale else ProtocolError
        return cls(f"{self.peer or p.url.authority} {what} ({p.request.url})")

    # ----------------------------------------------------------------- phases

    async def send_request(self) -> None:
        """Send the head and the body. A send failure is kept, not raised: the
        server may have answered and closed while we sent (RFC 9112 section 9.5),
        and that response is read next."""
        transport = self.conn.transport
        times = self._times
        await transport.begin()
        if times is not None:
            times.reused = self.conn.reused
            if self.conn.reused:
                times.start = time.time()
        body = self.prepared.body
        try:
            if not await transport.send_all(self.prepared.head, self):
                self._answered_early()
                return
            held = body is not None and self._expects_continue(body)
            if held and not await self._await_continue():
                log.debug("%s answered before 100 Continue: body not sent", self.prepared.url)
                self.body_held = True
                return
        except TRANSPORT_ERRORS as exc:
            self._sending_failed(exc)
            return
        if body is not None:
            # Outside the transport-error handler: the body's own errors
            # (an OSError from a file, too) propagate unchanged.
            try:
                await body.write(self._send_body)
            except _SendFailed as exc:
                self._sending_failed(exc.__cause__)
                return
            except _Answered:
                self._answered_early()
                return
        if times is not None:
            times.sent = time.time()

    def heard(self, data: bytes) -> bool:
        """Bytes the server sent while a send was blocked (``b""``: it closed).

        Fed to the head reader ``receive_head`` will continue. True (stop
        sending) for the close, a malformed head, or a final status of 300
        or more: the server does not want the rest. A 2xx: keep sending and
        stop listening (its body is read once the request is sent).
        """
        self.received += len(data)
        if not self._feed_early(data):
            return False
        if self._early is None:
            return True  # the close, or a malformed head
        self.listening = False
        return self._early.status >= 300

    def _feed_early(self, data: bytes) -> bool:
        """Feed bytes heard before ``receive_head`` to its head reader (made on first use).

        True once there is something to act on: the close (``_early_eof``), a
        malformed head (``_early_error``) or a final answer (``_early``).
        """
        if self._heads is None:
            self._heads = HeadReader(self._memo)
        if not data:
            self._early_eof = True
            return True
        try:
            self._early = self._heads.feed(data)
        except HeadError as exc:
            self._early_error = exc
            return True
        return self._early is not None

    def _answered_early(self) -> None:
        log.debug("%s answered while the request was sent: sending stopped", self.prepared.url)
        self.cut_short = True

    def _sending_failed(self, exc: BaseException | None) -> None:
        log.debug("sending to %s failed (%s); reading any response", self.prepared.url, exc)
        self._send_error = exc

    async def _send_body(self, data: bytes) -> None:
        """Send body bytes, telling a send failure apart from the body's own errors.

        A body source's exceptions (a caller's iterator, a file's ``OSError``)
        propagate unchanged and end the exchange; only the socket's own
        failures mean "the server may have answered: read it".
        """
        try:
            sent = await self.conn.transport.send_all(data, self if self.listening else None)
        except TRANSPORT_ERRORS as exc:
            raise _SendFailed from exc
        if not sent:
            raise _Answered

    def _expects_continue(self, body: BodySource) -> bool:
        expect = self.prepared.request.headers.get("expect") or ""
        return body.length != 0 and expect.strip().lower() == "100-continue"

    async def _await_continue(self) -> bool:
        """Wait for 100 Continue, at most ``CONTINUE_WAIT`` s: True to send the body now.

        False when the final answer (or the close) came first: then the body
        is never sent and the connection is not reused (RFC 9110 section
        10.1.1: the server may still be waiting for a body we did not send).
        What was read stays in the head reader for ``receive_head``.
        """
        reader = self._heads = self._heads or HeadReader(self._memo)
        with trio.move_on_after(CONTINUE_WAIT):
            while reader.informational == 0:
                data = await self.conn.transport.recv(HEAD_READ)
                self.received += len(data)
                if self._feed_early(data):
                    return False
        return True

    async def receive_head(self) -> Head:
        """Read the final response head (skipping 1xx), checked by the head reader."""
        hit = None
        if self._heads is None:
            # Nothing was heard while the request went out (the common case):
            # a head seen before is found by its bytes, without a reader.
            try:
                data = await self.conn.transport.recv_answer(HEAD_READ)
            except TRANSPORT_ERRORS as exc:
                raise self._no_head(exc) from exc
            self.received += len(data)
            hit = self._memo.match(data)
            if hit is None:
                hit = await self._read_head(data)
        else:
            hit = await self._read_head(None)
        head, self._first = hit
        await self.conn.transport.head_received()
        if self._times is not None:
            self._times.head = time.time()
        self.head = head
        self.reader = reader = self._body_reader(head)
        # RFC 9112 section 9.3: HTTP/1.1 defaults to persistent connections;
        # "close" from either side (section 9.6) ends the connection.
        self.reusable = (
            reader.reusable
            and head.persistent
            and not self.prepared.closes
            and self._send_error is None
            and not self.body_held
            and not self.cut_short
        )
        return head

    async def _read_head(self, data: bytes | None) -> tuple[Head, bytes]:
        """The head through a ``HeadReader``: 1xx, heads in pieces, what was heard
        while sending. ``data``: the first read, already made (None: none yet)."""
        transport = self.conn.transport
        reader = self._heads or HeadReader(self._memo)
        head = self._early
        try:
            if self._early_error is not None:
                raise self._early_error
            if self._early_eof:
                reader.feed_eof()
            while head is None:
                if data is None:
                    data = await transport.recv(HEAD_READ)
                    self.received += len(data)
                if not data:
                    reader.feed_eof()
                head = reader.feed(data)
                data = None
        except TRANSPORT_ERRORS as exc:
            raise self._no_head(exc) from exc
        except HeadError as exc:
            if self.received == 0:
                raise self._no_head(exc) from exc
            raise self._bad(str(exc)) from exc
        return head, reader.rest

    def _no_head(self, exc: BaseException) -> ProtocolError:
        """Nothing usable came back: say so (the send failure first, if any)."""
        if self._send_error is not None:
            return self._broken("while sending the request", self._send_error)
        if isinstance(exc, HeadError):
            # The server closed before a byte (received == 0 here): on a reused
            # connection that is the keep-alive race, safe to retry.
            return self._bad(str(exc), stale=self.conn.reused)
        return self._broken("before the response was complete", exc)

    def _body_reader(self, head: Head) -> BodyReader:
        method = self.prepared.request.method
        if head.length is not None and method != "HEAD":
            return ContentLengthReader(head.length)
        try:
            return body_reader(method, head.status, head.raw_headers)
        except FramingError as exc:
            raise self._bad(f"sent a bad response: {exc}") from exc

    def response(self, history: list[Response]) -> Response:
        """The ``Response`` for the head received, keeping the request head sent as bytes."""
        head = self.head
        if head is None:  # pragma: no cover - a phase-order bug, not a peer's doing
            raise RuntimeError("response() before receive_head()")
        prepared = self.prepared
        request = prepared.request
        return Response(
            url=request.url,
            request=request,
            status_code=head.status,
            reason=head.reason,
            http_version=head.http_version,
            headers=head.headers,
            history=history,
            _sent_head=prepared.head,
        )

    async def receive_pieces(self) -> Sequence[bytes]:
        """The body pieces of one read (possibly none); ``complete`` once the body ended."""
        reader = self.reader
        if reader is None:
            return ()
        if self._first:
            return self.first_pieces()
        if reader.done:
            self.complete = True
            return ()
        need = reader.remaining if type(reader) is ContentLengthReader else 0
        try:
            data = await self.conn.transport.recv(BODY_READ, need)
        except TRANSPORT_ERRORS as exc:
            raise self._broken("in the middle of the body", exc) from exc
        return self._framed(reader, data)

    def first_pieces(self) -> Sequence[bytes]:
        """The body pieces that came with the head (no I/O; ``()`` if none)."""
        data = self._first
        if not data or self.reader is None:
            return ()
        self._first = b""  # fed even to a finished reader: it keeps them as ``trailing``
        return self._framed(self.reader, data)

    def _framed(self, reader: BodyReader, data: bytes) -> Sequence[bytes]:
        """``data`` (``b""``: the end of the stream) through the body's framing."""
        try:
            if data:
                pieces = reader.feed(data)
            else:
                reader.feed_eof()
                pieces = ()
                if type(reader) is UntilCloseReader and not self.conn.transport.clean_eof:
                    raise self._bad(
                        "closed the connection without a TLS close_notify: a body delimited "
                        "by the close may be truncated"
                    )
        except FramingError as exc:
            raise self._bad(f"sent a bad body: {exc}") from exc
        if reader.done:
            self.complete = True
        return pieces

    async def stream_body(self, hooks: Hooks, decoder: Decoder | None = None) -> None:
        """Push the whole body into the consumer's ``feed`` (through ``decoder``)."""
        feed = hooks.feed
        pieces = self.first_pieces()  # a small body often came whole with the head
        while True:
            for piece in pieces:
                if decoder is not None:
                    for out in decoder.decode(piece):
                        await hooks.call(feed, out)
                    continue
                # Hooks.call inlined: this is the hot loop.
                try:
                    result = feed(piece)
                    if result is not None and inspect.isawaitable(result):
                        await result  # an async consumer: backpressure
                except BaseException as exc:
                    hooks.raised = exc
                    raise
            if self.complete:
                break
            pieces = await self.receive_pieces()
        if decoder is not None:
            for out in decoder.flush():
                await hooks.call(feed, out)

    async def drain(self) -> bool:
        """Read and drop the rest of a response nobody will read.

        True if it ended clean within ``DRAIN_LIMIT`` bytes (the connection
        may be reused), False if the connection should rather be closed.
        """
        reader = self.reader
        if reader is None or isinstance(reader, UntilCloseReader):
            return False
        budget = DRAIN_LIMIT
        try:
            reader.feed(self._first)
            while not reader.done and budget > 0:
                need = reader.remaining if type(reader) is ContentLengthReader else 0
                data = await self.conn.transport.recv(min(BODY_READ, budget), need)
                if not data:
                    return False
                budget -= len(data)
                reader.feed(data)
        except (*TRANSPORT_ERRORS, FramingError):
            return False
        return reader.done and not reader.trailing

    def release(self, pool: Pool, clean: bool) -> None:
        """Pool the connection if ``clean`` and the exchange allows reuse; else close it."""
        reader = self.reader
        if clean and self.reusable and reader is not None and reader.done and not reader.trailing:
            pool.put(self.conn)
            return
        if reader is not None and reader.trailing:
            log.debug("bytes beyond the framing from %s: connection not reused", self.prepared.url)
        self.conn.close()
