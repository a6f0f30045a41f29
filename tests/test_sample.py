"""The offset interval arithmetic, the cut plan and the stop rule (pure).

The model of a server throughout: its clock is ours plus ``theta``; it reads
it at some instant between our ``start`` and ``end`` and truncates to the
second. Whatever the offsets, delays and tick phases, the proven interval
must hold ``theta`` - that is the one promise.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._sample import (
    Interval,
    OffsetEstimator,
    Reading,
    StopRule,
    plain_sample,
    plan_cuts,
    read_instant,
)

offsets = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
delays = st.floats(min_value=0.0, max_value=0.5)
EPS = 1e-6  # float rounding at 1e9 s magnitudes


def server_second(local: float, theta: float) -> int:
    """What a truncating server with offset ``theta`` sends when it reads at local ``local``."""
    return math.floor(local + theta)


def reading(theta: float, start: float, up: float, down: float, lag: float = 0.0) -> Reading:
    """A reading issued at ``start`` (``lag``: a later proven start, as TCP's SYN RTT)."""
    read_at = start + lag + up
    end = read_at + down
    return Reading(server_second(read_at, theta), start, start + lag, end, end - start)


@given(theta=offsets, start=st.floats(1e9, 2e9), up=delays, down=delays)
def test_plain_sample_is_centred_and_holds_the_truth(
    theta: float, start: float, up: float, down: float
) -> None:
    r = reading(theta, start, up, down)
    sample = plain_sample("h", 37, "udp", r)
    assert sample.offset == pytest.approx(r.second + 0.5 - (r.issued + r.end) / 2, abs=EPS)
    assert sample.uncertainty == pytest.approx((1 + r.end - r.issued) / 2, abs=EPS)
    assert sample.local_time == pytest.approx((r.issued + r.end) / 2, abs=EPS)
    assert sample.server_time == pytest.approx(sample.local_time + sample.offset, abs=EPS)
    assert (sample.protocol, sample.probes, sample.rtt) == ("udp", 1, r.rtt)
    assert abs(sample.offset - theta) <= sample.uncertainty + EPS


def test_plain_sample_by_hand() -> None:
    # Second 100 read between 1000.0 and 1000.2: offset in [-900.2, -899.0).
    sample = plain_sample("h", 37, "tcp", Reading(100, 1000.0, 1000.0, 1000.2, 0.2))
    assert sample.offset == pytest.approx(-899.6)
    assert sample.uncertainty == pytest.approx(0.6)


@given(
    theta=offsets,
    start=st.floats(1e9, 2e9),
    probes=st.lists(
        st.tuples(st.floats(0.0, 3.0), delays, delays, st.floats(0.0, 0.2)), min_size=1,
        max_size=20,
    ),
)  # fmt: skip
def test_intersection_always_contains_truth(
    theta: float, start: float, probes: list[tuple[float, float, float, float]]
) -> None:
    est = OffsetEstimator()
    now = start
    for gap, up, down, lag in probes:
        now += gap
        assert est.add(reading(theta, now, up, down, lag))
    assert len(est.readings) == len(probes)
    assert est.restarts == 0
    assert est.interval.lo - EPS <= theta <= est.interval.hi + EPS
    sample = est.sample("h", 37, "tcp")
    assert abs(sample.offset - theta) <= sample.uncertainty + EPS
    assert sample.probes == len(probes)
    assert sample.rtt == min(r.rtt for r in est.readings)


def test_contradicting_reading_restarts() -> None:
    est = OffsetEstimator()
    assert est.add(Reading(100, 0.0, 0.0, 0.1, 0.1))  # [99.9, 101)
    assert not est.add(Reading(500, 1.0, 1.0, 1.1, 0.1))  # the server's clock stepped
    assert est.restarts == 1
    assert est.interval == Interval(pytest.approx(498.9), pytest.approx(500.0))  # type: ignore[arg-type]
    assert len(est.readings) == 1


def test_interval_basics() -> None:
    a = Interval(1.0, 3.0)
    assert a.intersect(Interval(2.0, 5.0)) == Interval(2.0, 3.0)
    assert a.intersect(Interval(4.0, 5.0)) is None
    assert (a.mid, a.half_width, a.width) == (2.0, 1.0, 2.0)
    assert 1.0 in a
    assert 3.0 not in a  # half-open
    assert "2" not in a


@given(cut=st.floats(-1e5, 1e5), earliest=st.floats(1e9, 2e9))
def test_read_instant_is_the_next_tick_of_a_server_at_the_cut(cut: float, earliest: float) -> None:
    at = read_instant(cut, earliest)
    assert earliest - EPS <= at < earliest + 1 + EPS
    assert (at + cut) % 1 == pytest.approx(0, abs=1e-4) or (at + cut) % 1 == pytest.approx(
        1, abs=1e-4
    )


@given(
    lo=st.floats(-100, 100), width=st.floats(0.0001, 1.2), floor=st.floats(0, 0.3),
    count=st.integers(1, 12),
)  # fmt: skip
def test_cuts_are_inside_the_interval_and_ordered(
    lo: float, width: float, floor: float, count: int
) -> None:
    span = Interval(lo, lo + width)
    cuts = plan_cuts(span, floor, count)
    assert len(cuts) == count
    assert cuts == sorted(cuts)
    assert all(span.lo <= c <= span.hi for c in cuts)


def run_rounds(
    theta: float, up: float, down: float, rule: StopRule
) -> tuple[OffsetEstimator, int]:
    """Simulate precise mode's rounds with exact timing and fixed delays."""
    est = OffsetEstimator()
    now = 1_800_000_000.0
    est.add(reading(theta, now, up, down))
    rounds = 0
    before: float | None = None
    while not rule.done(est, rounds, before):
        before = est.interval.width
        cuts = plan_cuts(est.interval, est.floor, rule.round_size(est))
        now = est.readings[-1].end
        lead = est.lead
        for send in sorted(read_instant(c, now + lead) - lead for c in cuts):
            est.add(reading(theta, send, up, down))
        rounds += 1
    return est, rounds


@given(theta=st.floats(-1000, 1000), up=st.floats(0.00001, 0.2), down=st.floats(0.00001, 0.2))
def test_rounds_reach_the_limit_and_stay_correct(theta: float, up: float, down: float) -> None:
    rule = StopRule()
    est, rounds = run_rounds(theta, up, down, rule)
    assert est.interval.lo - EPS <= theta <= est.interval.hi + EPS
    rtt = up + down
    # The physical limit: about the round trip wide, whatever part went up.
    assert est.uncertainty <= 1.1 * rtt / 2 + 0.001
    assert rounds <= 3


def test_round_sizes() -> None:
    rule = StopRule()
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.08, 0.08))  # 80 ms: two rounds of 12 reach 1.07 x
    assert rule.round_size(est) == 12
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.0001, 0.0001))  # loopback: three rounds of ~9
    assert 8 <= rule.round_size(est) <= 10
    assert not rule.done(est, 0, None)
    assert rule.done(est, rule.max_rounds, None)


def test_stop_when_a_round_at_the_limit_gains_nothing() -> None:
    rule = StopRule()
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.05, 0.05))
    est.add(Reading(100, 0.9925, 0.9925, 1.0425, 0.05))  # [99.95, 100.0075)
    width = est.interval.width
    assert width == pytest.approx(0.0575)  # floor 0.05: near the limit, not within it
    assert not rule.done(est, 1, None)
    assert rule.done(est, 2, width)  # the last round gained nothing
    assert not rule.done(est, 2, width + 0.05)  # it gained a lot: go on
