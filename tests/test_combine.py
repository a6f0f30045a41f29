"""Combining several sources: median, MAD and outliers with a floor."""

from __future__ import annotations

import pytest

from trio_timehttp._combine import OUTLIER_FLOOR, combine


def test_median_of_agreeing_sources() -> None:
    result = combine([0.10, 0.12, 0.11], [0.01, 0.01, 0.01])
    assert result.median == pytest.approx(0.11)
    assert result.outliers == ()


def test_a_far_source_is_an_outlier() -> None:
    result = combine([0.10, 0.12, 0.11, 42.0], [0.01] * 4)
    assert result.median == pytest.approx(0.115)
    assert result.outliers == (3,)


def test_the_floor_keeps_exact_agreement_from_flagging_small_differences() -> None:
    # MAD is 0 here; without the floor any difference at all would be an outlier.
    result = combine([1.0, 1.0, 1.0 + 2 * OUTLIER_FLOOR], [0.001] * 3)
    assert result.mad == 0
    assert result.outliers == ()


def test_a_whole_second_reading_covered_by_its_uncertainty_is_not_an_outlier() -> None:
    result = combine([0.0, 0.0, 1.0], [0.005, 0.005, 1.0])
    assert result.outliers == ()
    assert combine([0.0, 0.0, 1.0], [0.005] * 3).outliers == (2,)


def test_nothing_to_combine() -> None:
    with pytest.raises(ValueError, match="no offsets"):
        combine([], [])
