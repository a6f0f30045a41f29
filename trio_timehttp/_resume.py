"""Resuming a partial download (pure): the request to send, and what to do with the answer.

``FileConsumer(path, resume=True)`` keeps an unfinished body at
``<path>.part`` and the response's validator in ``<path>.part.validator``
(one line). Next time it sends ``Range: bytes=N-`` (N = the ``.part`` size)
and, when a validator was saved, ``If-Range: <validator>`` (RFC 9110 section
13.1.5): a server whose resource changed then answers 200 with the whole new
representation instead of a tail that would splice two versions together.
curl's ``-C -`` sends only the Range (it trusts the size); we add If-Range
because a silently corrupt file is the one outcome a resume must never give.
Without a saved validator (a ``.part`` from elsewhere) we do as curl does.

``decide(state, status, headers)`` reads the answer (RFC 9110 section 14):

- **206** with ``Content-Range: bytes N-E/T`` starting at our N: *append*.
  A 206 that starts elsewhere, has no single byte range (multipart), or
  carries an ETag other than the one we sent in If-Range: ``ProtocolError``
  (appending it would corrupt the file).
- **200**: the server ignored Range (or If-Range did not match): *restart*,
  the ``.part`` is truncated and the whole body written.
- **416** with ``Content-Range: bytes */T`` and T == N: the partial file is
  already the whole resource: *complete*. Any other 416: ``ProtocolError``
  asking to remove the ``.part`` (it does not fit the resource any more).
- anything else (3xx, 4xx, 5xx): *keep* — not the file's content; the
  ``.part`` is left for a later attempt and the answer is handled as without
  resume.

``Decision.total`` is the full size when the answer says it (Content-Range
total, or a 200's Content-Length): the file is complete only at that size.
``Decision.length`` is what an appended 206 body must hold (``E - N + 1``):
a body longer or shorter than its Content-Range is a ``ProtocolError``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ._errors import ProtocolError
from ._headers import Headers
from ._httpdate import parse_http_date

__all__ = [
    "Action",
    "Decision",
    "ResumeState",
    "decide",
    "parse_content_range",
    "range_headers",
    "validator_of",
]

_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
_UNSATISFIED = re.compile(r"bytes \*/(\d{1,19})")


class Action(enum.Enum):
    APPEND = "append"  # write the body after the partial data
    RESTART = "restart"  # truncate the partial data, write the body from 0
    COMPLETE = "complete"  # the partial data is already the whole resource
    KEEP = "keep"  # not the resource: leave the partial data alone


@dataclass(frozen=True)
class ResumeState:
    """What a partial download left: ``offset`` bytes, and its ``validator`` if saved."""

    offset: int = 0
    validator: str | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    total: int | None = None  # the resource's full size, when the answer tells it
    length: int | None = None  # APPEND: the body's size its Content-Range promises


def range_headers(state: ResumeState) -> list[tuple[str, str]]:
    """The header fields that ask for the rest: none when there is nothing to resume."""
    if state.offset <= 0:
        return []
    fields = [("range", f"bytes={state.offset}-")]
    if state.validator:
        fields.append(("if-range", state.validator))
    return fields


def validator_of(headers: Headers, *, now: float | None = None) -> str | None:
    """The validator to save from a response for a later If-Range, or ``None``.

    A strong ``ETag`` (RFC 9110 section 13.1.5: "A client MUST NOT generate
    an If-Range header field containing an entity tag that is marked as
    weak"), else ``Last-Modified`` when it is at least a second older than
    the response's ``Date`` (the rule that makes a date a strong validator).
    """
    etag = headers.get("etag")
    if etag and etag.startswith('"') and etag.endswith('"') and len(etag) >= 2:
        return etag
    modified, date = headers.get("last-modified"), headers.get("date")
    if not modified or not date:
        return None
    ref = 0.0 if now is None else now
    try:
        if parse_http_date(modified, now=ref) <= parse_http_date(date, now=ref) - 1:
            return modified
    except ValueError:
        return None
    return None


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``(first, last, total)`` of ``bytes first-last/total`` (``total`` None for ``*``).

    Raises ``ProtocolError`` for anything else (RFC 9110 section 14.4).
    """
    match = _RANGE.fullmatch(value.strip())
    if not match:
        raise ProtocolError(f"unusable Content-Range {value!r} in a 206 answer")
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if last < first or (total is not None and last >= total):
        raise ProtocolError(f"impossible Content-Range {value!r}")
    return first, last, total


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def decide(state: ResumeState, status: int, headers: Headers) -> Decision:
    """What to do with the answer to a resumed request; see the module docstring.

    Raises ``ProtocolError`` when appending the answer would corrupt the file.
    """
    if status == 206:
        if state.offset <= 0:
            raise ProtocolError("206 Partial Content to a request without Range")
        first, last, total = parse_content_range(headers.get("content-range") or "")
        if first != state.offset:
            raise ProtocolError(
                f"asked for bytes from {state.offset}, the server sent from {first}"
            )
        etag = headers.get("etag")
        sent = state.validator
        if sent and sent.startswith('"') and etag and etag != sent:
            raise ProtocolError(f"206 for ETag {etag} but If-Range asked for {sent}")
        return Decision(Action.APPEND, total, last - first + 1)
    if 200 <= status < 300:
        return Decision(Action.RESTART, _content_length(headers))
    if status == 416 and state.offset > 0:
        match = _UNSATISFIED.fullmatch((headers.get("content-range") or "").strip())
        if match and int(match[1]) == state.offset:
            return Decision(Action.COMPLETE, state.offset)
        raise ProtocolError(
            f"the server refused bytes from {state.offset} (416): the partial file"
            " no longer fits the resource; remove it to start over"
        )
    return Decision(Action.KEEP)
