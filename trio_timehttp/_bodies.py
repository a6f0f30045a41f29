"""Request bodies: every kind of content a caller may send, behind one small interface.

``request_body(body)`` turns what the caller passed as ``body=`` into a
``RequestBody``: ``length`` (``int``, or ``None`` when only sending it will
tell, which means chunked transfer coding on the wire), ``replayable``
(whether it can be sent again, for a 307/308 redirect or a retry), ``await
read()`` for the next chunk (``b""`` at the end), ``rewind()`` before a
resend and ``await aclose()`` when the exchange is over.

=====================================  =========  ==========  ==========================
body                                   length     replayable  read from
=====================================  =========  ==========  ==========================
``bytes``, ``bytearray``, memoryview   len        yes         memory (snapshot, one piece)
``list``/``tuple`` of bytes            sum        yes         memory, piece by piece
other sync iterable of bytes           None       no          ``next()`` in this task
async iterable of bytes                None       no          ``anext()``
regular file, ``BytesIO`` (seekable)   size-pos   yes         ``read(256 KiB)`` in this task
pipe, FIFO, socket, tty file           None       no          ``read(256 KiB)`` in a thread
file with ``async def read``           None       no          ``await read(256 KiB)``
=====================================  =========  ==========  ==========================

Why regular files are read in the calling task and not in a thread: a 256 KiB
read of a regular file is a copy out of the page cache (~10-40 us, see
bench/README.md "File reads"), far less than a thread hop costs; this is the
same choice as ``FileConsumer``'s writes. A pipe or FIFO can block for ever,
so those reads go to ``trio.to_thread`` (abandoned on cancellation, so the
deadline holds). A sync iterable is iterated in this task too: it must not
block (use an async iterable for anything that waits).

Errors: ``str`` (or a text file) is a ``TypeError`` up front — text has no
bytes until it is encoded; a chunk that is not bytes-like is a ``TypeError``
when it is read; a body whose size was announced (a file, or a caller's
``Content-Length`` via ``expect_length``) that ends early or runs long is a
``ValueError`` (the request would be mis-framed). Exceptions raised by the
caller's own iterator propagate unchanged.
"""

from __future__ import annotations

import inspect
import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

import trio

__all__ = ["CHUNK_SIZE", "LAST_CHUNK", "RequestBody", "encode_chunk", "request_body"]

# File bodies are read this much at a time; chunks from iterables go out as given.
# Measured (bench/README.md "Request bodies"): a 256 MiB file PUT to a local
# sink took 0.18-0.24 s with 64 KiB reads, 0.10-0.14 s with 256 KiB, 0.11-0.13 s
# with 1 MiB: each read-and-send costs a trip through the event loop.
CHUNK_SIZE: Final = 262144
# Chunks up to this size are copied into one send with their framing; larger
# ones are sent as they are (a copy costs more than a syscall beyond ~32 KiB).
COPY_LIMIT: Final = 32768
# RFC 9112 section 7.1: last-chunk (size 0) and an empty trailer section.
LAST_CHUNK: Final = b"0\r\n\r\n"


def encode_chunk(data: bytes) -> bytes:
    """One chunk of the chunked transfer coding (RFC 9112 section 7.1).

    An empty ``data`` gives ``b""``: a zero-size chunk would end the body.
    """
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"a request body chunk must be bytes, not {type(chunk).__name__}")


