"""The offset interval arithmetic behind plain and precise readings (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._sample import OffsetEstimator, plain_sample

offsets = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
delays = st.floats(min_value=0.0, max_value=0.5)


def server_second(local: float, theta: float) -> int:
    """What a truncating server with offset ``theta`` sends when it reads at local ``local``."""
    return math.floor(local + theta)


@given(theta=offsets, start=st.floats(1e9, 2e9), d1=delays, d2=delays)
def test_plain_sample_brackets_the_truth(theta: float, start: float, d1: float, d2: float) -> None:
    read_at = start + d1
    end = read_at + d2
    sample = plain_sample("h", 37, server_second(read_at, theta), start, end)
    assert sample.local_time == pytest.approx((start + end) / 2)
    assert sample.rtt == pytest.approx(end - start)
    assert sample.offset == pytest.approx(sample.server_time - sample.local_time)
    assert abs(sample.offset - theta) <= sample.uncertainty + 1e-6


@given(
    theta=offsets,
    start=st.floats(1e9, 2e9),
    probes=st.lists(st.tuples(st.floats(0.0, 3.0), delays, delays), min_size=1, max_size=12),
)
def test_estimator_interval_always_contains_truth(
    theta: float, start: float, probes: list[tuple[float, float, float]]
) -> None:
    est = OffsetEstimator()
    now = start
    for gap, d1, d2 in probes:
        begin = now + gap
        read_at = begin + d1
        end = read_at + d2
        assert est.add(server_second(read_at, theta), begin, end)
        now = end
    assert est.readings == len(probes)
    assert est.restarts == 0
    assert est.lo - 1e-6 <= theta <= est.hi + 1e-6
    assert abs(est.offset - theta) <= est.uncertainty + 1e-6


@given(theta=st.floats(-1000, 1000), lead=st.floats(0.0, 0.01))
def test_bisection_converges_with_well_timed_probes(theta: float, lead: float) -> None:
    est = OffsetEstimator()
    now = 1_800_000_000.0
    est.add(server_second(now + lead, theta), now, now + 2 * lead)
    for _ in range(9):
        now = est.next_probe_at(now, lead, 0.1)
        read_at = now + lead
        est.add(server_second(read_at, theta), now, read_at + lead)
        now = read_at + lead
    assert est.uncertainty <= 0.01 + 2 * lead
    assert abs(est.offset - theta) <= est.uncertainty + 1e-6


def test_next_probe_respects_min_gap_and_aims_at_a_tick() -> None:
    est = OffsetEstimator()
    est.add(100, 1000.0, 1000.2)  # offset in [-900.2, -899.0]
    at = est.next_probe_at(1000.2, 0.05, 0.15)
    assert at >= 1000.2 + 0.15
    # The server read lands where local + middle offset is a whole second.
    assert (at + 0.05 + est.offset) % 1 == pytest.approx(0.0, abs=1e-6)


def test_contradicting_reading_restarts() -> None:
    est = OffsetEstimator()
    assert est.add(100, 0.0, 0.1)  # [99.9, 101]
    assert not est.add(500, 1.0, 1.1)  # the server's clock stepped
    assert est.restarts == 1
    assert est.lo == pytest.approx(498.9)
    assert est.hi == pytest.approx(500.0)
