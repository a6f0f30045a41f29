"""Transports: the only module of the requester that knows sockets.

A ``Transport`` is one connected byte stream with the few operations an
HTTP/1.1 exchange needs: ``send_all``, ``recv``, a synchronous ``close`` (no
cancellation can skip it), ``fit_for_reuse`` (the pool's check on an idle
connection) and ``ready_for_pool``. Three kinds:

* ``SocketTransport``: plain TCP, I/O straight on the non-blocking stdlib
  socket, waiting with ``trio.lowlevel.wait_readable``/``wait_writable`` only
  when a call would block. Trio's socket methods would yield to the scheduler
  on every call even when it completes at once (one scheduler pass and an
  epoll_wait per send and per recv); here the checkpoints are a budget kept
  in one place (``Transport.begin``, ``head_received`` and ``BODY_CHECKPOINT``),
  see bench/README.md for what that saves.
* ``TLSTransport``: TLS on a non-blocking ``ssl.SSLSocket`` over the same
  socket: handshake, decryption and encryption run in C (OpenSSL) without a
  Python pump per record, waiting on the file descriptor on
  ``SSLWantReadError``/``SSLWantWriteError``. A TCP FIN without a TLS
  close_notify is reported (``clean_eof`` false) so that a body delimited
  by the close is not taken as complete (RFC 9112 section 9.8).
* ``StreamTransport``: any ``trio.abc.Stream`` (in-memory tests).

``open_transport(plan)`` opens one: TCP to ``plan.host:plan.port`` (Happy
Eyeballs through ``trio.open_tcp_stream``), then the optional ``tunnel``
step on the raw connection (e.g. an HTTP CONNECT through a proxy), then TLS
with ``plan.tls``. The request target is decided by the caller, never here.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import trio

__all__ = [
    "BODY_CHECKPOINT",
    "RCVLOWAT",
    "TRANSPORT_ERRORS",
    "HandshakeError",
    "Listener",
    "SocketTransport",
    "StreamTransport",
    "TLSPlan",
    "TLSTransport",
    "Transport",
    "TransportPlan",
    "open_transport",
]

# What a transport raises when the connection breaks (ssl.SSLError is an OSError).
TRANSPORT_ERRORS: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

# Bytes read without waiting between two checkpoints: a body that is always
# ready would otherwise never yield nor see its deadline.
BODY_CHECKPOINT: Final = 1 << 20
# Plain-TCP Content-Length bodies: once a burst of RCVLOWAT_BURST bytes came in
# between two waits (the body flows in bulk, not dripping), each wait sets
# SO_RCVLOWAT to min(RCVLOWAT, bytes still missing), so epoll reports the
# socket readable only when that much is buffered (Linux honours it for TCP;
# EOF, RST and errors still wake it). The last wait asks for exactly the
# rest, so no wait can outlast the body; the mark goes back to 1 before the
# connection is pooled. A larger mark makes the server wait on us (see
# bench/README.md for the measurements behind 64 KiB).
RCVLOWAT: Final = 65536
RCVLOWAT_BURST: Final = 65536
# A send blocked on a peer that stops reading: how often (seconds) the wait
# for writability pauses to look for an answer the peer sent meanwhile
# (RFC 9112 section 9.5: "A client sending a message body SHOULD monitor
# the network connection for an error response"). Bounded waits, not a
# second task: one waiter per fd and direction, and no nursery per send.
SEND_WATCH: Final = 0.02
# How much one look at such an answer reads.
_WATCH_READ: Final = 65536
# The most one TLS record can hold: 16 KiB of data plus header, padding and tag.
_TLS_DATA: Final = 16384
_TLS_RECORD: Final = _TLS_DATA + 256
# A TLS idle check reads at most this many non-application records (session
# tickets, key updates) before it gives up on the connection.
_IDLE_RECORDS: Final = 8


class HandshakeError(Exception):
    """The TLS handshake failed; ``__cause__`` says why (certificate, protocol...)."""


@dataclass(frozen=True, slots=True)
class TLSPlan:
    """TLS to run on a connection: the context and the name to verify (and send as SNI)."""

    context: ssl.SSLContext
    server_hostname: str


@dataclass(frozen=True, slots=True)
class TransportPlan:
    """How to open a connection: TCP to ``host:port``, then ``tunnel``, then ``tls``.

    ``tunnel`` (optional) runs on the plain connection before TLS, e.g. a
    CONNECT through a proxy; it raises to refuse. ``tls`` None: plain TCP.
    """

    host: str
    port: int
    tls: TLSPlan | None = None
    tunnel: Callable[[Transport], Awaitable[None]] | None = None


class Listener(Protocol):
    """Who hears what the peer sends while a send is blocked (see ``Transport.send_all``).

    ``listening``: still wants those bytes. ``heard(data)`` gets them
    (``b""``: the peer closed) and returns True to stop sending.
    """

    listening: bool

    def heard(self, data: bytes) -> bool: ...


def _readable_now(fd: int) -> bool:
    """Whether the descriptor has something to read (or an EOF/error) right now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _IdleCheck:
    """``readable()``: whether a socket has something to read (or an EOF/error) now.

    One ``poll`` object per socket, made on the first check: the pool checks
    every idle connection it hands out, and making and registering a poller
    each time cost as much as the ``poll`` itself. Used only while the
    socket is open (the transport checks ``closed`` first).
    """

    __slots__ = ("_poller", "_watched")

    def __init__(self, sock: socket.socket) -> None:
        self._watched = sock
        self._poller: select.poll | None = None

    def readable(self) -> bool:
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._watched.fileno(), select.POLLIN)
        return bool(poller.poll(0))


