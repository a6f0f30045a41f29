"""Resume decisions (pure): the Range/If-Range request, and append / restart /
complete / keep / error for every kind of answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import Headers, ProtocolError
from trio_timehttp._resume import (
    Action,
    Decision,
    ResumeState,
    decide,
    parse_content_range,
    range_headers,
    validator_of,
)

ETAG = '"abc123"'


def test_range_headers() -> None:
    assert range_headers(ResumeState()) == []
    assert range_headers(ResumeState(100)) == [("range", "bytes=100-")]
    assert range_headers(ResumeState(100, ETAG)) == [
        ("range", "bytes=100-"),
        ("if-range", ETAG),
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"etag": ETAG}, ETAG),
        ({"etag": 'W/"weak"'}, None),  # a weak tag must not go in If-Range
        ({"etag": 'W/"weak"', "last-modified": "Sun, 06 Nov 1994 08:49:37 GMT",
          "date": "Sun, 06 Nov 1994 08:49:38 GMT"}, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ({"last-modified": "Sun, 06 Nov 1994 08:49:37 GMT",
          "date": "Sun, 06 Nov 1994 08:49:37 GMT"}, None),  # same second: a weak date
        ({"last-modified": "Sun, 06 Nov 1994 08:49:37 GMT"}, None),  # no Date to compare
        ({"last-modified": "yesterday", "date": "Sun, 06 Nov 1994 08:49:37 GMT"}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_validator_of(fields: dict[str, str], expected: str | None) -> None:
    assert validator_of(Headers(list(fields.items()))) == expected


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 100-199/200") == (100, 199, 200)
    assert parse_content_range(" bytes 0-0/* ") == (0, 0, None)
    for bad in ("bytes 5-4/10", "bytes 0-10/10", "bytes=0-1/2", "items 0-1/2", "bytes */10", ""):
        with pytest.raises(ProtocolError):
            parse_content_range(bad)


@given(st.integers(0, 2**61), st.integers(0, 2**61), st.integers(0, 2**61))
def test_parse_content_range_round_trip(first: int, length: int, extra: int) -> None:
    last, total = first + length, first + length + 1 + extra
    assert parse_content_range(f"bytes {first}-{last}/{total}") == (first, last, total)


def h(**fields: str) -> Headers:
    return Headers([(k.replace("_", "-"), v) for k, v in fields.items()])


def test_206_from_our_offset_appends() -> None:
    state = ResumeState(100, ETAG)
    answer = h(content_range="bytes 100-199/200", etag=ETAG)
    assert decide(state, 206, answer) == Decision(Action.APPEND, 200, length=100)
    assert decide(ResumeState(100), 206, h(content_range="bytes 100-149/*")) == Decision(
        Action.APPEND, None, length=50
    )
    one = h(content_range="bytes 100-100/101")
    assert decide(ResumeState(100), 206, one) == Decision(Action.APPEND, 101, length=1)


@pytest.mark.parametrize(
    ("state", "fields", "match"),
    [
        (ResumeState(100), {"content_range": "bytes 0-199/200"}, "from 0"),
        (ResumeState(100), {}, "unusable Content-Range"),
        (ResumeState(100), {"content_type": "multipart/byteranges; boundary=x"}, "Content-Range"),
        (ResumeState(100, ETAG), {"content_range": "bytes 100-199/200", "etag": '"other"'},
         "ETag"),
        (ResumeState(0), {"content_range": "bytes 0-199/200"}, "without Range"),
    ],
)  # fmt: skip
def test_206_that_would_corrupt_the_file_is_an_error(
    state: ResumeState, fields: dict[str, str], match: str
) -> None:
    with pytest.raises(ProtocolError, match=match):
        decide(state, 206, h(**fields))


def test_200_restarts() -> None:
    assert decide(ResumeState(100, ETAG), 200, h(content_length="500")) == Decision(
        Action.RESTART, 500
    )
    assert decide(ResumeState(0), 200, h()) == Decision(Action.RESTART, None)


def test_416_with_our_size_is_complete_else_an_error() -> None:
    assert decide(ResumeState(200), 416, h(content_range="bytes */200")) == Decision(
        Action.COMPLETE, 200
    )
    with pytest.raises(ProtocolError, match="remove it"):
        decide(ResumeState(300), 416, h(content_range="bytes */200"))
    with pytest.raises(ProtocolError, match="remove it"):
        decide(ResumeState(300), 416, h())


@pytest.mark.parametrize("status", [301, 304, 404, 500, 503])
def test_other_answers_keep_the_partial_file(status: int) -> None:
    assert decide(ResumeState(100, ETAG), status, h()) == Decision(Action.KEEP)
