"""RFC 868 (Time Protocol) codec: pure, no I/O, no Trio.

The wire format is one 32-bit big-endian unsigned integer: whole seconds since
1900-01-01 00:00:00 UTC. It wraps on 2036-02-07 06:28:16 UTC (era 1 starts),
so a decoder must choose the era; we take the one that puts the result closest
to a reference ``now``, which is right as long as the two clocks are within
68 years of each other.

Sign convention used everywhere in this package: ``offset = server - local``
(what rdate prints, and what you add to the local clock to match the server).
The seed's ``adjust_time(delta)`` received the opposite, ``local - server``.
"""

from __future__ import annotations

import math
import struct
import time

from ._errors import TimeProtocolError

__all__ = ["ERA_SECONDS", "MIN_NOW", "TIME1970", "decode_time", "encode_time"]

#: Seconds from 1900-01-01 to 1970-01-01 (RFC 868's "2,208,988,800").
TIME1970 = 2208988800

#: Length of one era of the 32-bit counter, in seconds.
ERA_SECONDS = 1 << 32

#: A floor for the reference clock when the caller gives none: 2026-01-01 UTC.
#: A machine whose clock was reset to 1970 (dead RTC battery, fresh VM) would
#: otherwise put a post-2036 reply into era 0 and be off by 136 years. With the
#: floor, any reply is decoded within 68 years of 2026 or later.
MIN_NOW = 1767225600.0

_PACK = struct.Struct(">I")


def encode_time(unix_time: float) -> bytes:
    """Encode Unix seconds as the 4 bytes an RFC 868 server sends.

    The result is the whole seconds since 1900-01-01 UTC (``unix_time`` is
    floored, as real servers truncate, then ``TIME1970`` is added), modulo
    2**32, big-endian: so it keeps working after the counter wraps on
    2036-02-07 06:28:16 UTC (``decode_time`` picks the era back). Pure: no
    clock, no I/O. Raises ``ValueError`` for a NaN and ``OverflowError`` for
    an infinite ``unix_time`` (from ``math.floor``).
    """
    seconds = math.floor(unix_time) + TIME1970
    return _PACK.pack(seconds % ERA_SECONDS)


def decode_time(data: bytes, *, now: float | None = None) -> int:
    """Decode exactly 4 bytes into Unix seconds, in the era closest to ``now``.

    ``data`` is an RFC 868 reply: whole seconds since 1900-01-01 UTC,
    32-bit big-endian. That counter wraps every 2**32 seconds (about 136
    years), so the result is the candidate closest to ``now`` (Unix
    seconds; ties go to the later era). ``now`` (default ``None``): the
    local clock, but never earlier than 2026-01-01 UTC, so a machine whose
    clock was reset to 1970 still decodes a reply from after 2036 right.
    Returns whole Unix seconds (negative before 1970). Raises
    ``TimeProtocolError`` unless ``data`` is exactly 4 bytes long (take the
    first 4 of a longer reply yourself).
    """
    if len(data) != 4:
        raise TimeProtocolError(f"an RFC 868 time is 4 bytes, got {len(data)}")
    if now is None:
        now = max(time.time(), MIN_NOW)
    value: int = _PACK.unpack(data)[0]
    # Reference point in seconds-since-1900; choose k so that
    # value + k * 2**32 is nearest to it (ties go to the later era).
    reference = math.floor(now) + TIME1970
    era = (reference - value + ERA_SECONDS // 2) // ERA_SECONDS
    return value + era * ERA_SECONDS - TIME1970