class Transport:
    """One connected byte stream; subclasses do the I/O.

    ``recv(max_bytes, need)`` returns up to ``max_bytes`` bytes, ``b""`` at the
    end of the stream (``clean_eof`` then says whether the end was clean: a
    FIN on TCP, a close_notify on TLS); ``need`` is how many more bytes the
    framing certainly expects (0: unknown), a hint for SO_RCVLOWAT;
    ``recv_answer(max_bytes)`` is the same for the first read after a request
    (plain TCP waits before it reads there). I/O errors are ``TRANSPORT_ERRORS``.

    The checkpoint budget: an exchange calls ``begin()`` (a cancel point)
    before sending and ``head_received()`` (a schedule point unless some I/O
    already waited) once the head is in; reads that never wait checkpoint
    every ``BODY_CHECKPOINT`` bytes.
    """

    tls = False
    # Whether an idle connection on it can be checked (``fit_for_reuse``), so pooled.
    poolable = True

    def __init__(self) -> None:
        self.clean_eof = False
        self.closed = False
        self._waited = False

    async def begin(self) -> None:
        self._waited = False
        await trio.lowlevel.checkpoint_if_cancelled()

    async def head_received(self) -> None:
        if not self._waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_all(self, data: bytes, listener: Listener | None = None) -> bool:
        """Send all of ``data``; True once sent.

        With a ``listener``: whenever the send would block, bytes the peer
        sent meanwhile are read and given to ``listener.heard``; if it
        returns True the send stops there and this returns False (the
        rest of ``data`` unsent: the connection must not be reused).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        """What can be read without waiting: bytes, ``b""`` at the end, None if nothing."""
        return None  # pragma: no cover - only socket transports watch

    async def _answered(self, waitable: socket.socket, listener: Listener) -> bool:
        """Wait until ``waitable`` is writable (False) or ``listener`` says stop (True).

        Looks for the peer's bytes before each wait and every ``SEND_WATCH``
        seconds of it (a peer that stops reading may have answered).
        """
        fd = waitable.fileno()
        while listener.listening:
            data = self.recv_nowait(_WATCH_READ) if _readable_now(fd) else None
            if data is not None:
                if listener.heard(data) or not data:
                    return True
                continue  # there may be more
            with trio.move_on_after(SEND_WATCH):
                await trio.lowlevel.wait_writable(waitable)
                return False
        await trio.lowlevel.wait_writable(waitable)
        return False

    async def recv(self, max_bytes: int, need: int = 0) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    async def recv_answer(self, max_bytes: int) -> bytes:
        """The first read after a request went out: like ``recv``.

        A transport may wait before it reads here: the answer to a request
        just sent is rarely in yet, so a read first is mostly a wasted call.
        """
        return await self.recv(max_bytes)

    def fit_for_reuse(self) -> bool:
        """An idle connection may be reused only if nothing is waiting to be read."""
        return False

    def ready_for_pool(self) -> None:
        """Undo per-exchange socket settings before the connection waits idle."""

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class _LowWater:
    """The SO_RCVLOWAT rule (see RCVLOWAT), in one place for both socket transports.

    ``before_wait(need)`` sets the mark for the coming wait; ``read(n)``
    counts bytes read; ``reset()`` puts the mark back to 1 (before pooling).
    ``slack`` is how much of ``need`` may already sit in a layer above the
    socket (TLS: one partial record read by OpenSSL), so the mark never
    asks the kernel for bytes that will not come.
    """

    __slots__ = ("_burst", "_lowat", "_raw", "_slack")

    def __init__(self, sock: socket.socket, slack: int = 0) -> None:
        self._raw = sock
        self._slack = slack
        self._burst = 0  # bytes read since the last wait
        self._lowat = 1  # the mark in force

    def read(self, n: int) -> None:
        self._burst += n

    def before_wait(self, need: int) -> None:
        if not need:
            # Unknown (a drain, a chunked body): any byte may be the last, so
            # the kernel must wake us for one.
            if self._lowat != 1:
                self._set(1)
        elif self._lowat > 1 or self._burst >= RCVLOWAT_BURST:
            self._set(max(1, min(need - self._slack, RCVLOWAT)))
        self._burst = 0

    def reset(self) -> None:
        self._burst = 0
        if self._lowat != 1:
            self._set(1)

    def _set(self, want: int) -> None:
        if want != self._lowat:
            self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            self._lowat = want


class SocketTransport(Transport):
    """Plain TCP on a connected non-blocking stdlib socket."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        sock.setblocking(False)
        self.socket = sock
        self._unchecked = 0  # bytes read since the last checkpoint
        self._lowat = _LowWater(sock)
        self._idle = _IdleCheck(sock)

    async def send_all(self, data: bytes, listener: Listener | None = None) -> bool:
        sock = self.socket
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        total = len(data)
        if sent == total:
            return True
        with memoryview(data) as view:
            while sent < total:
                try:
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    self._waited = True
                    if listener is None:
                        await trio.lowlevel.wait_writable(sock)
                    elif await self._answered(sock, listener):
                        return False
        return True

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        try:
            data = self.socket.recv(max_bytes)
        except BlockingIOError:
            return None
        if not data:
            self.clean_eof = True
        return data

    async def recv(self, max_bytes: int, need: int = 0) -> bytes:
        try:
            data = self.socket.recv(max_bytes)
        except BlockingIOError:
            return await self._recv_waiting(max_bytes, need)
        if not data:
            self.clean_eof = True
        self._lowat.read(len(data))
        self._unchecked += len(data)
        if self._unchecked >= BODY_CHECKPOINT:
            self._unchecked = 0
            await trio.lowlevel.checkpoint()
        return data

    async def _recv_waiting(self, max_bytes: int, need: int = 0) -> bytes:
        sock = self.socket
        self._waited = True
        self._lowat.before_wait(need)
        self._unchecked = 0
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                continue
            if not data:
                self.clean_eof = True
            self._lowat.read(len(data))
            return data

    # The kernel's buffer is the only one on plain TCP: waiting first cannot
    # miss bytes (epoll reports what is already there at once), and it saves
    # the read that would fail, and its exception, on almost every request
    # (bench/README.md, "Issue 11, per-request CPU").
    recv_answer = _recv_waiting

    @property
    def rcvlowat(self) -> int:
        """The SO_RCVLOWAT now set on the socket (read from the kernel)."""
        return self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

    def fit_for_reuse(self) -> bool:
        if self.closed:
            return False
        try:
            return not self._idle.readable()
        except (OSError, ValueError):
            return False

    def ready_for_pool(self) -> None:
        self._lowat.reset()

    def detach(self) -> socket.socket:
        """Hand the socket over (to TLS); this transport no longer owns it."""
        self.closed = True
        return self.socket

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()


