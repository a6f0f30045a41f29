"""``trio-timehttp get``: fetch a URL, print its status and headers, optionally save the body.

How the pieces divide, so later flags slot in where they belong:

* ``_request(args)``: method, header fields and body (``--data-binary @FILE``
  streaming will join ``-d`` here);
* ``_client_options(args)``: what the ``Client`` is built with (``--cacert``
  today; ``--proxy``, ``--retry`` and ``--compressed`` later);
* ``_open_sink(args)``: where the body goes, opened and checked before the
  request (``-C -`` resume later);
* ``_Report``: the consumer: the ``status =>``, ``name = value`` and
  ``N bytes in body`` lines on stdout,
  ``--fail``, the body handed to the sink, the progress display;
* ``_HeadTrace`` (``-v``): every hop's heads on stderr as they happen.

The sink hears ``http_complete()`` only from the requester (through
``RedirectingConsumer``), after a body whose framing proved it complete; only
then does its ``close()`` put a file in place. The sink is closed by
``cmd_get`` in a ``finally``, not by the requester, so Ctrl-C, SIGTERM (which
the CLI turns into the same unwinding), a timeout or a broken body close it
without the signal, and its temporary file goes away. The byte count is
printed for a complete body only.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import ssl
import sys
import time
import urllib.parse
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, BinaryIO, Protocol, TextIO

import trio

from ._cli_args import (
    PROG,
    CommandError,
    Parser,
    UsageError,
    add_proxy_options,
    describe,
    header_arg,
    int_in,
    printable,
    timeout_arg,
)
from ._cli_progress import Progress
from ._demo import print_head
from ._errors import InvalidURL, ProtocolError
from ._fileconsumer import FileConsumer
from ._http import Client
from ._models import Content, Request, Response
from ._redirects import RedirectingConsumer
from ._urls import parse_url

# RFC 9110 section 5.6.2: a method is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``get`` subcommand to ``sub``."""
    get = sub.add_parser(
        "get",
        help="fetch a URL: print its status and headers, or save its body",
        description="Fetch a URL and print its status line, its headers and "
        "the size of its body; with -o, save the body to FILE. Redirects are followed.",
    )
    get.add_argument("url", metavar="URL")
    get.add_argument(
        "--no-redirects",
        dest="redirects",
        action="store_false",
        help="report a redirect instead of following it",
    )
    get.add_argument(
        "--max-redirects",
        type=int_in(0, 1000),
        default=10,
        help="follow at most N redirects (default 10)",
    )
    where = get.add_mutually_exclusive_group()
    where.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=_output,
        help="write the body to FILE, in place only once complete ('-': stdout; a device, "
        "a FIFO or a symlink's target is written through, never replaced)",
    )
    where.add_argument(
        "-O",
        "--remote-name",
        action="store_true",
        help="write the body to the current directory, named as the URL's last segment",
    )
    get.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=header_arg,
        default=[],
        metavar="'Name: value'",
        help="add a request header",
    )
    get.add_argument(
        "-X",
        "--request",
        dest="method",
        type=_method,
        help="use METHOD instead of GET (or POST with -d)",
    )
    get.add_argument(
        "-I",
        "--head",
        action="store_true",
        help="ask for the status and headers only (a HEAD request)",
    )
    get.add_argument(
        "-d",
        "--data",
        action="append",
        metavar="DATA",
        help="send DATA as a form body (POST unless -X; @FILE reads FILE, @- stdin, "
        "without newlines; repeats join with &)",
    )
    get.add_argument(
        "--data-binary",
        metavar="DATA",
        help="send DATA as is (POST unless -X); @FILE streams FILE (Content-Length from its "
        "size), @- streams stdin (chunked from a pipe)",
    )
    get.add_argument(
        "--compressed",
        action="store_true",
        help="ask for gzip, deflate (and br, zstd when installed) and decode the body",
    )
    get.add_argument(
        "--retry",
        type=int_in(0, 100),
        default=0,
        metavar="N",
        help="retry N times on connect failures and on 429/503 to idempotent methods "
        "(Retry-After honoured; all inside --timeout)",
    )
    get.add_argument(
        "-C",
        "--continue-at",
        metavar="-",
        help="resume: '-C -' continues FILE.part (kept by a failed -C - download) with a "
        "Range request (-o/-O only)",
    )
    get.add_argument(
        "-f", "--fail", action="store_true", help="exit 22, without the body, on a status >= 400"
    )
    get.add_argument(
        "-s",
        "--silent",
        action="store_true",
        help="print no progress bar and no status or headers (errors still go to stderr)",
    )
    get.add_argument(
        "-v",
        "--verbose",
        dest="more_verbose",
        action="count",
        default=0,
        help="the request and response heads on stderr, credentials masked (-vv: debug log)",
    )
    get.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    get.add_argument(
        "--timeout",
        type=timeout_arg,
        default=300.0,
        help="total seconds for the whole exchange, body included (default 300; 0: none)",
    )
    add_proxy_options(
        get, "send the request through this HTTP proxy (http://[user:pass@]host:port)"
    )
    get.set_defaults(func=cmd_get)


