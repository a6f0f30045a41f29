"""How ``trio-timehttp time`` writes a reading: text lines, JSON lines, plugin lines (pure).

Every function here turns a ``Reading`` into strings (or JSON-ready dicts);
printing, clocks and repeating are ``_cli_time``'s.

Plugin mode follows the monitoring-plugins guidelines: one line
``TIME <STATE> - <message> | <perfdata>``, exit status 0/1/2/3. The state is
decided on the combined interval, not its middle alone: with ``worst =
|offset| + uncertainty`` (the farthest the true offset can be from zero),
CRITICAL when ``worst > crit``, WARNING when ``worst > warn``, else OK -- so a
reading whose interval straddles a threshold is never OK. UNKNOWN when no
source answered plausibly, or when no majority of the answers agrees.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._combine import Consensus
from ._readings import Reading, SourceResult, error_kind

__all__ = [
    "STATE_NAMES",
    "Thresholds",
    "WatchStats",
    "json_objects",
    "plugin_line",
    "plugin_state",
    "text_lines",
    "watch_line",
]

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: How states combine over several readings (monitoring-plugins' max_state):
#: CRITICAL > WARNING > UNKNOWN > OK.
_SEVERITY = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}


def _s(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f} s"


def _digits(uncertainty: float) -> int:
    """Decimals that show an interval's width: milliseconds, or microseconds below 50 ms.

    (A precise reading of +-0.3 ms printed as "+- 0.000 s" would look exact.)
    """
    return 3 if uncertainty >= 0.05 else 6


def _offset(offset: float, uncertainty: float, gap: str = " ") -> str:
    d = _digits(uncertainty)
    return f"{_s(offset, d)}{gap}+- {uncertainty:.{d}f} s"


# -- text --------------------------------------------------------------------------------------


def text_lines(reading: Reading) -> list[str]:
    """One line per source (each naming its protocol), then one summary line."""
    width = max(len(r.source) for r in reading.results)
    lines = [f"{r.source:<{width}}  {r.protocol:<5}  {_source_text(r)}" for r in reading.results]
    lines.append(summary_text(reading))
    return lines


def _source_text(result: SourceResult) -> str:
    if result.sample is None:
        return f"error: {result.error}"
    s = result.sample
    text = f"offset {_offset(s.offset, s.uncertainty, '  ')}  rtt {s.rtt:.3f} s"
    if result.implausible:
        return text + "  falseticker: implausible (more than a year off: a wrong era?)"
    return text + "  falseticker" if result.falseticker else text


def summary_text(reading: Reading) -> str:
    """What the answers agree on, in one line (names any falseticker)."""
    c = reading.consensus
    total = len(reading.results)
    if reading.answered == 0:
        return f"no source answered ({total} of {total} failed)"
    if c.offset is not None and c.uncertainty is not None:
        text = f"combined offset {_offset(c.offset, c.uncertainty)}: {_agree(c)}"
    elif c.voters == 0:
        text = "no plausible answer: every answer is over a year off (is the local clock right?)"
    elif c.voters == 2:
        text = "the 2 answers disagree (their intervals do not meet): cannot tell which is right"
    else:
        text = (
            f"no majority of the {c.voters} answers agrees (at most {c.agreeing} overlap): "
            "cannot tell which is right"
        )
    if c.median is not None and c.voters > 1:
        text += f" (median {_s(c.median)})"
    return text + _marks(reading)


def _agree(c: Consensus) -> str:
    if c.voters == 1:
        return "one answer"
    return f"{c.kept} of {c.voters} answers agree"


def _marks(reading: Reading) -> str:
    text = ""
    wrong = [r.source for r in reading.falsetickers if not r.implausible]
    wild = [r.source for r in reading.falsetickers if r.implausible]
    failed = [f"{r.source} ({error_kind(r.error)})" for r in reading.errors if r.error]
    if wrong:
        text += f"; falseticker{'s' if len(wrong) > 1 else ''}: {', '.join(wrong)}"
    if wild:
        text += f"; implausible: {', '.join(wild)}"
    if failed and reading.answered:
        text += f"; failed: {', '.join(failed)}"
    return text


# -- JSON --------------------------------------------------------------------------------------


def json_objects(reading: Reading) -> list[dict[str, Any]]:
    """One object per source (API.md's fields exactly), then one ``{"summary": ...}``."""
    objects: list[dict[str, Any]] = []
    for r in reading.results:
        if r.sample is None:
            assert r.error is not None
            kind = error_kind(r.error)
            objects.append({"source": r.source, "error": {"kind": kind, "message": str(r.error)}})
            continue
        s = r.sample
        objects.append(
            {
                "source": r.source,
                "host": s.host,
                "port": s.port,
                "protocol": r.protocol,
                "offset": s.offset,
                "uncertainty": s.uncertainty,
                "rtt": s.rtt,
                "probes": s.probes,
                "local_time": s.local_time,
                "falseticker": r.falseticker,
            }
        )
    c = reading.consensus
    summary = {
        "offset": c.offset,
        "uncertainty": c.uncertainty,
        "sources": len(reading.results),
        "answered": reading.answered,
        "falsetickers": len(reading.falsetickers),
    }
    objects.append({"summary": summary})
    return objects


# -- plugin ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``--warn`` / ``--crit`` in seconds (``None``: that level is never raised)."""

    warn: float | None
    crit: float | None


def plugin_state(reading: Reading, thresholds: Thresholds) -> int:
    """0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, as the module docstring says."""
    c = reading.consensus
    if c.offset is None or c.uncertainty is None:
        return UNKNOWN
    worst = abs(c.offset) + c.uncertainty
    if thresholds.crit is not None and worst > thresholds.crit:
        return CRITICAL
    if thresholds.warn is not None and worst > thresholds.warn:
        return WARNING
    return OK


def plugin_line(reading: Reading, thresholds: Thresholds) -> tuple[int, str]:
    """The plugin's state and its one output line (perfdata only when there is an offset)."""
    state = plugin_state(reading, thresholds)
    c = reading.consensus
    head = f"TIME {STATE_NAMES[state]} - "
    if c.offset is None or c.uncertainty is None:
        return state, head + summary_text(reading)
    worst = abs(c.offset) + c.uncertainty
    message = f"offset {_offset(c.offset, c.uncertainty)}"
    limit = thresholds.crit if state == CRITICAL else thresholds.warn
    if state in (WARNING, CRITICAL) and limit is not None:
        message += f", may be {worst:.3f} s off (> {limit:g} s)"
    if thresholds.warn is not None and c.uncertainty > thresholds.warn:
        message += " (uncertainty alone exceeds --warn: try --precise)"
    message += f", {_agree(c)}" + _marks(reading)
    return state, f"{head}{message} | {_perfdata(reading, thresholds)}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _perfdata(reading: Reading, thresholds: Thresholds) -> str:
    c = reading.consensus
    assert c.offset is not None
    assert c.uncertainty is not None
    parts = [
        f"offset={c.offset:.6f}s;{_num(thresholds.warn)};{_num(thresholds.crit)};",
        f"uncertainty={c.uncertainty:.6f}s",
    ]
    if reading.max_rtt is not None:
        parts.append(f"rtt={reading.max_rtt:.6f}s")
    return " ".join(parts)


def worst_state(states: Sequence[int]) -> int:
    """The most severe of ``states`` (CRITICAL > WARNING > UNKNOWN > OK); UNKNOWN for none."""
    if not states:
        return UNKNOWN
    return max(states, key=_SEVERITY.__getitem__)


# -- watch mode --------------------------------------------------------------------------------


def _stamp(when: float) -> str:
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def watch_line(reading: Reading, when: float) -> str:
    """One line for one reading: UTC time, the protocols, then the summary."""
    protocols = sorted({r.protocol for r in reading.results})
    return f"{_stamp(when)}  {','.join(protocols)}  {summary_text(reading)}"


@dataclass
class WatchStats:
    """What a watch has seen so far, for its closing summary."""

    readings: int = 0
    answered: int = 0
    no_majority: int = 0
    errors: int = 0
    offsets: list[float] = field(default_factory=list)
    states: list[int] = field(default_factory=list)

    def add(self, reading: Reading, state: int | None = None) -> None:
        """Count one reading (and its plugin state, in plugin mode)."""
        self.readings += 1
        self.errors += len(reading.errors)
        if reading.answered:
            self.answered += 1
        offset = reading.consensus.offset
        if offset is None:
            self.no_majority += reading.answered > 0
        else:
            self.offsets.append(offset)
        if state is not None:
            self.states.append(state)

    def summary(self) -> str:
        """One closing line, as ping's statistics."""
        text = f"--- {self.readings} reading{'s' if self.readings != 1 else ''}"
        if self.offsets:
            mean = math.fsum(self.offsets) / len(self.offsets)
            text += (
                f": combined offset min {_s(min(self.offsets))} / mean {_s(mean)}"
                f" / max {_s(max(self.offsets))}"
            )
        text += f"; {self.readings - self.answered} with no answer"
        errors = f"{self.errors} source error{'s' if self.errors != 1 else ''}"
        text += f", {self.no_majority} with no majority, {errors}"
        return text
