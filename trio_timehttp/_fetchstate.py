"""What one fetch carries from hop to hop: its options, its deadline, its bodies, its history.

A ``FetchState`` is made per ``Client.fetch``/``stream`` call and shared by
every hop of its redirect chain and every retry; nothing in it outlives the
call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ._bodies import RequestBody, request_body
from ._decoding import DecodeLimits
from ._errors import RedirectError
from ._models import Request, Response
from ._prepare import Prepared
from ._retry import RetryPolicy
from ._timing import ExchangeTimes

__all__ = ["FetchOptions", "FetchState"]


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """A fetch's per-request options: decoding (None: off), retries."""

    decode: DecodeLimits | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class FetchState:
    """Per-fetch bookkeeping shared by the hops of a redirect chain."""

    __slots__ = (
        "bodies",
        "complete",
        "deadline",
        "delivered",
        "history",
        "options",
        "prepared",
        "request",
        "times",
        "url",
    )

    def __init__(
        self, url: str, times: ExchangeTimes | None, options: FetchOptions | None = None
    ) -> None:
        self.prepared: Prepared | None = None  # the first hop's, made while validating
        self.url = url  # the URL of the hop in progress (for messages)
        self.request: Request | None = None  # the hop in progress
        self.history: list[Response] = []  # the hops before it
        self.delivered = False  # http_header got a real response for this hop
        self.complete = False  # the final body's framing proved it complete
        self.times = times
        self.options = options or FetchOptions()
        self.deadline: float | None = None  # trio time; None: no deadline
        # One RequestBody per body object, for the whole chain: a redirect or
        # retry sends the same source again (rewound), never a fresh empty one.
        self.bodies: dict[int, tuple[object, RequestBody]] = {}

    def body_for(self, request: Request) -> RequestBody | None:
        """The body source for a hop (None for no body or ``bytes``, which the preparer wraps).

        Raises ``TypeError`` for a body of the wrong type, ``ValueError`` for
        one that contradicts the request's Content-Length, and
        ``RedirectError`` when a redirect needs a body already sent that
        cannot be replayed.
        """
        value = request.body
        if value is None or isinstance(value, bytes):
            return None
        entry = self.bodies.get(id(value))
        if entry is None:
            body = request_body(value)
            assert body is not None
            length = request.headers.get("content-length")
            if length is not None and length.strip().isdigit():
                body.expect_length(int(length))
            self.bodies[id(value)] = (value, body)
            return body
        body = entry[1]
        if body.used and not body.replayable:
            raise RedirectError(
                f"cannot send the request body again to {request.url}: it was an iterator"
                " or stream and has been sent (use bytes or a seekable file to allow"
                " 307/308 redirects and retries)"
            )
        return body

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - trio.current_time()
