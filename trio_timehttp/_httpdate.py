"""HTTP ``Date`` parsing (pure): RFC 9110 section 5.6.7's three formats.

Senders must use IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``); a recipient
must also accept the obsolete RFC 850 (``Sunday, 06-Nov-94 08:49:37 GMT``) and
asctime (``Sun Nov  6 08:49:37 1994``) forms. We are strict otherwise: a Date we
cannot read exactly is no clock reading at all.
"""

from __future__ import annotations

import calendar
import re

from ._shown import shown

__all__ = ["parse_http_date"]

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"

_IMF = re.compile(rf"{_DAY}, (?P<d>\d\d) {_MONTH} (?P<y>\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"{_LONG_DAY}, (?P<d>\d\d)-{_MONTH}-(?P<y>\d\d) {_TIME} GMT")
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} (?P<d>[ \d]\d) {_TIME} (?P<y>\d{{4}})")


def parse_http_date(value: str, *, now: float) -> int:
    """Unix seconds of an HTTP date, or ``ValueError`` if it is not one of the three formats.

    ``now`` resolves RFC 850's two-digit year: per RFC 9110, a year that would
    be more than 50 years in the future means the most recent past year with
    those digits.
    """
    text = value.strip()
    for pattern in (_IMF, _RFC850, _ASCTIME):
        match = pattern.fullmatch(text)
        if match:
            break
    else:
        raise ValueError(f"not an HTTP date: {shown(value)}")
    year = int(match["y"])
    if pattern is _RFC850:
        this_year = int(now // 31556952) + 1970  # close enough to pick a century
        year += (this_year // 100) * 100
        if year > this_year + 50:
            year -= 100
    day, hour, minute, second = int(match["d"]), int(match["h"]), int(match["m"]), int(match["s"])
    month = _MONTHS[match["mon"]]
    days_in_month = calendar.monthrange(year, month)[1]
    if not (1 <= day <= days_in_month and hour < 24 and minute < 60 and second <= 60):
        raise ValueError(f"impossible HTTP date: {shown(value)}")
    # A leap second (":60") is read as the next second's start, as most clocks do.
    return calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)) + (
        1 if second == 60 else 0
    )
