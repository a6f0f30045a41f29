"""The instants of one HTTP exchange that bound a time-over-HTTP reading (pure).

The requester fills an ``ExchangeTimes`` when one is handed to it
(``Client._fetch_timed``); the time-over-HTTP reader turns the instants into
the interval a ``Date`` header proves. All fields are wall-clock
``time.time()`` readings, because they are compared with the server's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExchangeTimes"]


@dataclass(slots=True)
class ExchangeTimes:
    """When an exchange began, finished sending, and received its final head.

    ``start`` is taken before anything that could let the server read its
    clock for this request: before ``connect()`` when the exchange opened a new
    connection (``reused`` false), before the first request byte was handed to
    the kernel on a reused one. ``sent``: the whole request (head and body) has
    been handed to the kernel. ``head``: the final (non-1xx) response head is
    complete. Zero means "not reached".
    """

    start: float = 0.0
    sent: float = 0.0
    head: float = 0.0
    reused: bool = False
