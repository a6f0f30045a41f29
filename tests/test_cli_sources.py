"""``time`` and ``monitor`` check their sources before any reading.

A source that can never be read, or one given twice (after normalising the
host's case and a default port), is a usage error: exit 2, one line, and no
reading is made (a duplicated source would be two votes for one clock).
"""

from __future__ import annotations

import sys

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from test_cli import one_line_error

from trio_timehttp._cli_args import UsageError
from trio_timehttp._cli_sources import check_sources, source_key

CLI = [sys.executable, "-m", "trio_timehttp"]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Host", "host:37"),
        ("[::1]:37", "::1"),
        ("http://A/", "http://a:80/"),
        ("HTTPS://a/x", "https://a:443/x"),
    ],
)
def test_the_same_source_written_two_ways_is_one_key(a: str, b: str) -> None:
    assert source_key(a, 37) == source_key(b, 37)
    with pytest.raises(UsageError, match="more than once"):
        check_sources([a, "other", b], 37)


def test_leading_zeros_in_a_port_are_the_same_source_in_both_forms() -> None:
    # A URL source and a host source read "013738" alike: port 13738 (RFC 3986: *DIGIT).
    assert source_key("127.0.0.1:013738", 37) == source_key("127.0.0.1:13738", 37)
    assert source_key("http://127.0.0.1:018431/", 37) == "http://127.0.0.1:18431/"


@pytest.mark.parametrize(
    ("a", "b"),
    [("a:37", "a:38"), ("http://a/x", "http://a/y"), ("http://a/", "https://a/"), ("a", "b")],
)
def test_different_sources_stay_apart(a: str, b: str) -> None:
    check_sources([a, b], 37)


@pytest.mark.parametrize(
    "source",
    ["htp://x", "ntp://pool:123", "127.0.0.1:65536", "h:0", "[::1", "h:", "http://[::1",
     "h:" + "9" * 5000, "http://h:" + "9" * 5000 + "/", "http://[fe80::1%25lo]/",
     "bad\x1bhost", "bad host:37"],
)  # fmt: skip
def test_a_source_that_can_never_be_read_is_named(source: str) -> None:
    with pytest.raises(UsageError, match="can never be read") as caught:
        source_key(source, 37)
    assert repr(source) in str(caught.value)


@given(st.from_regex(r"[a-z][a-z0-9]{0,20}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True))
def test_host_case_and_the_default_port_never_matter(host: str) -> None:
    keys = {source_key(host, 37), source_key(host.upper(), 37), source_key(f"{host}:37", 37)}
    assert len(keys) == 1
    url_keys = {source_key(f"http://{host}/", 37), source_key(f"http://{host.upper()}:80/", 37)}
    assert len(url_keys) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["time", "127.0.0.1:9", "127.0.0.2:9", "127.0.0.1:9"], "more than once: '127.0.0.1:9'"),
        (["time", "--json", "127.0.0.1:65536"], "out of range"),
        (["time", "HOST", "host:37"], "more than once: 'host:37' (as 'HOST')"),
        (["monitor", "--metrics-port", "0", "htp://x"], "unsupported scheme 'htp'"),
        (["monitor", "--metrics-port", "0", "127.0.0.1:65536"], "out of range"),
    ],
)
async def test_bad_sources_are_usage_errors_before_any_reading(
    args: list[str], message: str
) -> None:
    with trio.fail_after(60):
        result = await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                        check=False)  # fmt: skip
    err = one_line_error(result)
    assert result.returncode == 2, err
    assert message in err
    assert result.stdout == b""  # no reading was reported
