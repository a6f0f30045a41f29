"""Incremental, bounded content decoding (pure): gzip, deflate, br, zstd.

``BodyDecoder(content_encoding)`` turns the body bytes a server sent with
``Content-Encoding`` into the representation it encoded. Codings are listed in
the order they were applied (RFC 9110 section 8.4), so they are undone in
reverse: ``Content-Encoding: gzip, br`` is brotli-decoded first, then gunzipped.

The decoder is driven like the framing readers: ``decode(data)`` and, once the
body has ended, ``flush()``; each returns an *iterator* of decoded pieces,
which the caller exhausts (awaiting its consumer between pieces) before it
feeds more. That is what keeps memory flat whatever the input: no piece is
longer than ``chunk_size`` and no stage ever holds more than about one
``chunk_size`` of input and one of output, because every decompressor is
driven with an output bound (zlib's ``max_length``, brotli's
``output_buffer_limit``; see ``_ZstdStage`` for zstd's, which is coarser).

Bounds (``DecodeLimits``) stop a decompression bomb with ``BodyTooLarge``
before the offending piece is handed out:

- ``max_size``: decoded bytes in all (``None``: no bound);
- ``max_ratio``: decoded bytes per encoded byte, checked once more than
  ``ratio_floor`` bytes were decoded (a small body may compress a thousand to
  one legitimately; a large one at that ratio is a bomb). gzip and deflate top
  out near 1032:1, br and zstd go far beyond; real text is 3-20:1.

Errors: a coding we cannot decode (``compress``, a typo, or ``br`` without the
``brotli`` package) is a ``ProtocolError`` when the decoder is made — the
caller asked for decoded content, so raw bytes handed to its consumer would be
a silent lie. Corrupt input, and input that ends before the compressed stream
does (a truncated gzip body: zlib's ``eof`` still false), are ``ProtocolError``
too. Bytes *after* the end of a complete stream are ignored and counted in
``ignored_bytes``, as browsers, curl and urllib3 do; a gzip or zstd body may
hold several members/frames back to back (RFC 1952 section 2.2), decoded in
turn. An empty body decodes to nothing without error (servers send empty
"gzip" bodies for 204-like answers).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ._errors import BodyTooLarge, ProtocolError
from ._models import Response

__all__ = [
    "CHUNK_SIZE",
    "MAX_CODINGS",
    "BodyDecoder",
    "DecodeLimits",
    "accept_encoding",
    "decoder_for",
    "parse_codings",
    "supported_codings",
]

try:  # optional: pip install trio-timehttp[brotli]
    import brotli as _brotli  # type: ignore[import-untyped]

    # Only brotli >= 1.2 bounds its output (output_buffer_limit; the fix for
    # CVE-2025-6176). An older one could turn one feed into gigabytes, so we
    # neither advertise nor decode br with it.
    _HAS_BR = hasattr(_brotli.Decompressor(), "can_accept_more_data")
except ImportError:  # pragma: no cover - the test environment has brotli
    _HAS_BR = False

try:  # optional: pip install trio-timehttp[zstd]
    import zstandard as _zstd

    _HAS_ZSTD = True
except ImportError:  # pragma: no cover - the test environment has zstandard
    _HAS_ZSTD = False

# No decoded piece is longer than this, and no stage is fed more than this at
# once: 64 KiB, the size of a socket read's worth of consumer work.
CHUNK_SIZE: Final = 65536
# More stacked codings than this is an attack, not a representation (urllib3
# caps at 5 after CVE-2023-45803's sibling reports; real servers send one).
MAX_CODINGS: Final = 4
# zstandard's decompressobj has no output bound, so it is fed this many input
# bytes per call: a zstd block header of 4 bytes can describe an RLE block of
# 128 KiB, so one call yields at most ~32768 x this = 8 MiB even for a bomb.
# What the small steps cost is measured in bench/README.md ("Request bodies
# and content decoding").
ZSTD_STEP: Final = 256

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on decoded output; exceeding one raises ``BodyTooLarge``.

    Defaults: no total bound (``max_size=None``), at most 200 decoded bytes
    per encoded byte once more than 8 MiB were decoded. ``None`` turns a
    bound off.
    """

    max_size: int | None = None
    max_ratio: float | None = 200.0
    ratio_floor: int = 8 << 20


