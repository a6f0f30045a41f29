"""The sans-IO content decoders: every coding fed whole, one byte at a time and
with trailing data; round trips for all inputs (hypothesis); corrupt and
truncated streams; and decompression bombs stopped with memory flat."""

from __future__ import annotations

import gzip
import itertools
import os
import zlib
from collections.abc import Callable, Iterator

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_timehttp import BodyTooLarge, ProtocolError
from trio_timehttp._decoding import (
    CHUNK_SIZE,
    MAX_CODINGS,
    BodyDecoder,
    DecodeLimits,
    accept_encoding,
    parse_codings,
    supported_codings,
)

MiB = 1 << 20
TEXT = b"".join(b"line %d of a body that compresses like text\n" % i for i in range(5000))


def raw_deflate(data: bytes) -> bytes:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "raw-deflate": raw_deflate,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def header(name: str) -> str:
    return "deflate" if name == "raw-deflate" else name


def decode(
    coding: str, data: bytes, *, split: int | None = None, limits: DecodeLimits | None = None
) -> bytes:
    """Feed ``data`` whole or in pieces of ``split`` bytes, then finish; every piece checked."""
    decoder = BodyDecoder(coding, limits)
    out = bytearray()
    step = (len(data) or 1) if split is None else split
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        for chunk in decoder.decode(piece):
            assert isinstance(chunk, bytes)
            assert 0 < len(chunk) <= CHUNK_SIZE
            out += chunk
    for chunk in decoder.flush():
        assert 0 < len(chunk) <= CHUNK_SIZE
        out += chunk
    assert decoder.decoded_bytes == len(out)
    assert decoder.encoded_bytes == len(data)
    return bytes(out)


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("split", [None, 1, 7, 4096])
def test_each_coding_whole_and_in_pieces(name: str, split: int | None) -> None:
    body = TEXT if split != 1 else TEXT[:3000]
    assert decode(header(name), ENCODERS[name](body), split=split) == body


@pytest.mark.parametrize("name", ["gzip", "deflate", "raw-deflate", "zstd"])
@pytest.mark.parametrize("split", [None, 1])
def test_trailing_garbage_after_a_complete_stream_is_ignored(name: str, split: int | None) -> None:
    encoded = ENCODERS[name](b"hello world")
    decoder = BodyDecoder(header(name))
    step = split or len(encoded) + 9
    data = encoded + b"\x00garbage"
    out = b"".join(
        c for i in range(0, len(data), step) for c in decoder.decode(data[i : i + step])
    )
    out += b"".join(decoder.flush())
    assert out == b"hello world"
    assert decoder.ignored_bytes == 8


@pytest.mark.parametrize("split", [None, 1])
def test_br_trailing_garbage_is_an_error(split: int | None) -> None:
    """Brotli cannot say where its stream ended inside one call: an error either way."""
    data = brotli.compress(b"hello world") + b"garbage"
    with pytest.raises(ProtocolError, match="br"):
        decode("br", data, split=split)


@pytest.mark.parametrize("split", [None, 1, 5])
def test_several_gzip_members_and_zstd_frames(split: int | None) -> None:
    members = gzip.compress(b"one ") + gzip.compress(b"two")
    assert decode("gzip", members, split=split) == b"one two"
    z = zstandard.ZstdCompressor().compress
    assert decode("zstd", z(b"one ") + z(b"two"), split=split) == b"one two"


@pytest.mark.parametrize("split", [None, 1])
def test_a_lone_byte_after_a_member_is_trailing_data(split: int | None) -> None:
    assert decode("gzip", gzip.compress(b"x") + b"\x1f", split=split) == b"x"
    z = zstandard.ZstdCompressor().compress(b"x")
    assert decode("zstd", z + b"\x28\xb5", split=split) == b"x"


@pytest.mark.parametrize("split", [None, 1, 3])
def test_stacked_codings_are_undone_in_reverse(split: int | None) -> None:
    """``Content-Encoding: gzip, br``: gzip was applied first, so br is undone first."""
    data = brotli.compress(gzip.compress(TEXT))
    assert decode("gzip, br", data, split=split) == TEXT
    data = gzip.compress(zstandard.ZstdCompressor().compress(zlib.compress(TEXT)))
    assert decode("deflate, zstd, gzip", data, split=split) == TEXT


