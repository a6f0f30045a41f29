"""The offset interval arithmetic, the cut plan and the stop rule (pure).

The model of a server throughout: its clock is ours plus ``theta``; it reads
it at some instant between our ``start`` and ``end`` and truncates to the
second. Whatever the offsets, delays and tick phases, the proven interval
must hold ``theta`` - that is the one promise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._sample import (
    SHARED_TICK_SPREAD,
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


def test_a_lone_odd_reading_does_not_override_the_others() -> None:
    # A late UDP answer taken for a later probe's: its interval misses the
    # truth and contradicts the narrow estimate. The estimate goes on from the
    # readings that agree (all but that one), and later readings still count.
    theta = 0.37
    est = OffsetEstimator()
    for k in range(10):  # good readings, windows of 20 ms, phases spread
        start = 1000.0 + k * 1.013
        server = start + 0.01 + theta
        assert est.add(Reading(math.floor(server), start, start, start + 0.02, 0.02))
    assert theta in est.interval
    stale = Reading(math.floor(1020.0 + theta) - 2, 1020.0, 1020.0, 1020.006, 0.006)
    assert not est.add(stale)  # contradicts: restarted from the agreeing group
    assert est.restarts == 1
    assert theta in est.interval
    assert stale not in est.readings
    assert len(est.readings) == 10
    start = 1030.0
    assert est.add(Reading(math.floor(start + 0.01 + theta), start, start, start + 0.02, 0.02))
    assert theta in est.interval


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
def test_read_instants_are_ticks_of_servers_at_the_cuts(
    lo: float, width: float, count: int, earliest: float
) -> None:
    cuts = [lo + width * k / count for k in range(count)]
    instants = read_instants(cuts, earliest)
    assert all(at >= earliest - EPS for at in instants)
    spread = max(cuts) - min(cuts)
    if spread < SHARED_TICK_SPREAD:
        assert max(instants) - min(instants) <= width + EPS  # one pass of one tick
        assert max(instants) < earliest + 1 + width + EPS
    else:  # each its own first tick: the round starts at once, over the next second
        assert all(at < earliest + 1 + EPS for at in instants)
    for at, cut in zip(instants, cuts, strict=True):
        frac = (at + cut) % 1
        assert min(frac, 1 - frac) == pytest.approx(0, abs=1e-4)
    assert read_instants([], earliest) == []


def test_a_wide_round_starts_at_once_over_two_ticks() -> None:
    # Cuts over most of a second, planned just after second 100.5 of the
    # cut 0.4: the common tick would wait until 101.9 for the first probe.
    cuts = [0.1, 0.4, 0.7]
    instants = read_instants(cuts, 100.5)
    assert instants == pytest.approx([100.9, 100.6, 101.3])  # ticks 101, 101, 102
    # Narrow cuts share one tick: 0.1 could still make 101 (at 100.9), 0.2
    # cannot (100.8 has passed), so both wait for 102 rather than split.
    assert read_instants([0.1, 0.2], 100.85) == pytest.approx([101.9, 101.8])


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
    theta: float, delays: Callable[[], tuple[float, float]], rule: StopRule, *,
    phase: float = 0.0, late: Callable[[], float] = lambda: 0.0,
) -> tuple[OffsetEstimator, int]:  # fmt: skip
    """Simulate precise mode's rounds as ``_probing`` runs them, in virtual time.

    ``delays()``: each probe's (up, down); ``late()``: how late each probe
    leaves after its aim (a loaded loop). A cut the readings already in
    hand have moved the interval past is dropped, as the lanes do.
    """
    est = OffsetEstimator()
    now = 1_800_000_000.0 + phase
    est.add(reading(theta, now, *delays()))
    now = est.readings[-1].end
    rounds = 0
    before: float | None = None
    while not rule.done(est, rounds, before):
        before = est.interval.width
        floor = est.floor
        cuts = plan_cuts(est.interval, floor, rule.round_size(est), rule.gap(floor))
        lead = est.lead
        plan = sorted(zip(read_instants(cuts, now + lead), cuts, strict=True))
        flying: list[Reading] = []
        for at, cut in plan:
            send = at - lead + late()
            for r in sorted((r for r in flying if r.end <= send), key=lambda r: r.end):
                flying.remove(r)
                est.add(r)
            if est.interval.lo + floor / 4 < cut < est.interval.hi - floor / 4:
                flying.append(reading(theta, send, *delays()))
                now = max(now, flying[-1].end)
        for r in sorted(flying, key=lambda r: r.end):
            est.add(r)
        rounds += 1
    return est, rounds


@given(theta=st.floats(-1000, 1000), up=st.floats(0.00001, 0.2), down=st.floats(0.00001, 0.2),
       phase=st.floats(0, 1))  # fmt: skip
def test_rounds_reach_the_limit_and_stay_correct(
    theta: float, up: float, down: float, phase: float
) -> None:
    rule = StopRule()
    est, rounds = run_rounds(theta, lambda: (up, down), rule, phase=phase)
    assert est.restarts == 0
    assert est.interval.lo - EPS <= theta <= est.interval.hi + EPS
    rtt = up + down
    # The physical limit: about the round trip wide, whatever part went up;
    # the midpoint off by no more than the asymmetry (and 2 ms).
    assert est.uncertainty <= 1.1 * rtt / 2 + 0.001
    assert abs(est.offset - theta) <= abs(up - down) / 2 + 0.002
    assert rounds <= 3
    assert len(est.readings) <= rule.max_probes + rule.max_per_round


@given(
    theta=st.floats(-1000, 1000), up=st.floats(0.0, 0.2), down=st.floats(0.0, 0.2),
    jitter=st.floats(0.0, 0.05), lateness=st.floats(0.0, 0.02), phase=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)  # fmt: skip
def test_rounds_under_jitter_and_late_probes_always_hold_the_truth(
    theta: float, up: float, down: float, jitter: float, lateness: float, phase: float,
    seed: int,
) -> None:  # fmt: skip
    # Any plan, split over two ticks or not, whatever delays, reordering and
    # lateness: the intersection holds the truth, and the rule stops.
    rng = random.Random(seed)

    def delays() -> tuple[float, float]:
        return (max(0.0, up + rng.uniform(-jitter, jitter)),
                max(0.0, down + rng.uniform(-jitter, jitter)))  # fmt: skip

    rule = StopRule()
    est, rounds = run_rounds(theta, delays, rule, phase=phase,
                             late=lambda: rng.uniform(0, lateness))  # fmt: skip
    assert est.restarts == 0
    assert est.interval.lo - EPS <= theta <= est.interval.hi + EPS
    assert rounds <= rule.max_rounds
    # Polite: never more readings than the larger allowance (the first one
    # and the first round's sweep at most besides).
    assert len(est.readings) <= max(rule.jitter_probes, rule.max_probes) + 1


def test_round_sizes() -> None:
    rule = StopRule()
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.08, 0.08))  # a second to cut: a first round's sweep
    assert rule.round_size(est) == rule.first_round
    est.add(Reading(100, 0.88, 0.88, 0.96, 0.08))  # [99.92, 100.12)
    assert est.interval.width == pytest.approx(0.2)
    # 0.12 s into 3 ms gaps (7 % of the floor + 1 ms, at most 3 ms): all a round takes.
    assert rule.round_size(est) == rule.max_per_round
    est.add(Reading(100, 0.9, 0.9, 0.98, 0.08))  # [99.92, 100.1): 0.1 s + floor
    est.add(Reading(101, 0.9, 0.9, 0.9865, 0.08))  # lo 100.0135
    assert est.interval.width - est.floor == pytest.approx(0.0065)
    assert rule.round_size(est) == rule.min_round  # 6.5 ms into 3 ms gaps (x 1.5): 3, never < 4
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


def jittery(filler_window: float) -> OffsetEstimator:
    """A floor of 20 ms, 10 ms left to reduce, and 38 readings far from the tick."""
    est = OffsetEstimator()
    est.add(Reading(100, 0.0, 0.0, 0.02, 0.02))  # the one fast probe: [99.98, 101.0)
    for k in range(38):  # old seconds well before the tick: the interval stays
        start = 0.5 + k * 0.01
        est.add(Reading(100, start, start, start + filler_window, filler_window))
    est.add(Reading(101, 0.958, 0.958, 0.998, 0.04))  # new: lo 100.002
    est.add(Reading(100, 0.968, 0.968, 1.008, 0.04))  # old: hi 100.032
    assert est.interval.width == pytest.approx(0.03)
    return est


def test_under_jitter_rounds_are_full_and_end_by_count() -> None:
    rule = StopRule()
    est = jittery(0.04)  # +-10 ms each way: nearly every window 40 ms
    assert rule.jittery(est)
    reducible = est.interval.width - est.floor
    assert reducible > rule.accept_gap(est.floor)  # not at the limit
    # The floor is one lucky probe: rounds take all the budget lets fly at once...
    assert rule.round_size(est) == rule.jitter_round
    assert rule.allowance(est) == rule.jitter_probes > rule.max_probes
    # ...and end after jitter_rounds rounds (or jitter_probes readings), not on the windows.
    assert not rule.done(est, 2, est.interval.width + 0.001)
    assert rule.done(est, rule.jitter_rounds, est.interval.width + 0.001)
    while len(est.readings) < rule.jitter_probes:
        est.add(Reading(100, 0.5, 0.5, 0.54, 0.04))  # an old second far from the tick
    assert rule.done(est, 1, None)
    assert not rule.jittery(jittery(0.02))  # most windows at the floor: the clean-path rules


def test_under_jitter_the_limit_is_the_floor_less_the_next_faster() -> None:
    rule = StopRule()

    def near_limit(next_window: float) -> OffsetEstimator:
        est = jittery(0.04)  # floor 20 ms (one probe), the rest 40 ms
        end = 0.9955
        est.add(Reading(101, end - next_window, end - next_window, end, next_window))  # lo
        est.add(Reading(100, 0.9735, 0.9735, 1.0145, 0.041))  # old: hi 100.0265
        assert est.interval.width - est.floor == pytest.approx(0.002)
        return est

    # The next fastest window 0.5 ms above the floor: 2 ms + 0.5 ms is within the gap.
    close = near_limit(0.0205)
    assert close.floor_gap == pytest.approx(0.0005)
    assert rule.jittery(close)
    assert rule.done(close, 1, None)
    # 5 ms above it: faster probes are likely still to come, narrowing further.
    sparse = near_limit(0.025)
    assert sparse.floor_gap == pytest.approx(0.005)
    assert rule.jittery(sparse)
    assert not rule.done(sparse, 1, None)
    one = OffsetEstimator()
    one.add(Reading(100, 0.0, 0.0, 0.02, 0.02))
    assert one.floor_gap == 0.0


def test_stop_when_jitter_leaves_no_probe_fast_enough() -> None:
    # Windows spread, but not enough for the jitter rules: the clean-path test
    # (a round's fast probes) ends the reading.
    rule = StopRule(jitter_factor=10.0)
    est = jittery(0.04)
    assert not rule.jittery(est)
    reducible = est.interval.width - est.floor
    assert est.fast_share(reducible / 2) == pytest.approx(1 / 41)
    assert rule.round_size(est) * est.fast_share(reducible / 2) < rule.min_fast
    assert rule.done(est, 2, est.interval.width + 0.001)  # no probe of a round would pay
    assert not rule.done(est, 0, None)  # a first round is always tried
    clean = jittery(0.02)  # the same interval, most windows at the floor: go on
    assert not rule.done(clean, 2, clean.interval.width + 0.001)
