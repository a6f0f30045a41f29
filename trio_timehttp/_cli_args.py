"""Shared pieces of the command line: the parser class, argument types, usage errors."""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ._errors import InvalidURL, TimeHTTPError
from ._proxy import parse_proxy

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

PROG = "trio-timehttp"


#: A usage message longer than this is cut (a 5,000-digit port is quoted, not printed whole).
_MAX_MESSAGE = 300


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see (one line to stderr)."""


class CommandError(Exception):
    """A runtime failure already put in words (a port in use): one line, exit 1, no --help."""


def _write_stdout(text: str) -> None:
    """``text`` to stdout, flushed; raises OSError if it cannot be written (``> /dev/full``)."""
    stream = sys.stdout
    if stream is None:
        raise OSError(errno.EBADF, "stdout is closed")
    stream.write(text)
    stream.flush()


class VersionAction(argparse.Action):
    """``--version``: prints ``version`` and exits 0; a failed write raises OSError instead."""

    def __init__(
        self,
        option_strings: list[str],
        version: str,
        dest: str = argparse.SUPPRESS,
        default: str = argparse.SUPPRESS,
        help: str = "show the version and exit",
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.version = version

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        _write_stdout(self.version.replace("%(prog)s", parser.prog) + "\n")
        parser.exit(0)


class TopParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (with a pointer to --help).

    Abbreviated options are refused (``allow_abbrev=False``), so a flag added
    later cannot change what an existing script's abbreviation meant; help
    that cannot be written raises OSError rather than exiting 0.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        if file is not None:
            super().print_help(file)
        else:
            _write_stdout(self.format_help())

    def error(self, message: str) -> NoReturn:
        # argparse quotes what was typed (``unrecognized arguments: ...``,
        # ``invalid choice``): escaped, like every message of ours, and cut.
        self.exit(2, f"{self.prog}: error: {usage_text(message)} (see {self.prog} --help)\n")


class Parser(TopParser):
    """A subcommand's parser: its errors point to its own ``--help``, and it takes ``-v``.

    ``prog`` is ``trio-timehttp get``, so a mistake reads ``trio-timehttp get:
    error: ... (see trio-timehttp get --help)``. ``-v``/``--verbose`` after
    the subcommand's name counts into ``more_verbose`` (the top-level ``-v``
    counts into ``verbose``; argparse would let a subcommand's default
    overwrite it), and ``main`` adds the two, so ``-v get -v`` is ``-vv``. A
    subcommand may re-add ``-v`` with its own help text
    (``conflict_handler="resolve"``), keeping ``dest="more_verbose"``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-v",
            "--verbose",
            dest="more_verbose",
            action="count",
            default=0,
            help="more logging on stderr (-vv for debug), here or before the subcommand",
        )


def listen_reason(exc: OSError, port: int) -> str:
    """Why listening on ``port`` failed, in lower-case words (``address already in use``)."""
    if isinstance(exc, PermissionError) and 0 < port < 1024:
        return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if isinstance(exc, socket.gaierror):
        return f"no such address ({(exc.strerror or str(exc)).lower()})"
    return (_in_words(exc) or readable(str(exc))).lower()


