"""One reading of several sources, judged together (pure).

A *reading* is one round of queries: for each source either a ``TimeSample``
or the ``TimeHTTPError`` it failed with. ``make_reading`` pairs them with
what the sources agree on (``_combine.consensus``), so that every output --
``time``'s text, JSON and plugin lines, and ``monitor``'s metrics -- reports
the same judgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._combine import Consensus, consensus
from ._errors import TimeHTTPError
from ._sample import TimeSample

__all__ = ["ERROR_KINDS", "Reading", "SourceResult", "error_kind", "make_reading", "protocol_of"]

#: The stable name of each error class (``kind`` in JSON, the ``kind`` label
#: in metrics), looked up along the exception's MRO. Names, not classes, so
#: that a subclass added later (``ProxyError``) has its own kind the day it
#: exists, and falls back to its base's kind until then.
ERROR_KINDS: dict[str, str] = {
    "Timeout": "timeout",
    "ProxyError": "proxy_error",
    "ConnectError": "connect_error",
    "TimeProtocolError": "protocol_error",
    "ProtocolError": "protocol_error",
    "InvalidURL": "invalid_url",
    "TooManyRedirects": "too_many_redirects",
    "RedirectError": "redirect_error",
    "BodyTooLarge": "body_too_large",
    "HTTPError": "http_error",
    "TimeHTTPError": "error",
}


def error_kind(exc: BaseException) -> str:
    """The stable snake-case name for ``exc``'s class (``"error"`` for anything else)."""
    for cls in type(exc).__mro__:
        kind = ERROR_KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return "error"


def protocol_of(source: str, udp: bool) -> str:
    """``"http"``/``"https"`` for a URL source, else ``"udp"`` or ``"tcp"`` (as ``query_many``)."""
    lowered = source.lower()
    if lowered.startswith("https://"):
        return "https"
    if lowered.startswith("http://"):
        return "http"
    return "udp" if udp else "tcp"


@dataclass(frozen=True, slots=True)
class SourceResult:
    """One source's part in a reading: its sample or its error, and the verdict on it."""

    source: str
    protocol: str
    sample: TimeSample | None
    error: TimeHTTPError | None
    falseticker: bool = False
    implausible: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """Every source's result in one round, and what the answers agree on."""

    results: tuple[SourceResult, ...]
    consensus: Consensus

    @property
    def answered(self) -> int:
        """How many sources gave a sample (plausible or not)."""
        return sum(1 for r in self.results if r.sample is not None)

    @property
    def falsetickers(self) -> tuple[SourceResult, ...]:
        return tuple(r for r in self.results if r.falseticker)

    @property
    def errors(self) -> tuple[SourceResult, ...]:
        return tuple(r for r in self.results if r.error is not None)

    @property
    def max_rtt(self) -> float | None:
        """The longest round trip among the sources kept (``None`` when none was)."""
        rtts = [r.sample.rtt for r in self.results if r.sample is not None and not r.falseticker]
        return max(rtts) if rtts else None


def make_reading(
    sources: Sequence[str],
    results: Sequence[TimeSample | TimeHTTPError],
    protocols: Sequence[str],
) -> Reading:
    """Pair each source with its result and its protocol, and judge the samples together.

    ``protocols`` label the sources that failed (``protocol_of``); a sample
    carries its own.

    Raises ``ValueError`` unless the three sequences have the same length.
    """
    if not len(sources) == len(results) == len(protocols):
        raise ValueError("one result and one protocol per source")
    answered = [i for i, r in enumerate(results) if isinstance(r, TimeSample)]
    samples = [r for r in results if isinstance(r, TimeSample)]
    verdict = consensus([s.offset for s in samples], [s.uncertainty for s in samples])
    false = {answered[j] for j in verdict.falsetickers}
    wild = {answered[j] for j in verdict.implausible}
    out = []
    for i, (source, result, protocol) in enumerate(zip(sources, results, protocols, strict=True)):
        if isinstance(result, TimeSample):
            judged = SourceResult(source, result.protocol, result, None, i in false, i in wild)
            out.append(judged)
        else:
            out.append(SourceResult(source, protocol, None, result))
    return Reading(tuple(out), verdict)
