"""The progress line: pure formatting (any numbers, any width) and the redraw rules."""

from __future__ import annotations

import io
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._cli_progress import Progress, progress_line

sizes = st.integers(min_value=0, max_value=1 << 50)
rates = st.one_of(st.none(), st.floats())  # inf, nan, negative, subnormal: all drawn


@given(done=sizes, total=st.one_of(st.none(), sizes), rate=rates, width=st.integers(1, 400))
def test_the_line_always_fits_the_width(
    done: int, total: int | None, rate: float | None, width: int
) -> None:
    line = progress_line(done, total, rate, width)
    assert len(line) <= max(width - 1, 1)
    assert "\n" not in line
    assert "\r" not in line


@pytest.mark.parametrize("width", [40, 80, 200])
def test_rate_and_eta_shown_from_40_columns(width: int) -> None:
    line = progress_line(450 * 1024, 1000 * 1024, 100 * 1024, width)
    assert " 45%" in line
    assert "100.0 KiB/s" in line
    assert "ETA 0:06" in line
    assert line.startswith("[") == (width >= 80)
    assert len(line) <= width - 1


def test_wide_terminals_get_a_bar_and_the_sizes() -> None:
    line = progress_line(512, 1024, 2.0, 120)
    assert line.startswith("[" + "#" * 20 + "." * 20 + "]")
    assert "512 B/1.0 KiB" in line
    assert "ETA 4:16" in line


def test_unknown_size_shows_size_and_rate() -> None:
    assert progress_line(3 * 1024 * 1024, None, 1024.0, 80) == "3.0 MiB 1.0 KiB/s"
    assert progress_line(10, None, None, 80) == "10 B"


def test_long_etas_have_hours() -> None:
    assert "ETA 2:46:40" in progress_line(0, 10_000, 1.0, 80)
    assert "ETA 99:59:59" in progress_line(0, 359_999, 1.0, 80)


@pytest.mark.parametrize(
    ("done", "total", "rate"),
    [
        (0, 11, 5e-324),  # an ETA of inf seconds
        (0, 1 << 50, 1e-300),  # finite but far beyond any int() the clock would need
        (1, 1 << 62, 1.0),
        (0, 360_000, 1.0),  # 100 hours: one second past the longest shown
    ],
)
def test_etas_too_long_to_show_are_a_bound(done: int, total: int, rate: float) -> None:
    for width in (20, 40, 80, 200):
        line = progress_line(done, total, rate, width)
        assert len(line) <= width - 1
        if width >= 40:
            assert "ETA >99:59:59" in line


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), -1.0, -float("inf")])
def test_a_rate_that_measures_nothing_is_left_out(rate: float) -> None:
    assert progress_line(10, None, rate, 80) == "10 B"
    line = progress_line(10, 100, rate, 80)
    assert "/s" not in line
    assert "ETA" not in line
    assert " 10%" in line


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1e9), st.integers(0, 1 << 40)), max_size=30
    ),
    total=st.one_of(st.none(), sizes),
)
def test_progress_draws_for_any_timing(steps: list[tuple[float, int]], total: int | None) -> None:
    """Zero elapsed time, bursts, stalls of years, unknown totals: every draw fits."""
    clock = Clock()
    out = io.StringIO()
    bar = Progress(out, clock=clock)
    bar.start(total)
    done = 0
    for elapsed, more in steps:
        clock.now += elapsed
        done += more
        bar.update(done)
    bar.finish(True)
    width = shutil.get_terminal_size().columns
    assert all(len(d) <= width - 1 for d in out.getvalue().rstrip("\n").split("\r"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_redraws_at_most_ten_times_a_second_then_a_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # a StringIO is no terminal: shutil's answer
    clock = Clock()
    out = io.StringIO()
    bar = Progress(out, clock=clock)
    bar.start(1000)
    for i in range(1, 101):  # 100 chunks over one second
        clock.now += 0.01
        bar.update(i * 10)
    bar.finish(True)
    text = out.getvalue()
    draws = text.rstrip("\n").split("\r")[1:]
    assert 9 <= len(draws) <= 12
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert all(len(d) <= 59 for d in draws)
    assert "100%" in draws[-1]
    assert "ETA" not in draws[0]  # no rate from the first burst
    assert "B/s" in draws[-1]


def test_a_failure_only_ends_the_line() -> None:
    out = io.StringIO()
    bar = Progress(out, clock=Clock())
    bar.start(1000)
    bar.update(10)
    drawn = out.getvalue()
    bar.finish(False)
    assert out.getvalue() == drawn + "\n"
    quiet = io.StringIO()
    Progress(quiet).finish(False)  # nothing drawn, nothing to end
    assert quiet.getvalue() == ""
