"""The public surface is pinned, and the pure modules stay pure."""

from __future__ import annotations

import ast
import pathlib

import pytest

import trio_timehttp

PACKAGE = pathlib.Path(trio_timehttp.__file__).parent

EXPECTED = {
    "BodyTooLarge",
    "BytesConsumer",
    "Client",
    "ConnectError",
    "Consumer",
    "FileConsumer",
    "HTTPError",
    "Headers",
    "InvalidURL",
    "ProtocolError",
    "ProxyError",
    "RedirectError",
    "RedirectingConsumer",
    "Request",
    "Response",
    "TIME1970",
    "TextConsumer",
    "TimeHTTPError",
    "TimeProtocolError",
    "TimeSample",
    "Timeout",
    "TooManyRedirects",
    "__version__",
    "decode_time",
    "encode_time",
    "fetch",
    "query_http_time",
    "query_many",
    "query_time",
    "serve_time",
    "serve_time_tcp",
    "serve_time_udp",
}

PURE = [
    "_rfc868",
    "_sample",
    "_timing",
    "_headers",
    "_urls",
    "_hostchars",
    "_models",
    "_combine",
    "_httpdate",
    "_errors",
    "_version",
    "_headreader",
    "_consumer",
    "_framing",
    "_access",
    "_readings",
    "_time_report",
    "_proxy",
    "_decoding",
    "_retry",
    "_resume",
    "_monitor_state",
]
IO = {"trio", "h11", "socket", "select", "selectors", "asyncio", "logging"}


def test_all_is_the_contract() -> None:
    assert set(trio_timehttp.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(trio_timehttp, name) is not None, name


def test_error_tree() -> None:
    t = trio_timehttp
    assert issubclass(t.ConnectError, t.TimeHTTPError)
    assert issubclass(t.ConnectError, OSError)
    assert issubclass(t.Timeout, TimeoutError)
    assert issubclass(t.TimeProtocolError, ValueError)
    for cls in (t.InvalidURL, t.ProtocolError, t.BodyTooLarge, t.TooManyRedirects,
                t.RedirectError):  # fmt: skip
        assert issubclass(cls, t.HTTPError)
        assert issubclass(cls, t.TimeHTTPError)
    assert issubclass(t.InvalidURL, ValueError)
    assert issubclass(t.ProxyError, t.ConnectError)


def test_version_is_single_sourced() -> None:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'path = "trio_timehttp/_version.py"' in text
    assert trio_timehttp.__version__.count(".") == 2


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO, f"{module} imports {imported & IO}"


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()