class RequestBody:
    """A request body being sent: ``length``, ``replayable``, ``read``, ``rewind``, ``aclose``.

    Subclasses produce chunks in ``_next``; this class counts them and holds
    a known ``length`` to its word.
    """

    replayable = False

    def __init__(self, length: int | None) -> None:
        self.length = length
        self.sent = 0
        self._written = False

    def expect_length(self, length: int) -> None:
        """Hold the body to ``length`` (a caller's Content-Length); ``ValueError`` on a clash."""
        if self.length is not None and self.length != length:
            raise ValueError(f"Content-Length {length} but the body has {self.length} bytes")
        self.length = length

    async def read(self) -> bytes:
        """The next non-empty chunk, or ``b""`` once the body has ended."""
        chunk = await self._next()
        self.sent += len(chunk)
        if self.length is not None:
            if self.sent > self.length:
                raise ValueError(f"request body is longer than its length ({self.length} bytes)")
            if not chunk and self.sent < self.length:
                raise ValueError(
                    f"request body ended after {self.sent} of {self.length} bytes"
                    " (was the file truncated while it was sent?)"
                )
        return chunk

    async def _next(self) -> bytes:
        raise NotImplementedError

    async def write(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send the whole body with ``send``: as is when ``length`` is known, else chunked.

        A second ``write`` (a retry, a 307/308) starts from the beginning, or
        raises ``ValueError`` for a body that cannot be replayed — it is never
        sent again empty. Each chunk is sent before the next is read
        (``send`` returns once the kernel took it: backpressure).
        """
        if self._written:
            self.rewind()
        self._written = True
        if self.length is not None:
            while chunk := await self.read():
                await send(chunk)
            return
        # Chunked: a large chunk goes out as it is, between its size line
        # and the CRLF that ends it (sent with the next size line), instead
        # of being copied into one buffer with them: a 1 GiB chunked upload
        # spent more time copying than sending (bench/README.md).
        ending = b""
        while chunk := await self.read():
            head = b"%b%x\r\n" % (ending, len(chunk))
            if len(chunk) <= COPY_LIMIT:
                await send(head + chunk)
            else:
                await send(head)
                await send(chunk)
            ending = b"\r\n"
        await send(ending + LAST_CHUNK)

    @property
    def used(self) -> bool:
        """Whether ``write`` has begun sending this body."""
        return self._written

    def rewind(self) -> None:
        """Start again from the beginning; ``ValueError`` if the body cannot be replayed."""
        if not self.replayable:
            raise ValueError("this request body cannot be sent twice")
        self.sent = 0
        self._rewind()

    def _rewind(self) -> None:
        pass

    async def aclose(self) -> None:
        """Close an async generator body; a caller's file stays open (it is the caller's)."""


class _Bytes(RequestBody):
    replayable = True

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self._data = data
        self._done = False

    async def _next(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        return self._data

    def _rewind(self) -> None:
        self._done = False


class _Sequence(RequestBody):
    replayable = True

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(sum(len(c) for c in chunks))
        self._chunks = [c for c in chunks if c]
        self._i = 0

    async def _next(self) -> bytes:
        if self._i == len(self._chunks):
            return b""
        self._i += 1
        return self._chunks[self._i - 1]

    def _rewind(self) -> None:
        self._i = 0


class _Iterator(RequestBody):
    def __init__(self, iterable: Iterable[Any]) -> None:
        super().__init__(None)
        self._it: Iterator[Any] = iter(iterable)

    async def _next(self) -> bytes:
        await trio.lowlevel.checkpoint()  # a long iterator still lets other tasks run
        for chunk in self._it:
            data = _as_bytes(chunk)
            if data:
                return data
        return b""


class _AsyncIterator(RequestBody):
    def __init__(self, iterable: AsyncIterable[Any]) -> None:
        super().__init__(None)
        self._it: AsyncIterator[Any] = aiter(iterable)

    async def _next(self) -> bytes:
        async for chunk in self._it:
            data = _as_bytes(chunk)
            if data:
                return data
        return b""

    async def aclose(self) -> None:
        close = getattr(self._it, "aclose", None)
        if close is not None:
            await close()


class _File(RequestBody):
    """A binary file object read ``CHUNK_SIZE`` at a time (see the module docstring)."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self._threaded = False
        self._async = inspect.iscoroutinefunction(getattr(file, "read", None))
        self._start: int | None = None
        length = None if self._async else self._measure()
        super().__init__(length)
        self.replayable = self._start is not None

    def _measure(self) -> int | None:
        """Bytes from here to the end for a regular or in-memory file; None for a stream."""
        try:
            mode = os.fstat(self._file.fileno()).st_mode
        except (AttributeError, OSError, io.UnsupportedOperation):
            mode = None  # no descriptor: an in-memory or custom file object
        if mode is not None and not stat.S_ISREG(mode):
            self._threaded = True  # a pipe, FIFO, socket or tty: reads can block
            return None
        try:
            if not self._file.seekable():
                return None
            start = self._file.tell()
            end = self._file.seek(0, os.SEEK_END)
            self._file.seek(start)
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None
        self._start = start
        return max(0, int(end) - int(start))

    async def _next(self) -> bytes:
        size = CHUNK_SIZE
        if self.length is not None:
            size = min(size, self.length - self.sent)
            if size <= 0:
                return b""  # a file that grew while it was sent: its announced size counts
        if self._async:
            chunk = await self._file.read(size)
        elif self._threaded:
            chunk = await trio.to_thread.run_sync(self._file.read, size, abandon_on_cancel=True)
        else:
            await trio.lowlevel.checkpoint()
            chunk = self._file.read(size)
        if isinstance(chunk, str):
            raise TypeError("a request body file must be opened in binary mode ('rb')")
        return _as_bytes(chunk) if chunk is not None else b""

    def _rewind(self) -> None:
        self._file.seek(self._start)


def request_body(body: object) -> RequestBody | None:
    """The ``RequestBody`` for a ``body=`` argument (``None`` for no body); see the table above.

    Raises ``TypeError`` for ``str``, a text-mode file, or anything that is
    neither bytes, a file, nor an (async) iterable.
    """
    if body is None:
        return None
    if isinstance(body, bytes):
        return _Bytes(body)
    if isinstance(body, bytearray | memoryview):
        return _Bytes(bytes(body))  # a snapshot: replays send the same bytes
    if isinstance(body, str):
        raise TypeError(
            "body must be bytes, an iterable of bytes or a binary file, not str:"
            " encode it first, e.g. body=text.encode()"
        )
    if isinstance(body, io.TextIOBase):
        raise TypeError("a request body file must be opened in binary mode ('rb')")
    if hasattr(body, "read"):
        return _File(body)
    if isinstance(body, list | tuple):
        return _Sequence([_as_bytes(c) for c in body])
    if isinstance(body, AsyncIterable):
        return _AsyncIterator(body)
    if isinstance(body, Iterable):
        return _Iterator(body)
    raise TypeError(f"unsupported request body type {type(body).__name__}")
