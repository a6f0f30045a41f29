"""Property tests of the RFC 868 codec (pure: no sockets, no Trio)."""

from __future__ import annotations

import calendar
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import TIME1970, TimeProtocolError, decode_time, encode_time
from trio_timehttp._rfc868 import ERA_SECONDS, MIN_NOW

# 68 years and a bit less than half an era: the range the era rule covers.
HALF_ERA = ERA_SECONDS // 2 - 1
ROLLOVER = ERA_SECONDS - TIME1970  # 2036-02-07 06:28:16 UTC as Unix seconds

nows = st.floats(min_value=MIN_NOW, max_value=MIN_NOW + 4 * ERA_SECONDS)


def test_constants() -> None:
    assert calendar.timegm((1900, 1, 1, 0, 0, 0)) == -TIME1970
    assert calendar.timegm((2036, 2, 7, 6, 28, 16)) == ROLLOVER


@given(now=nows, delta=st.integers(min_value=-HALF_ERA, max_value=HALF_ERA))
def test_round_trip_within_68_years_of_now(now: float, delta: int) -> None:
    t = math.floor(now) + delta
    assert decode_time(encode_time(t), now=now) == t


@given(t=st.floats(min_value=-TIME1970, max_value=2**40, allow_nan=False))
def test_encode_floors_and_wraps(t: float) -> None:
    data = encode_time(t)
    assert len(data) == 4
    assert int.from_bytes(data, "big") == (math.floor(t) + TIME1970) % ERA_SECONDS


@given(fraction=st.floats(min_value=0, max_value=0.999))
def test_fractional_seconds_truncate(fraction: float) -> None:
    assert decode_time(encode_time(1_800_000_000 + fraction), now=1_800_000_000) == 1_800_000_000


@pytest.mark.parametrize("step", [-2, -1, 0, 1, 2])
def test_2036_rollover(step: int) -> None:
    t = ROLLOVER + step
    data = encode_time(t)
    # Just after the rollover the counter restarts from 0.
    expected_value = (ROLLOVER + step + TIME1970) % ERA_SECONDS
    assert int.from_bytes(data, "big") == expected_value
    assert decode_time(data, now=ROLLOVER) == t
    assert decode_time(data, now=ROLLOVER - 86400) == t
    assert decode_time(data, now=ROLLOVER + 86400) == t


def test_zero_counter_is_the_rollover_instant_in_this_era() -> None:
    assert decode_time(b"\x00\x00\x00\x00") == ROLLOVER
    assert decode_time(b"\x00\x00\x00\x00", now=-TIME1970 + 100) == -TIME1970
    # 1970 is 70 years from 1900 but only 66 from 2036: era 1 is nearer.
    assert decode_time(b"\x00\x00\x00\x00", now=0) == ROLLOVER


def test_min_now_floor_when_clock_reset_to_1970(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine whose clock says 1970 still puts a 2040 reply into era 1.
    monkeypatch.setattr("trio_timehttp._rfc868.time.time", lambda: 0.0)
    t2040 = calendar.timegm((2040, 1, 1, 0, 0, 0))
    assert decode_time(encode_time(t2040)) == t2040
    # An explicit now is the caller's word, floor or not.
    assert decode_time(encode_time(t2040), now=0) == t2040 - ERA_SECONDS


@given(data=st.binary().filter(lambda b: len(b) != 4))
def test_wrong_lengths_raise(data: bytes) -> None:
    with pytest.raises(TimeProtocolError, match=str(len(data))):
        decode_time(data, now=MIN_NOW)


@given(data=st.binary(min_size=4, max_size=4), now=nows)
def test_any_4_bytes_decode_within_half_an_era(data: bytes, now: float) -> None:
    t = decode_time(data, now=now)
    assert abs(t - math.floor(now)) <= ERA_SECONDS // 2
    assert encode_time(t) == data