@pytest.mark.parametrize("value", ["", "identity", " Identity , ", ", ,"])
def test_identity_is_a_passthrough(value: str) -> None:
    assert decode(value, b"as is") == b"as is"
    assert decode(value, b"as is", split=1) == b"as is"
    assert decode(value, b"") == b""


def test_codings_are_case_insensitive() -> None:
    assert parse_codings("GZip, identity, BR") == ["gzip", "br"]
    assert decode("GZIP", gzip.compress(b"x")) == b"x"


@pytest.mark.parametrize("value", ["compress", "gzip, lzma", "bzip2", "gzip;q=1"])
def test_unknown_codings_are_protocol_errors(value: str) -> None:
    with pytest.raises(ProtocolError, match="unsupported Content-Encoding"):
        BodyDecoder(value)


def test_too_many_codings() -> None:
    BodyDecoder(", ".join(["gzip"] * MAX_CODINGS))
    with pytest.raises(ProtocolError, match="too many"):
        BodyDecoder(", ".join(["gzip"] * (MAX_CODINGS + 1)))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_empty_body_decodes_to_nothing(name: str) -> None:
    assert decode(header(name), b"") == b""


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("split", [None, 1])
def test_truncated_streams_are_protocol_errors(name: str, split: int | None) -> None:
    encoded = ENCODERS[name](TEXT[:2000])
    for cut in (1, len(encoded) // 2, len(encoded) - 1):
        with pytest.raises(ProtocolError, match=r"truncated|corrupt"):
            decode(header(name), encoded[:cut], split=split)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_corrupt_streams_are_protocol_errors(name: str) -> None:
    encoded = bytearray(ENCODERS[name](TEXT[:2000]))
    for i in range(10, len(encoded) - 8, 5):
        encoded[i] ^= 0x55
    with pytest.raises(ProtocolError, match=r"corrupt|truncated"):
        decode(header(name), bytes(encoded))


def test_gzip_with_a_bad_crc_is_corrupt() -> None:
    encoded = bytearray(gzip.compress(TEXT))
    encoded[-8] ^= 1
    with pytest.raises(ProtocolError, match="corrupt gzip"):
        decode("gzip", bytes(encoded))


def test_not_compressed_at_all() -> None:
    for name in ("gzip", "deflate", "zstd", "br"):
        with pytest.raises(ProtocolError):
            decode(name, b"<html>plain text sent with a lying header</html>")


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=5000),
    name=st.sampled_from(list(ENCODERS)),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=8),
)
def test_round_trip_for_any_body_and_any_split(body: bytes, name: str, cuts: list[int]) -> None:
    encoded = ENCODERS[name](body)
    bounds = sorted({0, len(encoded), *(c for c in cuts if c < len(encoded))})
    decoder = BodyDecoder(header(name))
    out = bytearray()
    for a, b in itertools.pairwise(bounds):
        for chunk in decoder.decode(encoded[a:b]):
            out += chunk
    for chunk in decoder.flush():
        out += chunk
    assert out == body


@settings(max_examples=30, deadline=None)
@given(body=st.binary(min_size=1, max_size=3000), chunk=st.integers(min_value=1, max_value=512))
def test_no_piece_is_longer_than_the_chunk_size(body: bytes, chunk: int) -> None:
    for name in ("gzip", "br", "zstd"):
        decoder = BodyDecoder(header(name), chunk_size=chunk)
        pieces = [*decoder.decode(ENCODERS[name](body * 20)), *decoder.flush()]
        assert all(0 < len(p) <= chunk for p in pieces)
        assert b"".join(pieces) == body * 20


def test_accept_encoding_lists_what_is_installed() -> None:
    assert supported_codings() == ("gzip", "deflate", "br", "zstd")
    assert accept_encoding() == "gzip, deflate, br, zstd"


# --------------------------------------------------------------------------
# Bombs


