"""Write the small intersphinx inventories the docs build reads offline.

The docs link to Python's and Trio's documentation through intersphinx. The
build machines (CI included) have no route to those sites, so instead of
downloading ``objects.inv`` at build time the build reads these files,
written by this script from the table below: each entry is a name the docs
or the API signatures mention and the page (and anchor) on the official site
that documents it. Add a row when a page starts mentioning a new name, then
run ``python docs/_inventories/make_inventories.py``. With
``TT_DOCS_ONLINE=1`` the build fetches the real inventories first and falls
back to these.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).parent

# (name, role, page#anchor) -- "$" in the anchor stands for the name.
PYTHON = [
    ("str", "class", "library/stdtypes.html#$"),
    ("bytes", "class", "library/stdtypes.html#$"),
    ("int", "class", "library/functions.html#$"),
    ("float", "class", "library/functions.html#$"),
    ("bool", "class", "library/functions.html#$"),
    ("list", "class", "library/stdtypes.html#$"),
    ("tuple", "class", "library/stdtypes.html#$"),
    ("dict", "class", "library/stdtypes.html#$"),
    ("None", "data", "library/constants.html#$"),
    ("BaseException", "exception", "library/exceptions.html#$"),
    ("Exception", "exception", "library/exceptions.html#$"),
    ("OSError", "exception", "library/exceptions.html#$"),
    ("TimeoutError", "exception", "library/exceptions.html#$"),
    ("ValueError", "exception", "library/exceptions.html#$"),
    ("LookupError", "exception", "library/exceptions.html#$"),
    ("ExceptionGroup", "exception", "library/exceptions.html#$"),
    ("typing.Any", "data", "library/typing.html#$"),
    ("typing.Protocol", "class", "library/typing.html#$"),
    ("collections.abc.Mapping", "class", "library/collections.abc.html#$"),
    ("collections.abc.Sequence", "class", "library/collections.abc.html#$"),
    ("collections.abc.Iterable", "class", "library/collections.abc.html#$"),
    ("collections.abc.AsyncIterable", "class", "library/collections.abc.html#$"),
    ("collections.abc.AsyncIterator", "class", "library/collections.abc.html#$"),
    ("os.PathLike", "class", "library/os.html#$"),
    ("ssl.SSLContext", "class", "library/ssl.html#$"),
    ("socket.socket", "class", "library/socket.html#$"),
    ("time.time", "function", "library/time.html#$"),
    ("codecs.lookup", "function", "library/codecs.html#$"),
    ("html.parser.HTMLParser", "class", "library/html.parser.html#$"),
    ("xml.etree.ElementTree.XMLParser", "class", "library/xml.etree.elementtree.html#$"),
    ("logging", "module", "library/logging.html#module-logging"),
    ("argparse", "module", "library/argparse.html#module-argparse"),
]
TRIO = [
    ("trio.run", "function", "reference-core.html#$"),
    ("trio.open_nursery", "function", "reference-core.html#$"),
    ("trio.Nursery", "class", "reference-core.html#$"),
    ("trio.Nursery.start", "method", "reference-core.html#$"),
    ("trio.Nursery.start_soon", "method", "reference-core.html#$"),
    ("trio.CancelScope", "class", "reference-core.html#$"),
    ("trio.move_on_after", "function", "reference-core.html#$"),
    ("trio.fail_after", "function", "reference-core.html#$"),
    ("trio.sleep", "function", "reference-core.html#$"),
    ("trio.Cancelled", "exception", "reference-core.html#$"),
    ("trio.TaskStatus", "class", "reference-core.html#$"),
    ("trio.TASK_STATUS_IGNORED", "data", "reference-core.html#$"),
    ("trio.SocketListener", "class", "reference-io.html#$"),
    ("trio.SocketStream", "class", "reference-io.html#$"),
    ("trio.SSLStream", "class", "reference-io.html#$"),
    ("trio.serve_tcp", "function", "reference-io.html#$"),
    ("trio.open_tcp_stream", "function", "reference-io.html#$"),
    ("trio.socket.SocketType", "class", "reference-io.html#$"),
    ("trio.testing.MockClock", "class", "reference-testing.html#$"),
]


def write(path: Path, project: str, version: str, rows: list[tuple[str, str, str]]) -> None:
    lines = "".join(f"{name} py:{role} 1 {uri} -\n" for name, role, uri in sorted(rows))
    head = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(head.encode() + zlib.compress(lines.encode(), 9))


if __name__ == "__main__":
    write(HERE / "python.inv", "Python", "3", PYTHON)
    write(HERE / "trio.inv", "Trio", "stable", TRIO)
    print(f"wrote {HERE / 'python.inv'} ({len(PYTHON)}) and {HERE / 'trio.inv'} ({len(TRIO)})")
