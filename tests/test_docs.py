"""The code in the documentation runs, against local servers: the docs cannot drift from the API.

Every ``.. code-block:: python`` in ``docs/*.rst`` must compile (top-level
``await`` allowed: some blocks are fragments of an async function). The
complete programs — the blocks that end in ``trio.run(main)`` in the pages
listed in ``RUN`` — are run: the hosts they name (``time.example.net``,
``http://example.org``) are pointed at an RFC 868 server and an HTTP server
started here on loopback, ``trio.run(main)`` is replaced by awaiting
``main()`` inside this test's own Trio run, and what the program prints is
checked.
"""

from __future__ import annotations

import ast
import email.utils
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_timehttp as tt

from helpers import ServerRequest, serve_http

DOCS = Path(__file__).resolve().parent.parent / "docs"
RUN = ["getting-started.rst", "consumers.rst"]
_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block:: python\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The python code blocks of a reST page, dedented, with the line they start on."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        indent = len(match[1])
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(":")):
            i += 1  # blank lines and directive options
        start, body = i + 1, []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        blocks.append(Block(page.name, start, textwrap.dedent("\n".join(body)).strip() + "\n"))
    return blocks


ALL_BLOCKS = [b for page in sorted(DOCS.glob("*.rst")) for b in python_blocks(page)]
PROGRAMS = [b for b in ALL_BLOCKS if b.page in RUN and b.code.rstrip().endswith("trio.run(main)")]


def test_the_pages_have_programs_to_run() -> None:
    # A parser that found nothing would make the other tests pass vacuously.
    assert len(ALL_BLOCKS) >= 12
    assert {b.page for b in PROGRAMS} == set(RUN)
    assert len(PROGRAMS) >= 8


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_every_python_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


class Site:
    """The HTTP server behind ``http://example.org`` in the docs."""

    def __init__(self) -> None:
        self.flaky = 0

    def __call__(self, request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        date = [("date", email.utils.formatdate(usegmt=True))]
        path = request.target
        if path == "/start":
            return 302, [*date, ("location", "/page.html")], b"moved"
        if path == "/page.html":
            html = '<html><body><a href="/a">a</a> <a href="/b">b\u00e9</a>\n</body></html>\n'
            return 200, [*date, ("content-type", "text/html; charset=utf-8")], html.encode()
        if path == "/flaky":
            self.flaky += 1
            if self.flaky == 1:
                return 503, date, b"try again"
            return 200, date, b"ok now"
        return 200, [*date, ("content-type", "text/plain")], f"this is {path}".encode()


EXPECTED = {  # what each program must print (a fragment per program, by its first print)
    "offset {sample.offset": "rtt",
    "sources = [": "127.0.0.1",
    "RedirectingConsumer(body))": "200 http://127.0.0.1",
    "tt.Client(timeout=10)": "/c 200 b'this is /c'",
    "Links()": "['/a', '/b']",
    "no luck:": "no luck:",
    "our own clock": "our own clock",
    "Counter()": "bytes, 2 lines",
    "RetryOn503": "200 b'ok now'",
}


def expected_output(code: str) -> str:
    found = [out for key, out in EXPECTED.items() if key in code]
    assert len(found) == 1, "add this program's expected output to EXPECTED"
    return found[0]


@pytest.mark.slow  # the precise reading in getting-started waits for second boundaries
@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.id)
async def test_the_programs_in_the_docs_run(
    block: Block, capsys: pytest.CaptureFixture[str]
) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: tt.serve_time_tcp(0, host="127.0.0.1", task_status=task_status)
        )
        time_host = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        web = await nursery.start(serve_http, Site())
        code = (
            block.code.replace("time.example.net:37", time_host)
            .replace("time.example.net", time_host)
            .replace("http://example.org", web.base_url)
        )
        program, _, tail = code.rstrip().rpartition("trio.run(main)")
        assert not tail
        namespace: dict[str, Any] = {"__name__": "docs_example"}
        exec(compile(program, block.id, "exec"), namespace)  # our own docs, run on purpose
        with trio.fail_after(30):
            await namespace["main"]()
        nursery.cancel_scope.cancel()
    out = capsys.readouterr().out
    assert expected_output(block.code) in out, out
