"""The retry policy (pure): what is retried, Retry-After in both forms, the
jittered backoff and the deadline rule."""

from __future__ import annotations

import calendar
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import ConnectError, ProtocolError, Timeout
from trio_timehttp._retry import (
    IDEMPOTENT,
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    RetryPolicy,
    parse_retry_after,
)

NOW = float(calendar.timegm((2026, 12, 1, 12, 0, 0, 0, 0, 0)))


def test_only_connect_failures_are_retryable_errors() -> None:
    policy = RetryPolicy(retries=3)
    assert policy.retryable_error(ConnectError("refused"))
    assert not policy.retryable_error(ProtocolError("reset mid-body"))
    assert not policy.retryable_error(Timeout("deadline"))
    assert not policy.retryable_error(OSError("other"))


@pytest.mark.parametrize("method", [*sorted(IDEMPOTENT), "get"])
@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_retry_idempotent_methods(method: str, status: int) -> None:
    assert RetryPolicy(retries=1).retryable_status(method, status)


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT"])
def test_non_idempotent_methods_are_never_retried_on_status(method: str) -> None:
    assert not RetryPolicy(retries=1).retryable_status(method, 503)


@pytest.mark.parametrize("status", [200, 404, 500, 502, 504])
def test_other_statuses_are_data(status: int) -> None:
    assert not RetryPolicy(retries=1).retryable_status("GET", status)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Tuesday, 01-Dec-26 12:01:00 GMT", 60.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: str.isdigit, not delay-seconds
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_backoff_is_exponential_with_full_jitter() -> None:
    top = RetryPolicy(retries=10, backoff=0.5, rng=lambda: 0.999999)
    assert [round(top.backoff_delay(a), 3) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert top.backoff_delay(30) == pytest.approx(MAX_BACKOFF, rel=1e-5)
    assert top.backoff_delay(10_000) <= MAX_BACKOFF
    bottom = RetryPolicy(retries=10, rng=lambda: 0.0)
    assert bottom.backoff_delay(5) == 0.0


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0, max_value=0.9999))
def test_backoff_stays_inside_its_ceiling(attempt: int, draw: float) -> None:
    policy = RetryPolicy(retries=300, backoff=0.25, rng=lambda: draw)
    assert 0 <= policy.backoff_delay(attempt) <= min(MAX_BACKOFF, 0.25 * 2**attempt)


def test_wait_counts_attempts() -> None:
    policy = RetryPolicy(retries=2, rng=lambda: 0.5)
    assert policy.wait(0) == 0.25
    assert policy.wait(1) == 0.5
    assert policy.wait(2) is None
    assert RetryPolicy().wait(0) is None  # retries=0: nothing is retried


def test_retry_after_wins_over_backoff_unless_too_long() -> None:
    policy = RetryPolicy(retries=1, rng=lambda: 0.5)
    assert policy.wait(0, retry_after=7.0) == 7.0
    assert policy.wait(0, retry_after=0.0) == 0.0
    assert policy.wait(0, retry_after=MAX_RETRY_AFTER + 1) is None


def test_no_retry_whose_wait_would_pass_the_deadline() -> None:
    policy = RetryPolicy(retries=1, rng=lambda: 0.5)
    assert policy.wait(0, retry_after=3.0, remaining=3.5) == 3.0
    assert policy.wait(0, retry_after=3.0, remaining=3.0) is None
    assert policy.wait(0, remaining=0.1) is None  # the jittered 0.25 s is too long
    assert policy.wait(0, remaining=None) == 0.25


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=-0.1)