def cannot_listen(what: str, host: str, port: int, exc: OSError) -> CommandError:
    """``cannot listen for metrics on 127.0.0.1:8081: address already in use``, exit 1."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return CommandError(f"cannot listen {what}on {where}: {listen_reason(exc, port)}")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def timeout_arg(text: str) -> float | None:
    """Seconds for a total deadline; ``0`` means none (a long download may need that)."""
    value = non_negative_float(text)
    return None if value == 0 else value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}: {value}")
        return value

    return parse


# RFC 9110 section 5.1: a field name is a token.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SURROGATE = re.compile("[\udc80-\udcff]")
# RFC 9110 section 5.5: no control character in a field value but HTAB.
_VALUE_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def header_arg(text: str) -> tuple[str, str]:
    """``-H 'Name: value'``: a field that can go on the wire, else ``ArgumentTypeError``.

    The name is a token; the value holds no control character but tab (a
    CR or LF would start another field) and only Latin-1 characters (what
    HTTP/1.1 carries).
    """
    if _SURROGATE.search(text):
        # Bytes that were not UTF-8 (a Latin-1 terminal's "caf\xe9"): take
        # them as Latin-1, what HTTP/1.1 field values carry.
        text = text.encode("utf-8", "surrogateescape").decode("latin-1")
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    if not _FIELD_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not a header name (a token): {name!r} in {text!r}")
    value = value.strip()
    if _VALUE_CONTROL.search(value):
        raise argparse.ArgumentTypeError(
            f"a header value cannot hold CR, LF or other control characters: {text!r}"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"a header value can only hold Latin-1 characters: {text!r}"
        ) from None
    return name, value


def proxy_arg(text: str) -> str:
    """``--proxy URL``: one ``parse_proxy`` accepts (kept as typed), else ``ArgumentTypeError``.

    The message shows the URL with any credentials replaced by ``***``.
    """
    try:
        parse_proxy(text)
    except InvalidURL as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# C0 (tab and newline too), DEL, C1, the bidirectional overrides and isolates,
# the line and paragraph separators, and lone surrogates (undecodable bytes).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def usage_text(message: str) -> str:
    """A usage mistake's words for stderr: escaped (``printable``) and cut at ``_MAX_MESSAGE``.

    The messages quote what was typed, which may be a terminal escape or a
    port of 5,000 digits.
    """
    text = printable(message)
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:_MAX_MESSAGE]}... ({len(text) - _MAX_MESSAGE} more characters)"
    return text


def printable(text: str) -> str:
    r"""``text`` safe to show on a terminal: every control character written as an escape.

    A server's words (status, reason, header names and values, error
    messages) must not drive the user's terminal: ``\x1b]0;pwned\x07`` is
    shown as those characters, a tab as ``\t``, a newline as ``\n``, a C1
    control as ``\x9b``, a bidirectional override as ``\u202e``. All else
    (printable ASCII, Latin-1, any other Unicode) is left as it is.
    """
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (a nursery's wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _os_cause(exc: BaseException) -> OSError | None:
    """The first operating-system error with a description behind ``exc`` (groups searched)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        # An SSLError's errno is OpenSSL's code (1: "operation not permitted" as an OS errno).
        if (
            isinstance(current, OSError)
            and not isinstance(current, ssl.SSLError)
            and (current.strerror or current.errno)
        ):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None


def describe(exc: BaseException) -> str:
    """One line for a failure: its class and message, with the cause in words.

    ``ConnectError: cannot connect to 127.0.0.1:9 (...) (connection refused)``;
    a file error names its file: ``out.bin: Permission denied``. The cause
    (the operating system's description, found through ``__cause__``, also
    inside exception groups) is added only when the message lacks it.
    """
    return printable(_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, TimeHTTPError):
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
        if exc.strerror:
            return readable(exc.strerror)
    message = readable(str(exc))
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    cause = _os_cause(exc) if exc.__cause__ is not None or exc.__context__ is not None else None
    words = _in_words(cause) if cause is not None else ""
    if words and words.lower() not in text.lower():
        text += f" ({words.lower()})"
    return text


_ERRNO_PREFIX = re.compile(r"\[Errno -?\d+\] ")
_SSL_SOURCE = re.compile(r" ?\(_ssl\.c:\d+\)")  # CPython's source line: nothing for a user
_BYTES_REPR = re.compile(r"""bytearray\(b(['"])(.*?)\1\)|\bb(['"])(.*?)\3""")
_ADDRESS_REPR = re.compile(r"\('([0-9A-Za-z.:%-]+)', (\d+)(?:, \d+, \d+)?\)")


def readable(message: str) -> str:
    """``message`` without the Python reprs some lower layers leave in it.

    ``[Errno -2] `` goes; ``bytearray(b'HTTP/1.1 2x0')`` becomes
    ``"HTTP/1.1 2x0"``; an address tuple ``('127.0.0.1', 9)`` becomes
    ``127.0.0.1:9`` (``[::1]:9`` for IPv6); CPython's ``(_ssl.c:1006)`` goes.
    The messages should not carry them in the first place; this keeps the
    command line readable meanwhile.
    """
    message = _ERRNO_PREFIX.sub("", _SSL_SOURCE.sub("", message))
    message = _BYTES_REPR.sub(lambda m: f'"{m.group(2) if m.group(1) else m.group(4)}"', message)
    return _ADDRESS_REPR.sub(
        lambda m: (
            f"[{m.group(1)}]:{m.group(2)}" if ":" in m.group(1) else f"{m.group(1)}:{m.group(2)}"
        ),
        message,
    )


def _in_words(exc: OSError) -> str:
    """The system's words for an OSError (``Connection refused``), without any repr."""
    if isinstance(exc, socket.gaierror) or not isinstance(exc.errno, int) or exc.errno <= 0:
        return exc.strerror or ""  # resolver errors: strerror is the resolver's text
    return os.strerror(exc.errno)  # trio's strerror embeds the address tuple's repr


def add_proxy_options(parser: argparse.ArgumentParser, proxy_help: str) -> None:
    """``--proxy URL`` and ``--no-proxy`` (they exclude each other), as on get, time, monitor."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--proxy", metavar="URL", type=proxy_arg, help=proxy_help)
    group.add_argument(
        "--no-proxy",
        dest="trust_env",
        action="store_false",
        help="ignore http_proxy, https_proxy, all_proxy and no_proxy in the environment",
    )
