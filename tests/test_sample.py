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
    read_instants,
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


@given(
    lo=st.floats(-1e5, 1e5), width=st.floats(0, 0.999), count=st.integers(1, 12),
    earliest=st.floats(1e9, 2e9),
)  # fmt: skip
def test_read_instants_are_one_tick_of_servers_at_the_cuts(
    lo: float, width: float, count: int, earliest: float
) -> None:
    cuts = [lo + width * k / count for k in range(count)]
    instants = read_instants(cuts, earliest)
    assert all(at >= earliest - EPS for at in instants)
    assert max(instants) - min(instants) <= width + EPS  # one pass of the tick
    assert max(instants) < earliest + 1 + width + EPS
    for at, cut in zip(instants, cuts, strict=True):
        frac = (at + cut) % 1
        assert min(frac, 1 - frac) == pytest.approx(0, abs=1e-4)
    assert read_instants([], earliest) == []


@given(
    lo=st.floats(-100, 100), width=st.floats(0.0001, 1.2), floor=st.floats(0, 0.3),
    count=st.integers(1, 12), least=st.floats(0, 0.01),
)  # fmt: skip
def test_cuts_are_inside_the_interval_and_ordered(
    lo: float, width: float, floor: float, count: int, least: float
) -> None:
    span = Interval(lo, lo + width)
    cuts = plan_cuts(span, floor, count, least)
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
        cuts = plan_cuts(est.interval, est.floor, rule.round_size(est), rule.gap(est.floor))
        now = est.readings[-1].end
        lead = est.lead
        for send in sorted(at - lead for at in read_instants(cuts, now + lead)):
            est.add(reading(theta, send, up, down))
        rounds += 1
    return est, rounds


@given(theta=st.floats(-1000, 1000), up=st.floats(0.00001, 0.2), down=st.floats(0.00001, 0.2))
def test_rounds_reach_the_limit_and_stay_correct(theta: float, up: float, down: float) -> None:
    rule = StopRule()
    est, rounds = run_rounds(theta, up, down, rule)
    assert est.interval.lo - EPS <= theta <= est.interval.hi + EPS
    rtt = up + down
    # The physical limit: about the round trip wide, whatever part went up;
    # the midpoint off by no more than the asymmetry (and 2 ms).
    assert est.uncertainty <= 1.1 * rtt / 2 + 0.001
    assert abs(est.offset - theta) <= abs(up - down) / 2 + 0.002
    assert rounds <= 3


def test_round_sizes() -> None:
    rule = StopRule()
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.08, 0.08))  # a second to cut: as many as a round takes
    assert rule.round_size(est) == rule.max_per_round
    est.add(Reading(100, 0.88, 0.88, 0.96, 0.08))  # [99.92, 100.12)
    assert est.interval.width == pytest.approx(0.2)
    assert rule.round_size(est) == rule.max_per_round  # 0.12 s into 3 ms gaps: all it takes
    est.add(Reading(100, 0.9, 0.9, 0.98, 0.08))  # [99.92, 100.1): 0.1 s + floor
    est.add(Reading(101, 0.9, 0.9, 0.9865, 0.08))  # lo 100.0135
    assert est.interval.width - est.floor == pytest.approx(0.0065)
    assert rule.round_size(est) == 6  # 6.5 ms into 3 ms gaps, with a margin of 3
    assert not rule.done(est, 1, None)
    assert rule.done(est, rule.max_rounds, None)


def test_gaps_bound_both_goals() -> None:
    rule = StopRule()
    for floor in (0.0001, 0.02, 0.08, 0.15, 1.0):
        # Half-width within 1.1 x floor/2 + 1 ms; the midpoint within 2 ms (plus asymmetry).
        assert floor + rule.accept_gap(floor) <= 1.1 * floor + 0.002
        assert rule.accept_gap(floor) / 2 <= 0.002
        assert rule.gap(floor) < rule.accept_gap(floor)


def test_stop_when_a_round_at_the_limit_gains_nothing() -> None:
    rule = StopRule()
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.05, 0.05))
    est.add(Reading(100, 0.995, 0.995, 1.045, 0.05))  # [99.95, 100.005)
    width = est.interval.width
    assert width == pytest.approx(0.055)  # floor 0.05: near the limit, not within it
    assert not rule.done(est, 1, None)
    assert rule.done(est, 2, width)  # the last round gained nothing
    assert not rule.done(est, 2, width + 0.05)  # it gained a lot: go on
