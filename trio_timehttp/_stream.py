"""The pull side of an exchange: a response body read by the caller, piece by piece.

``Client.stream`` opens an exchange, hands the caller a ``Response`` whose
``aiter_bytes()`` pulls from a ``BodyStream``, and, when the block ends,
asks the stream to ``finish``: drain what is left within a small bound (so
the connection may be reused) or give up (the connection is then closed).
No background task: every read happens in the caller's own ``async for``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from ._exchange import Decoder, Exchange

__all__ = ["BodyStream"]


class BodyStream:
    """The body of one pulled response; readable once."""

    __slots__ = ("_decoder", "_ex", "_started")

    def __init__(self, ex: Exchange, decoder: Decoder | None) -> None:
        self._ex = ex
        self._decoder = decoder
        self._started = False

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive (decoded when a decoder is set). Raises
        ``RuntimeError`` on a second read, ``ProtocolError`` for a bad body."""
        if self._started:
            raise RuntimeError("the response body was already read")
        self._started = True
        return _Pieces(self._ex, self._decoder)

    @property
    def complete(self) -> bool:
        return self._ex.complete

    async def finish(self) -> bool:
        """Called when the caller is done: True if the connection ended clean
        (body read, or the rest drained within the exchange's bound)."""
        if self._ex.complete:
            return True
        return await self._ex.drain()


class _Pieces:
    """The async iterator over one body (an object, so an abandoned loop needs no cleanup)."""

    __slots__ = ("_decoder", "_ex", "_flushed", "_ready")

    def __init__(self, ex: Exchange, decoder: Decoder | None) -> None:
        self._ex = ex
        self._decoder = decoder
        # The pieces of the last read, decoded lazily: a decoder yields bounded
        # pieces one at a time, so a compressed read never expands all at once.
        self._ready: Iterator[bytes] = iter(())
        self._flushed = False

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        ex, decoder = self._ex, self._decoder
        while True:
            for piece in self._ready:
                if piece:
                    return piece
            if ex.complete:
                if decoder is not None and not self._flushed:
                    self._flushed = True
                    self._ready = iter(decoder.flush())
                    continue
                raise StopAsyncIteration
            pieces = await ex.receive_pieces()
            if decoder is None:
                self._ready = iter(pieces)
            else:
                self._ready = (out for piece in pieces for out in decoder.decode(piece))
