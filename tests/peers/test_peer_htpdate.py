"""Time over HTTP against real peers: nginx as the server, htpdate as a second opinion.

htpdate runs in query-only mode (``-q``): it must never set the clock. Both
tools read the same nginx, whose Date comes from this machine's clock, so the
truth is an offset of 0 and the two must agree within their stated precision
(htpdate: "usually within 0.5 seconds"; ours: the reported uncertainty).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
import trio

from trio_timehttp import query_http_time

from peerutil import nginx, require_program

HTPDATE_PRECISION = 0.5  # what htpdate states for itself


@pytest.fixture(scope="module")
def nginx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = str(tmp_path_factory.mktemp("nginx"))
    os.makedirs(os.path.join(prefix, "html"))
    with open(os.path.join(prefix, "html", "index.html"), "w") as f:
        f.write("<p>hello</p>\n")
    with nginx(prefix) as url:
        yield url


async def htpdate_offset(url: str) -> float:
    binary = require_program("htpdate")
    with trio.fail_after(60):
        # -q: query only, never touch the clock. -d: print each probe and the offset.
        result = await trio.run_process(
            [binary, "-q", "-d", "-p", "4", url], capture_stdout=True, capture_stderr=True
        )
    out = result.stdout.decode()
    match = re.search(r"^offset: (-?\d+(?:\.\d+)?)", out, re.MULTILINE)
    assert match, out
    return float(match[1])


async def test_plain_reading_of_nginx(nginx_url: str) -> None:
    sample = await query_http_time(nginx_url + "/")
    assert abs(sample.offset) <= sample.uncertainty


@pytest.mark.slow
async def test_precise_reading_agrees_with_htpdate(nginx_url: str) -> None:
    ours = await query_http_time(nginx_url + "/", precise=True)
    theirs = await htpdate_offset(nginx_url + "/")
    assert abs(ours.offset) <= ours.uncertainty + 0.002  # nginx's clock is ours: truth is 0
    assert ours.uncertainty < 0.05
    assert abs(ours.offset - theirs) <= HTPDATE_PRECISION + ours.uncertainty
    print(f"ours {ours.offset:+.4f} +- {ours.uncertainty:.4f} s; htpdate {theirs:+.4f} s")  # noqa: T201 (-s shows it)