#: A TLS record header: content type (change_cipher_spec, alert, handshake,
#: application_data), the legacy version 3.x, the length (RFC 8446 section 5.1).
_RECORD_TYPES: Final = frozenset({20, 21, 22, 23})
_MAX_RECORD: Final = (1 << 14) + 256


def _whole_records(ssock: ssl.SSLSocket) -> bool:
    """Whether the bytes waiting under ``ssock`` are one or more whole TLS records.

    Peeks at the kernel's buffer through the plain socket's ``recv`` (the
    base class's method: it reads the descriptor, not the TLS layer); an
    EOF, anything that does not parse as records, or a record cut short is
    False.
    """
    try:
        raw = socket.socket.recv(ssock, 65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing there after all
    pos = 0
    while pos < len(raw):
        header = raw[pos : pos + 5]
        if len(header) < 5 or header[0] not in _RECORD_TYPES or header[1] != 3:
            return False
        length = int.from_bytes(header[3:5], "big")
        if length > _MAX_RECORD:
            return False
        pos += 5 + length
    return bool(raw) and pos == len(raw)


class TLSTransport(Transport):
    """TLS on a non-blocking ``ssl.SSLSocket``: every record is handled in C."""

    tls = True

    def __init__(self, ssock: ssl.SSLSocket) -> None:
        super().__init__()
        self.socket = ssock
        self._unchecked = 0
        # OpenSSL may hold one partial record of the body already (a record
        # carries at most 16 KiB of data plus its framing).
        self._lowat = _LowWater(ssock, slack=_TLS_RECORD)
        self._idle = _IdleCheck(ssock)

    @classmethod
    async def handshake(cls, sock: socket.socket, plan: TLSPlan) -> TLSTransport:
        """Run the TLS handshake on ``sock`` (which it then owns, also on failure).

        Raises ``HandshakeError`` (certificate, protocol) or a transport error.
        """
        try:
            ssock = plan.context.wrap_socket(
                sock,
                server_hostname=plan.server_hostname,
                do_handshake_on_connect=False,
                # A FIN without close_notify must be seen (RFC 9112 section 9.8).
                suppress_ragged_eofs=False,
            )
        except BaseException:
            trio.lowlevel.notify_closing(sock)
            sock.close()
            raise
        transport = cls(ssock)
        try:
            while True:
                try:
                    ssock.do_handshake()
                    return transport
                except ssl.SSLWantReadError:
                    await trio.lowlevel.wait_readable(ssock)
                except ssl.SSLWantWriteError:
                    await trio.lowlevel.wait_writable(ssock)
        except ssl.SSLError as exc:
            transport.close()
            raise HandshakeError(str(exc)) from exc
        except BaseException:
            transport.close()
            raise

    async def send_all(self, data: bytes, listener: Listener | None = None) -> bool:
        ssock = self.socket
        total = len(data)
        sent = 0
        with memoryview(data) as view:
            while sent < total:
                try:
                    # After SSLWantWrite OpenSSL must be given the same bytes
                    # again: ``sent`` has not moved, so it is. Reads in
                    # between (the listener's) are allowed by OpenSSL.
                    sent += ssock.send(view[sent:] if sent else view)
                except ssl.SSLWantWriteError:
                    self._waited = True
                    if listener is None:
                        await trio.lowlevel.wait_writable(ssock)
                    elif await self._answered(ssock, listener):
                        return False
                except ssl.SSLWantReadError:
                    self._waited = True
                    await trio.lowlevel.wait_readable(ssock)
        return True

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        try:
            data = self.socket.recv(min(max_bytes, _TLS_DATA))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except ssl.SSLEOFError:
            return b""  # a FIN without close_notify: not clean
        if not data:
            self.clean_eof = True
        return data

    async def recv(self, max_bytes: int, need: int = 0) -> bytes:
        ssock = self.socket
        # One call returns at most one record's data (16 KiB): asking for more
        # only makes CPython allocate a larger buffer and shrink it each time.
        size = min(max_bytes, _TLS_DATA)
        while True:
            try:
                data = ssock.recv(size)
                break
            except ssl.SSLWantReadError:
                self._waited = True
                self._unchecked = 0
                self._lowat.before_wait(need)
                await trio.lowlevel.wait_readable(ssock)
            except ssl.SSLWantWriteError:
                self._waited = True
                await trio.lowlevel.wait_writable(ssock)
            except ssl.SSLEOFError:
                # A TCP FIN (or reset) without close_notify: the end of the
                # stream, but not a clean one.
                return b""
        if not data:
            self.clean_eof = True  # close_notify
        self._lowat.read(len(data))
        self._unchecked += len(data)
        if self._unchecked >= BODY_CHECKPOINT:
            self._unchecked = 0
            await trio.lowlevel.checkpoint()
        return data

    # OpenSSL may already hold a record read with an earlier one: read first.
    recv_answer = recv

    def ready_for_pool(self) -> None:
        self._lowat.reset()

    def fit_for_reuse(self) -> bool:
        """No unread application data, no close_notify, no EOF.

        Post-handshake records (TLS 1.3 session tickets, key updates) make
        the socket readable too: they are read through the TLS layer, and
        the connection stays fit only if that yields no data and no EOF.
        What waits in the kernel must be whole records first (``_whole_records``):
        OpenSSL would swallow the start of a record still arriving and say
        "want read", hiding data the server pushed while we were idle.
        """
        if self.closed:
            return False
        ssock = self.socket
        try:
            if ssock.pending():
                return False
            for _ in range(_IDLE_RECORDS):
                if not self._idle.readable():
                    return True
                if not _whole_records(ssock):
                    return False
                try:
                    ssock.recv(1)
                except ssl.SSLWantReadError:
                    continue  # only non-application records were there
                return False  # application data, or b"" (close_notify)
        except (OSError, ValueError):
            return False
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()


class StreamTransport(Transport):
    """Any ``trio.abc.Stream``; every call is Trio's own (a checkpoint each).

    Never pooled (an idle stream cannot be checked without reading it).
    ``close`` is synchronous: it closes the stream's halves that can be
    closed so (trio's in-memory streams); the caller owns any other stream.
    """

    poolable = False

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__()
        self.stream = stream

    async def begin(self) -> None:
        self._waited = True
        await trio.lowlevel.checkpoint_if_cancelled()

    async def send_all(self, data: bytes, listener: Listener | None = None) -> bool:
        await self.stream.send_all(data)  # no descriptor to watch: the listener is not asked
        return True

    async def recv(self, max_bytes: int, need: int = 0) -> bytes:
        data = bytes(await self.stream.receive_some(max_bytes))
        if not data:
            self.clean_eof = True
        return data

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        stream = self.stream
        for part in (
            stream,
            getattr(stream, "send_stream", None),
            getattr(stream, "receive_stream", None),
        ):
            close = getattr(part, "close", None)
            if callable(close):
                close()


async def _open_tcp(host: str, port: int) -> trio.SocketStream:
    """``trio.open_tcp_stream``, but a cancellation comes out as one plain ``Cancelled``.

    Trio races the addresses of a name in a nursery of its own (Happy
    Eyeballs): a cancel from outside while two attempts run arrives as a
    group of ``Cancelled``, which a caller's ``except trio.Cancelled`` would
    miss. Cancellation wins over anything else the attempts raised.
    """
    try:
        return await trio.open_tcp_stream(host, port)
    except BaseExceptionGroup as group:
        cancelled, _ = group.split(trio.Cancelled)
        if cancelled is None:
            raise
        first: BaseException = cancelled
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def open_transport(plan: TransportPlan) -> Transport:
    """Connect as ``plan`` says; the caller owns the result (``close()`` it).

    Raises ``OSError`` (DNS, refused, unreachable), ``HandshakeError``, or
    whatever ``plan.tunnel`` raises. Nothing stays open on failure.
    """
    tcp = await _open_tcp(plan.host, plan.port)
    # Trio's public route to the stdlib socket: detach its descriptor (Trio
    # then forgets it) and wrap it; TCP_NODELAY, set by Trio, stays.
    trio_sock = tcp.socket
    family, kind, proto = trio_sock.family, trio_sock.type, trio_sock.proto
    sock = socket.socket(family, kind, proto, fileno=trio_sock.detach())
    plain = SocketTransport(sock)
    try:
        if plan.tunnel is not None:
            await plan.tunnel(plain)
        if plan.tls is None:
            return plain
        # From here the TLS transport owns the socket (and closes it on failure).
        return await TLSTransport.handshake(plain.detach(), plan.tls)
    except BaseException:
        plain.close()
        raise
