"""The public surface is pinned, and the pure modules stay pure."""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import pathlib
import re
from typing import Any

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
    "_shown",
    "_checks",
    "_consumers",
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


# ---------------------------------------------------------------------------
# Docstrings read as contracts (issue 17): every public name and public method
# says more than one line, names no file users do not have, and no signature
# shows a sentinel as ``<object object at 0x...>``.

_VALUES = {"TIME1970", "__version__"}  # plain values: documented in docs/api.rst
_FORBIDDEN = re.compile(r"API\.md|\bthe seed\b|\bseed's\b|\b7-\d{1,2}\b", re.IGNORECASE)


def _public_members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties a class defines itself (not inherited ones)."""
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            members.append((f"{cls.__name__}.{name}", value))
    return members


def _documented() -> list[tuple[str, object]]:
    """Every public name of the package, then every public method of its classes."""
    names = [(n, getattr(trio_timehttp, n)) for n in sorted(EXPECTED - _VALUES)]
    methods = [m for _, obj in names if inspect.isclass(obj) for m in _public_members(obj)]
    return names + methods


DOCUMENTED = _documented()


def test_the_public_methods_are_found() -> None:
    found = {name for name, _ in DOCUMENTED}
    for name in ("Client.fetch", "Client.stream", "Client.aclose", "Response.aiter_bytes",
                 "Response.aread", "Headers.get_list", "Consumer.feed", "Consumer.close",
                 "RedirectingConsumer.http_error", "BytesConsumer.body"):  # fmt: skip
        assert name in found


@pytest.mark.parametrize(("name", "obj"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_docstring_is_more_than_one_line(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) if isinstance(obj, property) else obj.__doc__
    assert doc, f"{name} has no docstring"
    lines = [line for line in inspect.cleandoc(doc).splitlines() if line.strip()]
    assert len(lines) > 1, f"{name}'s docstring is one line: {doc!r}"


@pytest.mark.parametrize(("name", "obj"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_docstring_names_nothing_users_lack(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    found = _FORBIDDEN.search(doc)
    assert found is None, f"{name}'s docstring mentions {found[0]!r}"


def _callables() -> list[tuple[str, object]]:
    return [(n, o) for n, o in DOCUMENTED if callable(o) and not isinstance(o, property)]


@pytest.mark.parametrize(("name", "obj"), _callables(), ids=[n for n, _ in _callables()])
def test_signature_defaults_read_well(name: str, obj: Any) -> None:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return  # exceptions take *args, as BaseException does
    text = str(inspect.signature(obj))
    assert "<object object" not in text, f"{name}{text}"
    assert " at 0x" not in text, f"{name}{text}"


def test_the_client_default_reads_as_the_clients_setting() -> None:
    for method in (trio_timehttp.Client.fetch, trio_timehttp.Client.stream):
        default = inspect.signature(method).parameters["timeout"].default
        assert repr(default) == "<the Client's setting>"


def _help(*argv: str) -> str:
    from trio_timehttp import _cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        _cli._build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


@pytest.mark.parametrize("command", ["", "serve", "time", "get", "monitor", "demo"])
def test_cli_help_is_plain_words(command: str) -> None:
    text = _help(*filter(None, [command]))
    assert "usage: trio-timehttp" in text
    found = _FORBIDDEN.search(text)
    assert found is None, f"CLI help mentions {found[0]!r}:\n{text}"
    # The CLI reference renders this help as reST, where |word| is a substitution.
    assert re.search(r"\|[^\s|]+\|", text) is None, text


def _api_reference() -> dict[str, set[str] | None]:
    """What docs/api.rst documents: each auto*/data directive's name -> its ``:members:``.

    ``None`` stands for a bare ``:members:`` (every documented member).
    """
    text = (PACKAGE.parent / "docs" / "api.rst").read_text(encoding="utf-8")
    found: dict[str, set[str] | None] = {}
    owner = None
    for line in text.splitlines():
        directive = re.match(r"\.\. (?:auto\w+|data):: (\w+)", line)
        members = re.match(r"\s+:members:(.*)", line)
        if directive:
            owner = directive[1]
            found[owner] = set()
        elif members and owner is not None:
            listed = {m.strip() for m in members[1].split(",") if m.strip()}
            found[owner] = listed or None
    return found


def test_the_api_reference_covers_every_public_name_and_method() -> None:
    documented = _api_reference()
    missing = []
    for name, _ in [*DOCUMENTED, *((v, None) for v in _VALUES)]:
        owner, _, member = name.partition(".")
        if owner not in documented:
            missing.append(name)
        elif member:
            members = documented[owner]
            if members is not None and member not in members:
                missing.append(name)
    assert not missing, f"docs/api.rst does not document {missing}"
