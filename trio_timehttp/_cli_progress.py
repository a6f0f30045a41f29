"""The download progress line on a terminal: bar, percent, size, rate and ETA, fitted to its width.

``progress_line`` is pure (tested with numbers); ``Progress`` reads the clock
and the terminal's width, and draws at most ten times a second.
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "progress_line", "terminal_width"]

_REDRAW = 0.1  # seconds between redraws: smooth to the eye, nothing for the CPU
_WINDOW = 5.0  # seconds of history the rate is measured over
_WARMUP = 0.3  # seconds before a rate (and an ETA) is shown at all
_BAR_MAX = 40  # the bar's inside never grows beyond this, however wide the terminal
_ETA_MAX = 100 * 3600 - 1  # 99:59:59 in seconds: a longer (or infinite) ETA is ">99:59:59"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if not seconds < _ETA_MAX + 0.5:  # also inf and nan: no int() of those
        return ">99:59:59"
    s = int(max(seconds, 0.0) + 0.5)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(done: int, total: int | None, rate: float | None, width: int) -> str:
    """One progress line that fits in ``width - 1`` columns (the last one would wrap).

    ``[#####.....]  45% 1.2 MiB/2.7 MiB 3.4 MiB/s ETA 0:05``; with an unknown
    total, the size and the rate. When the width is short, the bar goes
    first, then the total size, then the size done, then the rate: the
    percentage and the ETA stay longest (in 40 columns everything but the
    bar fits). A line that still does not fit is cut.
    """
    room = max(width - 1, 1)
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        rate = None  # a clock that stood still or went back measures nothing
    rate_text = f"{_size(rate)}/s" if rate is not None else ""
    if total is None:
        return " ".join(p for p in (_size(done), rate_text) if p)[:room]
    fraction = min(done / total, 1.0) if total else 1.0
    pct = f"{int(fraction * 100):3d}%"
    eta = f"ETA {_duration((total - done) / rate)}" if rate and done < total else ""
    choices = [
        [pct, f"{_size(done)}/{_size(total)}", rate_text, eta],
        [pct, _size(done), rate_text, eta],
        [pct, rate_text, eta],
        [pct, eta],
    ]
    texts = [" ".join(p for p in parts if p) for parts in choices]
    inside = min(room - len(texts[0]) - 3, _BAR_MAX)
    if inside >= 10:
        filled = int(fraction * inside)
        return f"[{'#' * filled}{'.' * (inside - filled)}] {texts[0]}"
    for text in texts:
        if len(text) <= room:
            return text
    return texts[-1][:room]


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` writes to, as it is now (it may have been resized).

    The terminal itself first: ``shutil.get_terminal_size`` prefers the
    ``COLUMNS`` variable (stale after a resize when a shell exports it) and
    asks about stdout, which may be a file or a pipe while stderr is the
    terminal. Then shutil's answer (``COLUMNS``, else 80).
    """
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return columns if columns > 0 else shutil.get_terminal_size().columns


class Progress:
    """Draws ``progress_line`` on ``stream`` with ``\\r``, redrawn at most every 0.1 s.

    ``start(total)`` for each response, ``update(done)`` per chunk,
    ``finish(complete)`` once: the final state and a newline (a failure just
    ends the line, so an error message starts on a fresh one). The rate is
    measured over the last five seconds; the width is read at every draw, so
    a resized terminal is followed.
    """

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.total: int | None = None
        self.done = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._last_draw = -float("inf")
        self._drawn = 0  # length of the line on screen

    def start(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self._samples.clear()
        self._samples.append((self.clock(), 0))

    def _rate(self, now: float) -> float | None:
        while len(self._samples) > 1 and now - self._samples[0][0] > _WINDOW:
            self._samples.popleft()
        then, before = self._samples[0]
        if now - then < _WARMUP:  # the first chunks come in a burst: no rate from them
            return None
        return (self.done - before) / (now - then)

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if now - self._last_draw < _REDRAW:
            return
        self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._samples.append((now, self.done))
        width = terminal_width(self.stream)
        line = progress_line(self.done, self.total, self._rate(now), width)
        # Blank what is left of a longer previous line, never past the last column.
        pad = " " * max(min(self._drawn, width - 1) - len(line), 0)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()
        self._drawn = len(line)

    def finish(self, complete: bool) -> None:
        if complete and self._samples:
            self._draw(self.clock())
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