def _output(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("FILE is empty: give a file name, or '-' for stdout")
    return text


def _method(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not an HTTP method: {text}")
    return text


# -- the request ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What ``get`` sends: the arguments of one ``Client.fetch`` besides URL and consumer."""

    method: str
    headers: list[tuple[str, str]]
    body: Content | None  # a file from --data-binary @FILE is closed by cmd_get
    timeout: float | None


def _request(args: argparse.Namespace) -> _Plan:
    """The request the flags describe; contradictions and an unusable URL are usage errors."""
    try:
        parse_url(args.url)  # a redirect's bad Location stays a runtime InvalidURL (exit 1)
    except InvalidURL as exc:
        raise UsageError(f"InvalidURL: {exc}") from None
    if args.head and (args.method or args.data or args.data_binary is not None):
        raise UsageError("-I/--head sends HEAD: it cannot take -X, -d or --data-binary")
    if args.head and (args.output or args.remote_name):
        raise UsageError("-I/--head gets no body to write to a file")
    if args.data and args.data_binary is not None:
        raise UsageError("-d and --data-binary cannot be combined")
    if args.continue_at is not None:
        if args.continue_at != "-":
            raise UsageError("-C takes '-' only: resume from what FILE.part holds")
        if not (args.output or args.remote_name) or args.output == "-":
            raise UsageError("-C - resumes a file: give -o FILE or -O")
    headers = list(args.headers)
    body: Content | None = None
    if args.data:
        body = b"&".join(_data(value) for value in args.data)
    elif args.data_binary is not None:
        body = _data_binary(args.data_binary)
    if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl
    method = args.method or ("HEAD" if args.head else "POST" if body is not None else "GET")
    return _Plan(method, headers, body, args.timeout)


def _data(value: str) -> bytes:
    """One ``-d`` value as bytes: literal text (UTF-8), or ``@FILE``/``@-`` without newlines."""
    if not value.startswith("@"):
        return value.encode()
    name = value[1:]
    try:
        if name == "-":
            data = _stdin(f"-d {value}").read()
        else:
            with open(name, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise UsageError(f"-d {value}: {exc.strerror or exc}") from exc
    return data.replace(b"\r", b"").replace(b"\n", b"")  # as curl's -d @FILE


def _data_binary(value: str) -> Content:
    """``--data-binary``: literal bytes, or ``@FILE``/``@-`` opened to stream (not read here)."""
    if not value.startswith("@"):
        return value.encode()
    name = value[1:]
    if name == "-":
        return _stdin(f"--data-binary {value}")
    try:
        return open(name, "rb")
    except OSError as exc:
        raise UsageError(f"--data-binary {value}: {exc.strerror or exc}") from exc


def _stdin(option: str) -> BinaryIO:
    """stdin's bytes for ``option``; a closed stdin (``<&-``) is a UsageError."""
    if sys.stdin is None:
        raise UsageError(f"{option}: stdin is closed")
    return sys.stdin.buffer


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``Client``."""
    options: dict[str, Any] = {"decode": args.compressed, "retries": args.retry}
    options["proxy"], options["trust_env"] = args.proxy, args.trust_env
    if args.cacert:
        try:
            options["ssl_context"] = ssl.create_default_context(cafile=args.cacert)
        except OSError as exc:  # ssl.SSLError is one too
            reason = getattr(exc, "reason", None) or exc.strerror or "unreadable"
            raise UsageError(f"--cacert {args.cacert}: {str(reason).lower()}") from exc
    return options


# -- where the body goes ---------------------------------------------------------------------


class _Sink(Protocol):
    bytes_written: int

    def http_header(self, response: Response) -> object: ...
    def feed(self, data: bytes) -> None: ...
    def http_error(self, exc: BaseException) -> None: ...
    def http_complete(self) -> None: ...
    def close(self) -> None: ...


class StdoutClosed(CommandError):
    """``-o -``: stdout's reader went before the body was written whole (exit 1).

    Unlike any other command's output, the body is the point of ``-o -``:
    losing it is a failure, not the quiet end a closed pipe (``| head``) is
    elsewhere. ``main`` points stdout at ``/dev/null`` after reporting it, so
    nothing more is tried on the dead pipe.
    """


class _Stdout:
    """``-o -``: the body to stdout as it arrives (flushed per chunk, for a live stream).

    A write that fails because stdout's reader went raises ``StdoutClosed``
    (exit 1: the body is lost); ``close()`` then writes nothing more.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.bytes_written = 0
        self.broken = False

    def http_header(self, response: Response) -> None:
        self.bytes_written = 0

    def feed(self, data: bytes) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError as exc:
            self.broken = True
            raise StdoutClosed(
                "-o -: stdout was closed before the whole body was written: the rest is lost"
            ) from exc
        self.bytes_written += len(data)

    def http_error(self, exc: BaseException) -> None:
        pass

    def http_complete(self) -> None:
        pass

    def close(self) -> None:
        if not self.broken:
            self.stream.flush()


def remote_name(url: str) -> str:
    """``-O``'s file name: the URL's last path segment, decoded; one that escapes is refused."""
    segment = urllib.parse.urlsplit(url).path.rpartition("/")[2]
    try:
        name = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        name = ""  # not UTF-8 once decoded: no name we could write faithfully
    if (
        name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        shown = f'"{segment}"' if segment else "empty"
        raise UsageError(f"-O: no usable file name in {url} (its last segment is {shown})")
    return name


def _open_sink(args: argparse.Namespace, timeout: float | None) -> tuple[_Sink | None, float]:
    """The body's destination, checked and opened now, before any request is made.

    A FIFO is waited on for a reader, at most ``timeout`` seconds (Ctrl-C
    holds meanwhile); returns the destination and the seconds waited.
    """
    if args.output == "-":
        if sys.stdout is None:  # ``>&-``: the body, the point of -o -, has nowhere to go
            raise CommandError("-o -: stdout is closed, the body has nowhere to go")
        return _Stdout(sys.stdout.buffer), 0.0
    path = remote_name(args.url) if args.remote_name else args.output
    if path is None:
        return None, 0.0
    sink = FileConsumer(path, resume=args.continue_at is not None)
    try:
        waited = _open_waiting(
            sink, timeout
        )  # a directory, a missing or unwritable one: refused here
    except FileNotFoundError as exc:
        raise UsageError(_no_directory(path)) from exc
    except OSError as exc:
        raise UsageError(f"cannot write {describe(exc)}") from exc
    return sink, waited


def _no_directory(path: str) -> str:
    """Why ``path`` cannot be written when its directory is missing, naming that directory.

    A symlink (a dangling one, or a chain of them) is followed as the system
    would: ``dangling -> nowhere/x`` names ``nowhere``, not ``.``.
    """
    target = path
    for _ in range(40):  # as the kernel's own limit on symlinks followed (ELOOP)
        if not os.path.islink(target):
            break
        target = os.path.normpath(os.path.join(os.path.dirname(target), os.readlink(target)))
    directory = os.path.dirname(target) or "."
    through = "" if target == path else f" (the symlink {path} points to {target})"
    return f"cannot write {path}: no such directory {directory}{through}"


def _open_waiting(sink: FileConsumer, timeout: float | None) -> float:
    """``sink.open()``, retried while a FIFO has no reader yet (ENXIO), within ``timeout``.

    Returns the seconds waited (0.0 when it opened at once).
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    waited = False
    while True:
        try:
            sink.open()
            return time.monotonic() - started if waited else 0.0
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            waited = True
            if deadline is not None and time.monotonic() >= deadline:
                raise CommandError(
                    f"cannot write {sink.path}: no reader on the FIFO within {timeout:g} s"
                ) from None
        time.sleep(0.05)  # a bounded poll: Linux has no event for "a reader opened it"


# -- the consumers ---------------------------------------------------------------------------


class _HTTPFailure(Exception):
    """``--fail`` and a status >= 400: raised from ``http_header`` to stop the exchange."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status_code} {response.reason} from {response.url}")


class _Report:
    """The final response: the report lines on ``out``, the body to the sink, progress shown.

    It never closes the sink: ``cmd_get`` does, after ``fetch`` has returned
    or failed, so only a complete body is put in place.
    """

    def __init__(
        self, out: TextIO | None, sink: _Sink | None, progress: Progress | None, fail: bool
    ) -> None:
        self.out = out
        self.sink = sink
        self.progress = progress
        self.fail = fail
        self.size = 0
        self.complete = False  # the requester said the body ended complete

    def http_header(self, response: Response) -> None:
        self.size = 0
        self.complete = False
        if self.out is not None:
            print_head(response, self.out)
        if response.status_code is None:
            return
        if self.fail and response.status_code >= 400:
            raise _HTTPFailure(response)
        if self.sink is not None:
            self.sink.http_header(response)
        if self.progress is not None:
            self.progress.start(_content_length(response))

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.sink is not None:
            self.sink.feed(data)
        if self.progress is not None:
            self.progress.update(self.size)

    def http_error(self, exc: BaseException) -> None:
        if self.sink is not None:
            self.sink.http_error(exc)

    def http_complete(self) -> None:
        if self.sink is not None:
            self.sink.http_complete()  # may refuse the body (a 206 short of its range)
        self.complete = True

    def close(self) -> None:
        """Nothing to do: the report's last line and the sink's close are ``cmd_get``'s."""


def _content_length(response: Response) -> int | None:
    value = response.headers.get("content-length")
    if response.request.method == "HEAD" or not value or not value.isdigit():
        return None
    return int(value)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


_MASKED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def _mask_pair(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    if not equals:
        return pair[: len(pair) - len(pair.lstrip())] + "***" if pair.strip() else pair
    return f"{name}=***"


def masked(name: str, value: str) -> str:
    """A header value fit for a log: credentials and cookies replaced by ``***``.

    ``Authorization: Basic ***`` keeps the scheme; ``Cookie: a=***; b=***``
    and ``Set-Cookie: a=***; Path=/`` keep the names and attributes.
    """
    lower = name.lower()
    if lower not in _MASKED:
        return value
    if lower.endswith("authorization"):
        scheme, space, _ = value.strip().partition(" ")
        return f"{scheme} ***" if space else "***"
    if lower == "cookie":
        # Each pair's name kept, its separators as sent; a pair without "="
        # is all value: masked whole.
        return ";".join(_mask_pair(pair) for pair in value.split(";"))
    first, sep, attributes = value.partition(";")
    return f"{first.partition('=')[0].strip()}=***{sep}{attributes}"


def _sent_lines(head: bytes) -> list[str]:
    """A request head's lines as sent (without CRLFs), credentials masked.

    Bytes that are not UTF-8 are shown as ``\\xNN``.
    """
    first, *fields = head.decode("utf-8", "backslashreplace").split("\r\n")
    lines = [first]
    for line in fields:
        if not line:  # the blank line that ends the head
            break
        name, _, value = line.partition(":")
        lines.append(f"{name}: {masked(name, value.strip())}")
    return lines


def _request_lines(request: Request) -> list[str]:
    """The request being made, for a hop that failed before sending (or before an answer)."""
    parts = urllib.parse.urlsplit(request.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{n}: {masked(n, v)}" for n, v in request.headers.items()]
    if isinstance(request.body, bytes):
        lines.append(f"Content-Length: {len(request.body)}")
    return lines


class _HeadTrace:
    """``-v``: each hop's request and response heads on ``stream`` (``>``/``<``, as curl).

    The request shown is the head exactly as it went on the wire for that
    hop (request line, ``Host``, every field the requester added, the body's
    framing; the absolute-form target and ``Proxy-Authorization`` through a
    forward proxy), printed as its response head arrives, credentials masked
    and control characters escaped. A hop that failed before any answer has
    no such bytes: it shows the request it was making (method, target,
    ``Host`` and the fields given).
    """

    def __init__(self, consumer: Any, stream: TextIO) -> None:
        self.consumer = consumer
        self.stream = stream

    def _print_request(self, response: Response) -> None:
        sent = response._sent_head
        lines = _request_lines(response.request) if sent is None else _sent_lines(sent)
        print("\n".join(printable(f"> {line}") for line in lines) + "\n>", file=self.stream)

    async def http_header(self, response: Response) -> Any:
        self._print_request(response)
        if response.status_code is None:
            if response.error is not None:
                print(f"* {describe(response.error)}", file=self.stream)
        else:
            lines = [f"< HTTP/{response.http_version} {response.status_code} {response.reason}"]
            lines += [f"< {n}: {masked(n, v)}" for n, v in response.headers.items()]
            print("\n".join(map(printable, lines)) + "\n<", file=self.stream, flush=True)
        return await _maybe_await(self.consumer.http_header(response))

    async def feed(self, data: bytes) -> None:
        await _maybe_await(self.consumer.feed(data))

    async def http_error(self, exc: BaseException) -> None:
        print(f"* {describe(exc)}", file=self.stream)
        forward = getattr(self.consumer, "http_error", None)
        if forward is not None:
            await _maybe_await(forward(exc))

    async def http_complete(self) -> None:
        forward = getattr(self.consumer, "http_complete", None)
        if forward is not None:
            await _maybe_await(forward())

    async def close(self) -> Any:
        return await _maybe_await(self.consumer.close())


# -- the command -----------------------------------------------------------------------------


async def _fetch(url: str, consumer: Any, plan: _Plan, options: dict[str, Any]) -> Response:
    async with Client(**options) as client:
        return await client.fetch(
            url,
            consumer,
            method=plan.method,
            headers=plan.headers,
            body=plan.body,
            timeout=plan.timeout,
        )


def _wants_progress(args: argparse.Namespace) -> bool:
    """A bar on a terminal's stderr only, and never over a body going to that terminal."""
    if args.silent or not sys.stderr.isatty():
        return False
    return args.output != "-" or not sys.stdout.isatty()


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    plan = _request(args)
    try:
        return _get(args, out, plan)
    finally:
        if plan.body is not None and (sys.stdin is None or plan.body is not sys.stdin.buffer):
            close = getattr(plan.body, "close", None)
            if close is not None:
                close()


def _get(args: argparse.Namespace, out: TextIO, plan: _Plan) -> int:
    options = _client_options(args)
    sink, waited = _open_sink(args, plan.timeout)
    if plan.timeout is not None and waited:  # the wait for a FIFO's reader is inside the deadline
        plan = replace(plan, timeout=max(plan.timeout - waited, 1e-3))
    if isinstance(sink, FileConsumer) and sink.resume:
        plan = replace(plan, headers=[*plan.headers, *sink.range_headers()])
    report_out = None if args.silent or args.output == "-" else out
    progress = Progress(sys.stderr) if sink is not None and _wants_progress(args) else None
    report = _Report(report_out, sink, progress, fail=args.fail)
    consumer: Any = report
    if args.redirects:
        consumer = RedirectingConsumer(report, max_redirects=args.max_redirects)
    if args.verbose:
        consumer = _HeadTrace(consumer, sys.stderr)
    try:
        trio.run(partial(_fetch, args.url, consumer, plan, options))
    except _HTTPFailure as failure:
        if report_out is not None:
            report_out.flush()
        print(f"{PROG}: error: {printable(str(failure))}", file=sys.stderr)
        return 22  # as curl --fail
    finally:
        if progress is not None:
            progress.finish(report.complete)
        if sink is not None:
            sink.close()  # puts the file in place only after http_complete()
    if isinstance(sink, FileConsumer) and report.complete and not sink.complete:
        # A 206 that ends before the file does: the .part grew, the file is not there.
        raise ProtocolError(
            f"the answer was only part of {args.output or sink.path}: the rest is"
            " still to fetch (run again with -C -)"
        )
    if report_out is not None and report.complete:
        print(f"{report.size} bytes in body", file=report_out)
    return 0