def rss() -> int:
    """Resident set size now (not the peak), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gzip_bomb(mib: int) -> bytes:
    """A gzip stream of ``mib`` MiB of zeros (~1 KiB per MiB), built without holding them.

    Every MiB after the first ends in a full flush, so it compresses to the
    same bytes: the bomb is those bytes repeated, with a correct trailer.
    """
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    first = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    segment = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    assert co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH) == segment
    body = first + segment * (mib - 3) + co.compress(zeros) + co.flush()
    crc = 0
    for _ in range(mib - 1):
        crc = zlib.crc32(zeros, crc)
    return body[:-8] + crc.to_bytes(4, "little") + ((mib - 1) * MiB % 2**32).to_bytes(4, "little")


def streamed(compress: Callable[[bytes], bytes], flush: Callable[[], bytes], mib: int) -> bytes:
    zeros = bytes(MiB)
    return b"".join(compress(zeros) for _ in range(mib)) + flush()


def feed_all(decoder: BodyDecoder, data: bytes, step: int = 65536) -> Iterator[int]:
    for i in range(0, len(data), step):
        for piece in decoder.decode(data[i : i + step]):
            yield len(piece)
    for piece in decoder.flush():
        yield len(piece)


def test_gzip_bomb_of_10_gib_is_stopped_with_memory_flat() -> None:
    bomb = gzip_bomb(10 * 1024)  # 10 GiB of zeros
    assert len(bomb) < 12 * MiB
    before = rss()
    decoder = BodyDecoder("gzip")  # default limits: ratio 200 beyond 8 MiB
    with pytest.raises(BodyTooLarge, match="decompression bomb"):
        for _ in feed_all(decoder, bomb):
            pass
    # The ratio counts every encoded byte fed so far: one 64 KiB read may
    # come out as up to 200 x 64 KiB before the bound trips.
    assert decoder.decoded_bytes <= 200 * 65536 + CHUNK_SIZE
    assert rss() - before < 32 * MiB


def test_max_decoded_size_stops_before_the_piece_that_would_cross_it() -> None:
    decoder = BodyDecoder("gzip", DecodeLimits(max_size=100_000, max_ratio=None))
    sizes: list[int] = []
    with pytest.raises(BodyTooLarge, match="max_decoded_size"):
        sizes.extend(feed_all(decoder, gzip.compress(bytes(MiB))))
    seen = sum(sizes)
    assert seen <= 100_000
    assert decoder.decoded_bytes == seen
    assert decode("gzip", gzip.compress(bytes(100_000)), limits=DecodeLimits(100_000)) == bytes(
        100_000
    )


def test_ratio_applies_only_beyond_the_floor() -> None:
    """1 MiB of zeros is ~1000:1 but small: fine; the same ratio beyond the floor is not."""
    assert len(decode("gzip", gzip.compress(bytes(MiB)))) == MiB
    with pytest.raises(BodyTooLarge):
        decode("gzip", gzip.compress(bytes(MiB)), limits=DecodeLimits(ratio_floor=MiB // 2))
    assert len(decode("gzip", gzip_bomb(20), limits=DecodeLimits(max_ratio=None))) == 19 * MiB


@pytest.mark.parametrize("name", ["gzip", "br", "zstd"])
def test_unbounded_decoding_of_a_1_gib_bomb_keeps_memory_flat(name: str) -> None:
    """With both bounds off the whole GiB comes out, in pieces, with memory flat."""
    if name == "gzip":
        bomb = gzip_bomb(1025)
    elif name == "br":
        c = brotli.Compressor(quality=1)
        bomb = streamed(c.process, c.finish, 1024)
    else:
        z = zstandard.ZstdCompressor().compressobj()
        bomb = streamed(z.compress, z.flush, 1024)
    before = rss()
    decoder = BodyDecoder(name, DecodeLimits(max_ratio=None))
    total = 0
    peak = 0
    for i, n in enumerate(feed_all(decoder, bomb)):
        total += n
        if i % 1024 == 0:
            peak = max(peak, rss() - before)
    assert total == 1024 * MiB
    assert peak < 32 * MiB, peak
