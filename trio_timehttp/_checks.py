"""Argument checks for the public API: a caller's mistake is a clear TypeError or ValueError.

These are programming errors, not network failures: they are raised before
anything is sent (and before the consumer sees anything but its ``close()``),
naming the argument. Pure: no I/O.
"""

from __future__ import annotations

import math

__all__ = ["check_count", "check_seconds"]


def check_seconds(name: str, value: object, *, none_ok: bool = True) -> float | None:
    """``value`` as seconds: a real number >= 0 (or None when ``none_ok``).

    Raises ``TypeError`` for a non-number (``"5"``, ``True``), ``ValueError``
    for a negative or NaN one.
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        allowed = "a number of seconds or None" if none_ok else "a number of seconds"
        raise TypeError(f"{name} must be {allowed}, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, not {value}")
    return float(value)


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as an ``int`` >= ``minimum`` (``TypeError`` / ``ValueError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value
