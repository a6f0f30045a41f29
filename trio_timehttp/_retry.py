"""Retry policy (pure): what may be retried, and how long to wait first.

What is retried (``Client(retries=N)``; N = 0, the default, retries nothing):

- A **connect failure** (``ConnectError``: DNS, refused, unreachable, TLS
  handshake), for any method: nothing of the request reached the server, so
  even a POST is safe to send again. urllib3's ``Retry(connect=...)`` and
  httpx's transport ``retries=`` draw the same line.
- A **429 or 503 answer** to an idempotent method (RFC 9110 section 9.2.2:
  GET, HEAD, PUT, DELETE, OPTIONS, TRACE). The server did see the request; a
  POST or PATCH answered 503 may have had effects, so it is never resent
  (urllib3's ``allowed_methods`` default is the same set).
- Nothing else. A failure *after* the request may have been sent (a reset
  mid-response, a truncated body) is not retried: the consumer may already
  hold part of a body, and the request may have taken effect. (urllib3 would
  retry such ``read`` errors for idempotent methods; httpx does not; we side
  with httpx, because our consumer is fed as the body arrives.) A timeout is
  the total deadline passing: there is no time left to retry in.

How long to wait before retry number ``attempt`` (0 for the first):
``Retry-After`` when the answer has one (delta-seconds, or an HTTP-date
relative to the injected wall clock), else exponential backoff with full
jitter, ``uniform(0, backoff * 2**attempt)`` capped at ``MAX_BACKOFF`` (the
AWS architecture blog's "full jitter": retries of many clients spread out
instead of arriving in waves). No retry is made when the wait would end at or
after the deadline, or when ``Retry-After`` asks for more than
``MAX_RETRY_AFTER``: the answer then goes to the consumer as it is.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ._errors import ConnectError
from ._httpdate import parse_http_date

__all__ = [
    "IDEMPOTENT",
    "MAX_BACKOFF",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "RetryPolicy",
    "parse_retry_after",
]

# RFC 9110 section 9.2.2.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# 429 Too Many Requests (RFC 6585 section 4), 503 Service Unavailable (RFC 9110
# section 15.6.4): both say "later", and both may carry Retry-After.
RETRY_STATUSES: Final = frozenset({429, 503})
# No single backoff wait is longer than this (urllib3's DEFAULT_BACKOFF_MAX).
MAX_BACKOFF: Final = 120.0
# A Retry-After longer than this is taken as "not today": no retry.
MAX_RETRY_AFTER: Final = 600.0


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if absent or unreadable.

    RFC 9110 section 10.2.3: ``Retry-After = HTTP-date / delay-seconds``. A
    date in the past means no wait (0.0). ``now`` is the wall clock (Unix
    seconds) to read a date against.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parse_http_date(text, now=now)
    except ValueError:
        return None
    return max(0.0, when - now)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts at most, waits starting near ``backoff`` seconds.

    ``rng`` returns a float in [0, 1) (``random.random``; injected so tests
    can pin the jitter).
    """

    retries: int = 0
    backoff: float = 0.5
    rng: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, not {self.backoff}")

    def retryable_error(self, exc: BaseException) -> bool:
        """Whether a failure before any response may be retried: connect failures only."""
        return isinstance(exc, ConnectError)

    def retryable_status(self, method: str, status: int) -> bool:
        """Whether an answer may be retried: 429 or 503 to an idempotent method."""
        return status in RETRY_STATUSES and method.upper() in IDEMPOTENT

    def backoff_delay(self, attempt: int) -> float:
        """The jittered wait before retry ``attempt`` (0-based), with no ``Retry-After``."""
        ceiling = min(MAX_BACKOFF, self.backoff * 2.0 ** min(attempt, 64))
        return self.rng() * ceiling

    def wait(
        self, attempt: int, *, retry_after: float | None = None, remaining: float | None = None
    ) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based), or ``None``: do not retry.

        ``None`` when ``attempt >= retries``, when ``retry_after`` exceeds
        ``MAX_RETRY_AFTER``, or when the wait would use up ``remaining`` (the
        seconds left before the deadline; ``None`` for no deadline).
        """
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            if retry_after > MAX_RETRY_AFTER:
                return None
            delay = retry_after
        else:
            delay = self.backoff_delay(attempt)
        if remaining is not None and delay >= remaining:
            return None
        return delay
