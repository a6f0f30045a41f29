"""Combining sources by their intervals: the majority region, falsetickers, plausibility."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trio_timehttp._combine import PLAUSIBLE_SKEW, consensus, is_plausible


def test_agreeing_sources_have_no_falseticker() -> None:
    result = consensus([0.10, 0.12, 0.11], [0.5, 0.5, 0.5])
    assert result.falsetickers == ()
    assert result.has_majority
    assert result.agreeing == 3
    assert result.voters == 3
    # The region where at least 2 of 3 agree: [0.11 - 0.5, 0.11 + 0.5].
    assert result.lo == pytest.approx(-0.39)
    assert result.hi == pytest.approx(0.61)
    assert result.median == pytest.approx(0.11)


def test_one_far_source_is_a_falseticker() -> None:
    result = consensus([0.10, 0.12, 0.11, 100.0], [0.5] * 4)
    assert result.falsetickers == (3,)
    assert result.implausible == ()
    # Three of four agree: the region where all three overlap.
    assert result.lo == pytest.approx(-0.38)
    assert result.hi == pytest.approx(0.60)
    assert result.offset == pytest.approx(0.11)
    assert result.uncertainty == pytest.approx(0.49)


def test_two_that_disagree_cannot_be_told_apart() -> None:
    result = consensus([0.0, 100.0], [0.5, 0.5])
    assert not result.has_majority
    assert (result.offset, result.uncertainty, result.lo, result.hi) == (None, None, None, None)
    assert result.falsetickers == ()
    assert result.agreeing == 1
    assert result.median == pytest.approx(50.0)


def test_two_against_two_has_no_majority() -> None:
    assert not consensus([0.0, 0.1, 50.0, 50.1], [0.5] * 4).has_majority


def test_two_that_agree_give_their_intersection() -> None:
    result = consensus([0.0, 0.6], [0.5, 0.5])
    assert (result.lo, result.hi) == pytest.approx((0.1, 0.5))
    assert result.falsetickers == ()


def test_touching_intervals_agree() -> None:
    result = consensus([0.0, 1.0], [0.5, 0.5])
    assert (result.lo, result.hi) == (0.5, 0.5)
    assert result.uncertainty == 0


def test_one_source_is_its_own_interval() -> None:
    result = consensus([0.25], [0.5])
    assert (result.offset, result.uncertainty) == (0.25, 0.5)
    assert result.falsetickers == ()


def test_a_zero_from_the_server_is_implausible_and_takes_no_vote() -> None:
    # RFC 868's 0 decodes to 2036-02-07: +289827889 s from 2026-12-01.
    result = consensus([289827889.837, 0.01], [0.5, 0.5])
    assert result.implausible == (0,)
    assert result.falsetickers == (0,)
    assert result.voters == 1
    assert result.offset == pytest.approx(0.01)
    assert result.median == pytest.approx(0.01)


def test_only_implausible_answers_give_no_majority() -> None:
    result = consensus([-1e9], [0.5])
    assert result.implausible == (0,)
    assert result.falsetickers == (0,)
    assert not result.has_majority
    assert result.voters == 0
    assert result.median is None


def test_plausibility_bound() -> None:
    assert is_plausible(PLAUSIBLE_SKEW)
    assert is_plausible(-PLAUSIBLE_SKEW)
    assert not is_plausible(PLAUSIBLE_SKEW + 1)
    assert is_plausible(0.0)


def test_nothing_to_combine() -> None:
    result = consensus([], [])
    assert not result.has_majority
    assert result.voters == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="one uncertainty per offset"):
        consensus([1.0], [])
    with pytest.raises(ValueError, match="never negative"):
        consensus([1.0], [-0.1])


def test_wide_right_intervals_do_not_let_overlapping_falsetickers_win() -> None:
    # The deepest point (depth 4, at 4..5) is made by two falsetickers and two
    # wide right sources; the truth (0) is held by a majority of three. NTP's
    # "deepest region" would pick 4..5 and mark the narrow right source.
    offsets = [0.0, 2.0, 2.0, 4.5, 4.5]
    uncertainties = [1.0, 3.0, 3.0, 0.5, 0.5]
    result = consensus(offsets, uncertainties)
    assert result.agreeing == 4
    assert result.lo is not None
    assert result.hi is not None
    assert result.lo <= 0.0 <= result.hi
    assert 0 not in result.falsetickers


offsets_st = st.floats(-1000, 1000, allow_nan=False)
widths_st = st.floats(0, 100, allow_nan=False)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[float, list[float], list[float]]:
    """A true offset, and intervals most of which are drawn around it."""
    truth = draw(offsets_st)
    right = draw(st.integers(1, 7))
    wrong = draw(st.integers(0, right - 1))
    offsets, uncertainties = [], []
    for _ in range(right):
        u = draw(widths_st)
        offsets.append(truth + draw(st.floats(-1, 1)) * u)
        uncertainties.append(u)
    for _ in range(wrong):
        offsets.append(draw(offsets_st))
        uncertainties.append(draw(widths_st))
    order = draw(st.permutations(range(len(offsets))))
    return truth, [offsets[i] for i in order], [uncertainties[i] for i in order]


@given(scenario())
def test_a_truth_holding_majority_is_always_chosen(
    case: tuple[float, list[float], list[float]],
) -> None:
    truth, offsets, uncertainties = case
    holding = [
        i
        for i, (o, u) in enumerate(zip(offsets, uncertainties, strict=True))
        if o - u <= truth <= o + u
    ]
    assume(len(holding) * 2 > len(offsets))
    result = consensus(offsets, uncertainties)
    assert result.has_majority
    assert result.lo is not None
    assert result.hi is not None
    assert result.lo <= truth <= result.hi
    assert not set(holding) & set(result.falsetickers)


@given(st.lists(st.tuples(offsets_st, widths_st), min_size=1, max_size=9))
def test_invariants_for_any_input(pairs: list[tuple[float, float]]) -> None:
    offsets = [o for o, _ in pairs]
    uncertainties = [u for _, u in pairs]
    result = consensus(offsets, uncertainties)
    lows = [o - u for o, u in pairs]
    highs = [o + u for o, u in pairs]
    assert 1 <= result.agreeing <= len(pairs)
    if result.lo is None or result.hi is None:
        assert result.agreeing * 2 <= len(pairs)
        assert result.falsetickers == ()
        return
    assert result.agreeing * 2 > len(pairs)
    assert min(lows) <= result.lo <= result.hi <= max(highs)
    # The sources kept are a majority, each touching the combined interval.
    kept = [i for i in range(len(pairs)) if i not in result.falsetickers]
    assert len(kept) * 2 > len(pairs)
    for i in kept:
        assert lows[i] <= result.hi
        assert result.lo <= highs[i]
    # A falseticker holds no offset that a majority holds; a kept source does.
    for i in range(len(pairs)):
        assert (i in result.falsetickers) == (_deepest_in(i, lows, highs) * 2 <= len(pairs))


def _deepest_in(i: int, lows: list[float], highs: list[float]) -> int:
    """The greatest depth inside interval ``i`` (it is reached at some interval's start)."""
    points = [x for x in lows if lows[i] <= x <= highs[i]]
    return max(sum(1 for lo, hi in zip(lows, highs, strict=True) if lo <= x <= hi) for x in points)


@given(
    st.lists(st.tuples(offsets_st, widths_st), min_size=1, max_size=9).flatmap(
        lambda pairs: st.tuples(st.just(pairs), st.permutations(range(len(pairs))))
    )
)
def test_order_does_not_matter(case: tuple[list[tuple[float, float]], list[int]]) -> None:
    pairs, order = case
    a = consensus([o for o, _ in pairs], [u for _, u in pairs])
    b = consensus([pairs[i][0] for i in order], [pairs[i][1] for i in order])
    assert (a.lo, a.hi, a.agreeing) == (b.lo, b.hi, b.agreeing)
    assert sorted(order[i] for i in b.falsetickers) == list(a.falsetickers)


@given(st.lists(widths_st, min_size=1, max_size=9), offsets_st)
def test_sources_that_all_agree_are_all_kept(widths: list[float], centre: float) -> None:
    result = consensus([centre] * len(widths), widths)
    assert result.falsetickers == ()
    assert result.lo is not None
    assert result.hi is not None
    assert result.lo <= centre <= result.hi
