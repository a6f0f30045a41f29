"""HTTP Date parsing: the three RFC 9110 formats, and nothing else."""

from __future__ import annotations

import calendar
import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._httpdate import parse_http_date

NOW = calendar.timegm((2026, 11, 26, 12, 0, 0, 0, 0, 0))
EXPECTED = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime
        "  Sun, 06 Nov 1994 08:49:37 GMT ",  # surrounding whitespace is OWS
    ],
)
def test_the_three_formats(value: str) -> None:
    assert parse_http_date(value, now=NOW) == EXPECTED


def test_rfc850_two_digit_year_is_never_more_than_50_years_ahead() -> None:
    assert parse_http_date("Friday, 01-Jan-99 00:00:00 GMT", now=NOW) == 915148800  # 1999
    assert parse_http_date("Friday, 01-Jan-60 00:00:00 GMT", now=NOW) == calendar.timegm(
        (2060, 1, 1, 0, 0, 0, 0, 0, 0)
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",  # must be GMT
        "Sun, 6 Nov 1994 08:49:37 GMT",  # day is two digits
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:61:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "1994-11-06T08:49:37Z",
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="HTTP date"):
        parse_http_date(value, now=NOW)


def test_leap_second_reads_as_the_next_second() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", now=NOW) == 1483228800


@given(st.integers(min_value=0, max_value=2**33))
def test_round_trip_with_the_stdlib_formatter(seconds: int) -> None:
    value = email.utils.formatdate(seconds, usegmt=True)
    assert parse_http_date(value, now=time.time()) == seconds
