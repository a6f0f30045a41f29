"""How ``time`` writes a reading: text, JSON lines and plugin lines, from readings built whole."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import ConnectError, ProtocolError, Timeout, TimeProtocolError, TimeSample
from trio_timehttp._errors import TimeHTTPError
from trio_timehttp._readings import error_kind, make_reading, protocol_of
from trio_timehttp._time_report import (
    Thresholds,
    WatchStats,
    json_objects,
    plugin_line,
    plugin_state,
    text_lines,
    watch_line,
    worst_state,
)

# The monitoring-plugins guidelines' output: "STATUS - text | perfdata", where
# perfdata is space-separated 'label'=value[UOM];[warn];[crit];[min];[max]
# (https://www.monitoring-plugins.org/doc/guidelines.html#AEN200).
LABEL = r"(?:'[^'=]+'|[^'= ]+)"
VALUE = r"-?[0-9]+(?:\.[0-9]+)?"
UOM = r"(?:s|ms|us|%|B|KB|MB|TB|c)?"
RANGE = r"(?:@?(?:~|-?[0-9]+(?:\.[0-9]+)?)?:?(?:-?[0-9]+(?:\.[0-9]+)?)?)"
PERF = rf"{LABEL}={VALUE}{UOM}(?:;{RANGE}){{0,2}}(?:;(?:{VALUE})?){{0,2}}"
PLUGIN_LINE = re.compile(
    rf"^TIME (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+(?: \| {PERF}(?: {PERF})*)?$"
)

JSON_SOURCE_KEYS = ["source", "host", "port", "protocol", "offset", "uncertainty", "rtt",
                    "probes", "local_time", "falseticker"]  # fmt: skip
JSON_SUMMARY_KEYS = ["offset", "uncertainty", "sources", "answered", "falsetickers"]


def sample(
    offset: float, uncertainty: float = 0.5, rtt: float = 0.002, protocol: str = "tcp"
) -> TimeSample:
    local = 1796156000.0
    return TimeSample(host="h", port=37, protocol=protocol, server_time=local + offset,
                      local_time=local, offset=offset, rtt=rtt,
                      uncertainty=uncertainty)  # fmt: skip


def reading(*results: TimeSample | TimeHTTPError, udp: bool = False):  # type: ignore[no-untyped-def]
    sources = [f"s{i}:37" for i in range(len(results))]
    return make_reading(sources, list(results), [protocol_of(s, udp) for s in sources])


# -- pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (Timeout("x"), "timeout"),
        (ConnectError("x"), "connect_error"),
        (TimeProtocolError("x"), "protocol_error"),
        (ProtocolError("x"), "protocol_error"),
        (TimeHTTPError("x"), "error"),
        (ValueError("x"), "error"),
    ],
)
def test_error_kinds_are_stable_names(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def test_a_subclass_named_in_the_table_gets_its_own_kind() -> None:
    class ProxyError(ConnectError):
        pass

    class Other(ConnectError):
        pass

    assert error_kind(ProxyError("x")) == "proxy_error"
    assert error_kind(Other("x")) == "connect_error"


def test_protocol_of() -> None:
    assert protocol_of("HTTPS://x/", False) == "https"
    assert protocol_of("http://x/", True) == "http"
    assert protocol_of("x:37", True) == "udp"
    assert protocol_of("[::1]:37", False) == "tcp"


def test_make_reading_wants_one_result_per_source() -> None:
    with pytest.raises(ValueError, match="one result"):
        make_reading(["a"], [], ["tcp"])


# -- text --------------------------------------------------------------------------------------


def test_text_names_protocol_and_marks_the_falseticker() -> None:
    lines = text_lines(reading(sample(0.01), sample(0.02), sample(100.0), ConnectError("refused")))
    assert len(lines) == 5
    assert all("  tcp  " in line for line in lines[:4])
    assert lines[2].endswith("  falseticker")
    assert not any(line.endswith("falseticker") for line in lines[:2])
    assert "error: refused" in lines[3]
    assert lines[4].startswith("combined offset +0.015 s +- 0.495 s: 2 of 3 answers agree")
    assert "falseticker: s2:37" in lines[4]
    assert "failed: s3:37 (connect_error)" in lines[4]


def test_text_two_that_disagree() -> None:
    summary = text_lines(reading(sample(0.0), sample(100.0)))[-1]
    assert "cannot tell which is right" in summary
    assert "median +50.000 s" in summary


def test_text_no_majority_of_four() -> None:
    summary = text_lines(reading(sample(0.0), sample(0.1), sample(50.0), sample(50.1)))[-1]
    assert summary.startswith("no majority of the 4 answers agrees (at most 2 overlap)")


def test_text_flags_a_zero_from_the_server() -> None:
    lines = text_lines(reading(sample(289827889.837), sample(0.01)))
    assert "falseticker: implausible" in lines[0]
    assert lines[2].startswith("combined offset +0.010 s +- 0.500 s: one answer")
    assert "implausible: s0:37" in lines[2]


def test_text_only_implausible() -> None:
    assert text_lines(reading(sample(-1e9)))[-1].startswith("no plausible answer")


def test_text_none_answered() -> None:
    lines = text_lines(reading(Timeout("t"), ConnectError("c"), udp=True))
    assert all("  udp  " in line for line in lines[:2])
    assert lines[2] == "no source answered (2 of 2 failed)"


# -- JSON --------------------------------------------------------------------------------------


def test_json_objects_have_exactly_the_api_fields() -> None:
    objects = json_objects(reading(sample(0.01), sample(100.0), sample(0.02), Timeout("late")))
    for obj in objects[:3]:
        assert list(obj) == JSON_SOURCE_KEYS
        assert obj["protocol"] == "tcp"
        assert obj["probes"] == 1
    assert [o["falseticker"] for o in objects[:3]] == [False, True, False]
    assert objects[3] == {"source": "s3:37", "error": {"kind": "timeout", "message": "late"}}
    summary = objects[4]["summary"]
    assert list(summary) == JSON_SUMMARY_KEYS
    assert summary["sources"] == 4
    assert summary["answered"] == 3
    assert summary["falsetickers"] == 1
    assert summary["offset"] == pytest.approx(0.015)
    json.dumps(objects)  # all serialisable


def test_json_summary_without_a_majority_has_null_offset() -> None:
    summary = json_objects(reading(sample(0.0), sample(100.0)))[-1]["summary"]
    assert summary["offset"] is None
    assert summary["uncertainty"] is None
    assert json.loads(json.dumps(summary))["offset"] is None


# -- plugin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "uncertainty", "state"),
    [
        (0.0, 0.4, 0),  # whole interval within +-0.5
        (0.05, 0.45, 0),  # touching the threshold is not beyond it
        (0.2, 0.4, 1),  # middle within 0.5, bound beyond: not OK
        (0.9, 0.05, 1),
        (0.9, 0.2, 2),  # bound straddles crit
        (-3.0, 0.5, 2),  # sign does not matter
    ],
)
def test_plugin_state_uses_the_bound_not_the_middle(
    offset: float, uncertainty: float, state: int
) -> None:
    assert plugin_state(reading(sample(offset, uncertainty)), Thresholds(0.5, 1.0)) == state


def test_plugin_unknown_without_answers_or_majority() -> None:
    t = Thresholds(0.5, 1.0)
    assert plugin_state(reading(Timeout("t")), t) == 3
    assert plugin_state(reading(sample(0.0), sample(100.0)), t) == 3
    assert plugin_state(reading(sample(1e9)), t) == 3


def test_plugin_lines_follow_the_guidelines_grammar() -> None:
    cases = [
        (reading(sample(0.01, 0.01)), Thresholds(0.5, 1.0), "OK"),
        (reading(sample(0.7, 0.01), sample(0.71, 0.01)), Thresholds(0.5, 1.0), "WARNING"),
        (reading(sample(-5.0, 0.5), Timeout("t")), Thresholds(0.5, 1.0), "CRITICAL"),
        (reading(sample(0.0), sample(100.0)), Thresholds(0.5, 1.0), "UNKNOWN"),
        (reading(Timeout("t")), Thresholds(0.5, None), "UNKNOWN"),
        (reading(sample(0.01)), Thresholds(None, 2.0), "OK"),
    ]
    for r, thresholds, name in cases:
        state, line = plugin_line(r, thresholds)
        match = PLUGIN_LINE.match(line)
        assert match, line
        assert match.group(1) == name
        assert state == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[name]


def test_plugin_perfdata_values() -> None:
    _, line = plugin_line(reading(sample(0.7, 0.01, rtt=0.004)), Thresholds(0.5, 1.0))
    assert line.endswith(
        "| offset=0.700000s;0.500000;1.000000; uncertainty=0.010000s rtt=0.004000s"
    )
    assert "may be 0.710 s off (> 0.5 s)" in line
    _, line = plugin_line(reading(sample(0.1, 0.6)), Thresholds(0.5, None))
    assert "offset=0.100000s;0.500000;;" in line
    assert "WARNING" in line


def test_plugin_hints_at_precise_when_the_uncertainty_alone_is_too_wide() -> None:
    _, line = plugin_line(reading(sample(0.0, 1.0)), Thresholds(2.0, 3.0))
    assert "try --precise" not in line
    _, line = plugin_line(reading(sample(0.0, 0.6)), Thresholds(0.5, 3.0))
    assert "uncertainty alone exceeds --warn: try --precise" in line


@given(
    st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(0, 10)), min_size=0, max_size=6),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_every_plugin_line_parses(pairs: list[tuple[float, float]], w: float, c: float) -> None:
    r = reading(*(sample(o, u) for o, u in pairs), Timeout("t"))
    state, line = plugin_line(r, Thresholds(min(w, c), max(w, c)))
    match = PLUGIN_LINE.match(line)
    assert match, line
    assert state == plugin_state(r, Thresholds(min(w, c), max(w, c)))


def test_worst_state() -> None:
    assert worst_state([0, 3, 0]) == 3
    assert worst_state([3, 1]) == 1
    assert worst_state([1, 2, 3]) == 2
    assert worst_state([]) == 3


# -- watch -------------------------------------------------------------------------------------


def test_watch_line_and_summary() -> None:
    r = reading(sample(0.25), sample(0.25))
    line = watch_line(r, 1796156000.0)
    assert line.startswith("2026-12-01T20:13:20Z  tcp  combined offset +0.250 s")
    stats = WatchStats()
    stats.add(r)
    stats.add(reading(sample(0.0), sample(100.0)))
    stats.add(reading(Timeout("t")))
    stats.add(reading(sample(-0.25), sample(-0.25)))
    assert stats.summary() == (
        "--- 4 readings: combined offset min -0.250 s / mean +0.000 s / max +0.250 s; "
        "1 with no answer, 1 with no majority, 1 source error"
    )
    stats.add(reading(Timeout("t")))
    assert stats.summary().endswith("2 with no answer, 1 with no majority, 2 source errors")


def test_json_takes_protocol_and_probes_from_the_sample() -> None:
    import dataclasses

    precise = dataclasses.replace(sample(0.01, 0.004, protocol="https"), probes=7)
    r = make_reading(["https://x/", "y"], [precise, Timeout("t")], ["https", "udp"])
    objects = json_objects(r)
    assert (objects[0]["protocol"], objects[0]["probes"]) == ("https", 7)
    assert objects[1]["error"]["kind"] == "timeout"
    assert "  udp    error: t" in text_lines(r)[1]


def test_a_narrow_interval_is_printed_to_the_microsecond() -> None:
    # +-0.3 ms printed with three decimals would read "+- 0.000 s": exact.
    lines = text_lines(reading(sample(-0.0041234, uncertainty=0.000262)))
    assert "offset -0.004123 s  +- 0.000262 s" in lines[0]
    assert "combined offset -0.004123 s +- 0.000262 s" in lines[-1]
    assert "offset +0.311 s  +- 0.512 s" in text_lines(reading(sample(0.311, 0.512)))[0]