def supported_codings() -> tuple[str, ...]:
    """The content codings this installation decodes, in preference order."""
    codings = ["gzip", "deflate"]
    if _HAS_BR:
        codings.append("br")
    if _HAS_ZSTD:
        codings.append("zstd")
    return tuple(codings)


def accept_encoding() -> str:
    """The ``Accept-Encoding`` value to send: ``"gzip, deflate"`` plus br / zstd when installed."""
    return ", ".join(supported_codings())


class _Stage(Protocol):
    """One decompressor: bytes in (``push``), bounded bytes out (``pull``)."""

    def push(self, data: bytes) -> None: ...

    def pull(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes; ``b""`` when it needs more input (or is finished)."""
        ...

    def finish(self) -> None:
        """Raise ``ProtocolError`` if the stream it got so far is incomplete."""
        ...

    ignored: int


class _ZlibStage:
    """gzip (several members allowed), zlib-wrapped or raw deflate, via ``zlib``.

    ``deflate`` is RFC 9110's zlib format, but some servers send raw deflate
    (RFC 1951) under that name; browsers accept both, and so do we, choosing
    by whether the first two bytes form a valid zlib header (RFC 1950 section
    2.2: CM = 8 and the 16-bit header a multiple of 31).
    """

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._obj: Any = None  # None: between streams (before the first, after one ended)
        self._streams = 0  # complete streams (gzip members) so far
        self._pending = b""
        self._more = False  # the last call filled its limit: zlib may hold more output
        self._seen = False
        self._ended = False  # trailing bytes after the last stream: drop the rest
        self.ignored = 0

    def push(self, data: bytes) -> None:
        if data:
            self._seen = True
            self._pending = self._pending + data if self._pending else data

    def _start(self) -> bool:
        """Begin the next stream from ``_pending``; False while that can't be told yet."""
        p = self._pending
        if self._ended:
            self.ignored += len(p)
            self._pending = b""
            return False
        if self._streams == 0 and self._coding == "deflate":
            if len(p) < 2:
                return False
            zlib_header = p[0] & 0x0F == 8 and (p[0] << 8 | p[1]) % 31 == 0
            self._obj = zlib.decompressobj(15 if zlib_header else -15)
            return True
        if self._streams == 0 or (self._coding == "gzip" and p[:2] == _GZIP_MAGIC):
            if not p:
                return False
            self._obj = zlib.decompressobj(31)
            return True
        if self._coding == "gzip" and len(p) < 2 and _GZIP_MAGIC.startswith(p):
            return False  # perhaps the start of another member
        self._ended = True
        self.ignored += len(p)
        self._pending = b""
        return False

    def pull(self, limit: int) -> bytes:
        while True:
            if self._obj is None and not self._start():
                return b""
            if not self._pending and not self._more:
                return b""
            try:
                out: bytes = self._obj.decompress(self._pending, limit)
            except zlib.error as exc:
                raise ProtocolError(f"corrupt {self._coding} body: {exc}") from exc
            self._more = len(out) == limit
            if self._obj.eof:
                self._pending = self._obj.unused_data
                self._obj = None
                self._streams += 1
                self._more = False
            else:
                self._pending = self._obj.unconsumed_tail
            if out:
                return out

    def finish(self) -> None:
        if not self._seen:
            return
        if self._streams == 0 or self._obj is not None:
            raise ProtocolError(
                f"truncated {self._coding} body: the compressed stream did not end"
            )
        self.ignored += len(self._pending)  # a lone byte that could have begun a member
        self._pending = b""


class _BrotliStage:
    """br via ``brotli`` >= 1.2, whose ``output_buffer_limit`` bounds each call.

    Brotli cannot say where its stream ended inside one call (it fails on the
    whole input), so unlike gzip, bytes after a br stream are an error, fed
    whole or byte by byte alike.
    """

    def __init__(self) -> None:
        self._obj = _brotli.Decompressor()
        self._pending = b""
        self._out = b""
        self._more = False
        self._seen = False
        self.ignored = 0

    def push(self, data: bytes) -> None:
        if data:
            self._seen = True
            self._pending = self._pending + data if self._pending else data

    def pull(self, limit: int) -> bytes:
        try:
            while not self._out:
                # After a call that produced output, brotli may hold more even
                # when it could accept input again: ask with empty input first.
                if self._more or not self._obj.can_accept_more_data():
                    self._out = self._obj.process(b"", output_buffer_limit=limit)
                    self._more = bool(self._out)
                    if self._out:
                        break
                if not self._pending:
                    break
                if self._obj.is_finished():
                    raise ProtocolError("corrupt br body: data after the end of the stream")
                data, self._pending = self._pending, b""
                self._out = self._obj.process(data, output_buffer_limit=limit)
                self._more = bool(self._out)
        except _brotli.error as exc:
            raise ProtocolError(f"corrupt br body: {exc}") from exc
        # "The output buffer will not grow once its size equals or exceeds
        # that value": it may overshoot a little, so it goes out in slices.
        out, self._out = self._out[:limit], self._out[limit:]
        return out

    def finish(self) -> None:
        if self._seen and not self._obj.is_finished():
            raise ProtocolError("truncated br body: the compressed stream did not end")


class _ZstdStage:
    """zstd via ``zstandard``: several frames allowed, fed ``ZSTD_STEP`` bytes per call."""

    def __init__(self) -> None:
        self._obj: Any = None  # None: between frames
        self._frames = 0
        self._pending = b""
        self._out = b""
        self._seen = False
        self._ended = False
        self.ignored = 0

    def push(self, data: bytes) -> None:
        if data:
            self._seen = True
            self._pending = self._pending + data if self._pending else data

    def _start(self) -> bool:
        p = self._pending
        if not self._ended and (self._frames == 0 or p[:4] == _ZSTD_MAGIC):
            if not p:
                return False
            self._obj = _zstd.ZstdDecompressor().decompressobj()
            return True
        if not self._ended and len(p) < 4 and _ZSTD_MAGIC.startswith(p):
            return False  # perhaps the start of another frame
        self._ended = True
        self.ignored += len(p)
        self._pending = b""
        return False

    def pull(self, limit: int) -> bytes:
        while not self._out:
            if self._obj is None and not self._start():
                break
            if not self._pending:
                break
            step, self._pending = self._pending[:ZSTD_STEP], self._pending[ZSTD_STEP:]
            try:
                self._out = self._obj.decompress(step)
            except _zstd.ZstdError as exc:
                raise ProtocolError(f"corrupt zstd body: {exc}") from exc
            if self._obj.eof:
                self._pending = self._obj.unused_data + self._pending
                self._obj = None
                self._frames += 1
        out, self._out = self._out[:limit], self._out[limit:]
        return out

    def finish(self) -> None:
        if not self._seen:
            return
        if self._frames == 0 or self._obj is not None:
            raise ProtocolError("truncated zstd body: the compressed stream did not end")
        self.ignored += len(self._pending)
        self._pending = b""


def _stage(coding: str) -> _Stage:
    if coding in ("gzip", "x-gzip"):
        return _ZlibStage("gzip")
    if coding == "deflate":
        return _ZlibStage("deflate")
    if coding == "br" and _HAS_BR:
        return _BrotliStage()
    if coding == "zstd" and _HAS_ZSTD:
        return _ZstdStage()
    hint = {
        "br": " (pip install trio-timehttp[brotli])",
        "zstd": " (pip install trio-timehttp[zstd])",
    }
    raise ProtocolError(f"unsupported Content-Encoding {coding!r}{hint.get(coding, '')}")


def parse_codings(content_encoding: str) -> list[str]:
    """The codings named by a ``Content-Encoding`` value, lower-case, ``identity`` dropped."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    return [c for c in codings if c and c != "identity"]


class BodyDecoder:
    """Decodes one body sent with ``Content-Encoding: content_encoding``, within ``limits``.

    Raises ``ProtocolError`` at once for an unsupported coding or more than
    ``MAX_CODINGS`` of them. ``identity`` (or an empty value) is a passthrough
    that still counts bytes and applies ``limits.max_size``. ``decoded_bytes``
    and ``encoded_bytes`` count what went through so far.
    """

    def __init__(
        self,
        content_encoding: str,
        limits: DecodeLimits | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        codings = parse_codings(content_encoding)
        if len(codings) > MAX_CODINGS:
            raise ProtocolError(f"too many content codings ({len(codings)}): {content_encoding!r}")
        # Applied first is listed first, so it is undone last.
        self._stages = [_stage(c) for c in reversed(codings)]
        self.limits = limits if limits is not None else DecodeLimits()
        self.chunk_size = chunk_size
        self.encoded_bytes = 0
        self.decoded_bytes = 0

    @property
    def ignored_bytes(self) -> int:
        """Bytes dropped after the end of a complete compressed stream, in all stages."""
        return sum(s.ignored for s in self._stages)

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces ``data`` completes; exhaust it before feeding more.

        Raises (while iterated) ``ProtocolError`` for corrupt input and
        ``BodyTooLarge`` before a piece that would break a bound.
        """
        self.encoded_bytes += len(data)
        if not self._stages:
            if data:
                self._account(data)
                yield data
            return
        self._stages[0].push(data)
        yield from self._drain()

    def flush(self) -> Iterator[bytes]:
        """The last pieces once the body ended; ``ProtocolError`` if the stream was cut short."""
        yield from self._drain()
        for stage in self._stages:
            stage.finish()

    def _drain(self) -> Iterator[bytes]:
        last = len(self._stages) - 1
        if last < 0:
            return
        while True:
            out = self._pull(last, self.chunk_size)
            if not out:
                return
            self._account(out)
            yield out

    def _pull(self, i: int, limit: int) -> bytes:
        """Up to ``limit`` bytes out of stage ``i``, refilling it from stage ``i - 1``."""
        stage = self._stages[i]
        while True:
            out = stage.pull(limit)
            if out or i == 0:
                return out
            upstream = self._pull(i - 1, self.chunk_size)
            if not upstream:
                return b""
            stage.push(upstream)

    def _account(self, piece: bytes) -> None:
        total = self.decoded_bytes + len(piece)
        limits = self.limits
        if limits.max_size is not None and total > limits.max_size:
            raise BodyTooLarge(f"decoded body over max_decoded_size ({limits.max_size} bytes)")
        if (
            limits.max_ratio is not None
            and self._stages
            and total > limits.ratio_floor
            and total > limits.max_ratio * max(self.encoded_bytes, 1)
        ):
            raise BodyTooLarge(
                f"decoded body over {limits.max_ratio:g} times its encoded size "
                f"({total} from {self.encoded_bytes} bytes): a decompression bomb?"
            )
        self.decoded_bytes = total


def decoder_for(response: Response, limits: DecodeLimits | None) -> BodyDecoder | None:
    """The content decoder for ``response``'s body: None when decoding is off
    (``limits`` None), for HEAD, 204 and 304 (no body), or when no coding is named.

    Raises ``ProtocolError`` for a coding we cannot decode.
    """
    if limits is None or response.request.method == "HEAD":
        return None
    if response.status_code in (204, 304):
        return None
    coding = response.headers.get("content-encoding")
    if not coding or not parse_codings(coding):
        return None
    return BodyDecoder(coding, limits)
