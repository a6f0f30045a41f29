"""The streaming HTTP/1.1 requester's façade: ``Client`` and ``fetch``.

What lives here: the options, the total deadline, the consumer's lifetime
(``http_header`` / ``feed`` / ``http_complete`` / ``close`` exactly once,
failures reported as the contract says) and the redirect loop. What does
not: sending a hop and retrying it (``_starter``), route choice and proxies
(``_routes``), what a fetch carries across hops (``_fetchstate``), sockets
(``_transport``), idle connections (``_pool``), head parsing
(``_headreader``), body framing (``_framing``) and the phases of one
exchange (``_exchange``).

One exchange, start to end, runs in the calling task (an HTTP/1.1
request/response needs no background task, so no internal nursery and no
``ExceptionGroup`` can leak). One ``trio.CancelScope`` with a deadline covers
the pool wait, connecting, TLS, sending and the whole response across a
redirect chain; the consumer's ``close()`` (and error reporting) runs outside
it, so it happens even after the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any, Final

import trio

from ._checks import check_count, check_seconds
from ._consumer import Consumer
from ._decoding import DecodeLimits, accept_encoding, decoder_for
from ._errors import (
    HTTPError,
    InvalidURL,
    TimeHTTPError,
    Timeout,
)
from ._exchange import Decoder, Exchange, Hooks
from ._fetchstate import FetchOptions, FetchState
from ._headers import Headers, HeadersLike
from ._headreader import HeadLimits, HeadMemo
from ._models import Content, Request, Response
from ._pool import Pool
from ._prepare import USER_AGENT, Preparer
from ._proxy import (
    ProxyPolicy,
)
from ._redirects import RedirectingConsumer
from ._retry import RetryPolicy
from ._routes import Router
from ._starter import Starter
from ._stream import BodyStream
from ._timing import ExchangeTimes

__all__ = ["USER_AGENT", "Client", "fetch"]

log = logging.getLogger("trio_timehttp.http")

# Default header fields that belong to the first hop only: the redirect
# policy decides whether they follow (credentials across origins; Host is
# recomputed), so they must not come back from the defaults on later hops.
_FIRST_HOP_ONLY: Final = frozenset({"authorization", "cookie", "proxy-authorization", "host"})


class _ClientSetting:
    """The default of a per-request keyword that means "this Client's own setting"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the Client's setting>"


_DEFAULT: Any = _ClientSetting()


class _Discard:
    """The consumer behind ``Client.stream``'s redirect policy: the body is pulled instead."""

    def feed(self, data: bytes) -> None:  # pragma: no cover - never fed
        pass

    def close(self) -> None:  # pragma: no cover - never closed
        pass


class Client(trio.abc.AsyncResource):
    """A keep-alive HTTP/1.1 client: ``async with Client() as client: await client.fetch(...)``.

    Keeps idle connections per origin (scheme, host, port) and reuses them.
    Leaving the ``async with`` (or ``await client.aclose()``) closes every
    connection; a closed Client refuses new requests with ``HTTPError``.

    ``timeout`` (default ``30.0`` seconds; ``None``: no deadline): the total
    deadline of each request, unless the request gives its own.
    ``max_connections`` (default ``100``): bound on all open connections,
    idle and busy; at the bound an idle connection to another origin is
    closed first, otherwise the request waits, within its deadline.
    ``keepalive_expiry`` (default ``5.0`` seconds): how long an idle
    connection is kept for reuse. ``headers`` (default ``None``): header
    fields sent with every request (a request's own fields of the same name
    win; they belong to the first request of a redirect chain, so a
    redirect policy drops credentials among them as it drops the request's
    own). ``ssl_context`` (default ``None``: ``ssl.create_default_context()``,
    which verifies certificates against the system's trust store): for https.

    ``max_header_fields`` (default ``100``), ``max_header_bytes`` (default
    ``65536``), ``max_informational`` (default ``10``): caps on a response
    head's number of fields, its size in bytes, and the number of 1xx
    responses before the final one; a response beyond them is a
    ``ProtocolError`` (a proxy's answer to CONNECT gets the same caps).

    ``proxy`` (default ``None``): ``"http://[user:pass@]host:port"``, used
    for every request (http targets are sent to it in absolute form, https
    ones through a CONNECT tunnel with TLS to the origin inside); an
    unusable one raises ``InvalidURL`` here, at once. ``trust_env``
    (default ``True``; only when ``proxy`` is ``None``): choose a proxy per
    origin from the ``http_proxy``, ``https_proxy``/``HTTPS_PROXY``,
    ``all_proxy``/``ALL_PROXY`` and ``no_proxy``/``NO_PROXY`` environment
    variables as they are now, as curl does (``HTTP_PROXY`` in capitals is
    ignored); loopback targets are never proxied from the environment.
    Failures of the proxy itself raise ``ProxyError``; its credentials go
    only to the proxy and never appear in messages, logs or reprs.

    ``decode`` (default ``False``): ask for compressed bodies (gzip,
    deflate, and br / zstd when those packages are installed) and decode
    them before the consumer sees them; ``response.headers`` stay what the
    server sent. ``max_decoded_size`` (default ``None``: no bound; bytes)
    and ``max_decode_ratio`` (default ``200.0`` decoded bytes per encoded
    byte, checked once 8 MiB have been decoded; ``None``: no bound) stop a
    decompression bomb with ``BodyTooLarge``.

    ``retries`` (default ``0``: none) and ``backoff`` (default ``0.5``
    seconds): retry a connect failure (any method: nothing reached the
    server), or a 429 or 503 answer to an idempotent method (GET, HEAD,
    PUT, DELETE, OPTIONS, TRACE), after ``Retry-After`` when the answer has
    one, else after a random wait of up to ``backoff * 2**attempt``; only
    while the deadline leaves time for it. Each retry is logged at INFO.
    Nothing else is retried (a failure after the request was sent could
    have taken effect).
    """

    def __init__(
        self,
        *,
        timeout: float | None = 30.0,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        headers: HeadersLike | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_header_fields: int = 100,
        max_header_bytes: int = 65536,
        max_informational: int = 10,
        decode: bool = False,
        max_decoded_size: int | None = None,
        max_decode_ratio: float | None = 200.0,
        retries: int = 0,
        backoff: float = 0.5,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        self._timeout = check_seconds("timeout", timeout)
        max_connections = check_count("max_connections", max_connections, minimum=1)
        expiry = check_seconds("keepalive_expiry", keepalive_expiry, none_ok=False) or 0.0
        proxies = ProxyPolicy.from_settings(proxy, trust_env, os.environ)
        self._decode_limits = DecodeLimits(max_decoded_size, max_decode_ratio)
        self._options = FetchOptions(
            self._decode_limits if decode else None, RetryPolicy(retries, backoff)
        )
        self._pool = Pool(max_connections, expiry)
        self._headers = Headers(headers)
        limits = HeadLimits(max_header_fields, max_header_bytes, max_informational)
        self._preparer = Preparer()
        router = Router(proxies, ssl_context, limits)
        self._starter = Starter(self._pool, router, HeadMemo(limits), self._preparer)
        self._closed = False

    async def aclose(self) -> None:
        """Close the Client: every idle connection now, each busy one when its request ends.

        Requests made after this raise ``HTTPError`` (so does one still
        waiting for a connection); one already talking to its server
        finishes normally. Calling it again does nothing. ``async with
        Client()`` calls it on leaving the block.
        """
        self._closed = True
        self._pool.close_all()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ fetch

    async def fetch(
        self,
        url: str,
        consumer: Consumer,
        *,
        method: str = "GET",
        headers: HeadersLike | None = None,
        body: Content | None = None,
        timeout: float | None = _DEFAULT,
        expect_continue: bool = False,
        decode: bool | None = None,
        max_decoded_size: int | None = _DEFAULT,
        retries: int | None = None,
    ) -> Response:
        """Send one request and stream the response body into ``consumer``.

        Calls, in order: ``consumer.http_header(response)`` once the status
        line and headers are in (optional; if it returns a ``Request``, the
        rest of this response is dropped and that request is sent instead,
        the same consumer getting its response: that is how
        ``RedirectingConsumer`` works), ``consumer.feed(chunk)`` for each
        piece of the body (``bytes``), ``consumer.http_complete()``
        (optional, only after a body whose framing proved it complete), then
        ``consumer.close()``. Any of them may be ``async``; it is awaited
        before more of the body is read. Returns the final ``Response``,
        whatever its status code (a 404 or a 500 is data, not an error).

        ``method`` (default ``"GET"``); ``headers``: a mapping or a list of
        ``(name, value)`` pairs, added to the Client's default fields (the
        request's own win). ``body``: ``bytes``, an iterable or async
        iterable of ``bytes``, or a binary file; sent with Content-Length when
        its size is known, chunked otherwise. ``timeout`` (default: the
        Client's ``timeout``; ``None``: no deadline) is one deadline over the
        wait for a connection, connecting, sending and the whole response,
        body included, across a whole redirect chain. ``expect_continue``
        (default ``False``): send ``Expect: 100-continue`` and hold the body
        back until the server answers 100 (or stays silent for a second).
        ``decode``, ``max_decoded_size``, ``retries``: this request's own
        values for the Client settings of those names (``None`` or left
        out: the Client's).

        Raises ``InvalidURL`` for an unusable URL, ``ConnectError`` (or
        ``ProxyError``) when the server cannot be reached, ``Timeout`` when
        the deadline passes, ``ProtocolError`` for a malformed, truncated or
        oversized response, ``BodyTooLarge`` past a size bound,
        ``TooManyRedirects``/``RedirectError`` from a redirect policy, and
        ``HTTPError`` once the Client is closed. Before it raises, the
        consumer is told: if no response had arrived, ``http_header`` gets
        a ``Response`` with ``status_code`` None and ``error`` set to the
        exception; if one had, ``http_error(exc)`` is called (optional).
        An exception raised by the consumer itself propagates unchanged.

        Closes: ``consumer.close()`` is called exactly once, whatever
        happens (also past the deadline; at most once if an outer cancel
        scope cancels the call), and no socket is left open; a connection
        whose response ended cleanly goes back to the pool for reuse.
        """
        hooks = Hooks(consumer)
        try:
            timeout = self._timeout if timeout is _DEFAULT else check_seconds("timeout", timeout)
            state = FetchState(url, None, self._request_options(decode, max_decoded_size, retries))
            request = self._first_request(
                self._new_request(method, url, headers, body, state, expect_continue), state
            )
        except BaseException:
            await hooks.call(hooks.close)
            raise
        return await self._run(request, hooks, state, timeout)

    def _new_request(
        self,
        method: str,
        url: str,
        headers: HeadersLike | None,
        body: Content | None,
        state: FetchState,
        expect_continue: bool,
    ) -> Request:
        """The caller's request, with the fields decoding and Expect: 100-continue ask for."""
        if not expect_continue and state.options.decode is None:
            return Request(method, url, headers, body)
        fields = Headers(headers)
        extra = []
        if state.options.decode is not None and "accept-encoding" not in fields:
            extra.append(("accept-encoding", accept_encoding()))
        if expect_continue and "expect" not in fields:
            extra.append(("expect", "100-continue"))
        if extra:
            fields = Headers([*fields.items(), *extra])
        return Request(method, url, fields, body)

    def _request_options(
        self, decode: bool | None, max_decoded_size: int | None, retries: int | None
    ) -> FetchOptions:
        options = self._options
        if decode is None and max_decoded_size is _DEFAULT and retries is None:
            return options
        limits = self._decode_limits
        if max_decoded_size is not _DEFAULT:
            limits = DecodeLimits(max_decoded_size, limits.max_ratio, limits.ratio_floor)
        on = options.decode is not None if decode is None else decode
        retry = options.retry
        if retries is not None:
            retry = RetryPolicy(retries, retry.backoff, retry.rng)
        return FetchOptions(limits if on else None, retry)

    async def _fetch_timed(
        self, url: str, consumer: Consumer, *, method: str = "GET", times: ExchangeTimes
    ) -> Response:
        """``fetch`` without a deadline of its own, filling ``times`` (time over HTTP).

        ``times`` is the final hop's: see ``ExchangeTimes`` for the instants.
        """
        hooks = Hooks(consumer)
        state = FetchState(url, times)
        try:
            request = self._first_request(Request(method, url), state)
        except BaseException:
            await hooks.call(hooks.close)
            raise
        return await self._run(request, hooks, state, None)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersLike | None = None,
        body: Content | None = None,
        timeout: float | None = _DEFAULT,
        follow_redirects: bool = False,
        expect_continue: bool = False,
        decode: bool | None = None,
        max_decoded_size: int | None = _DEFAULT,
        retries: int | None = None,
    ) -> AsyncIterator[Response]:
        """Pull a response: ``async with client.stream(url) as response:``.

        The ``Response`` is yielded once its status line and headers are in;
        read the body inside the block with ``async for chunk in
        response.aiter_bytes()`` or ``await response.aread()`` (once).
        ``timeout`` (default: the Client's ``timeout``; ``None``: no deadline)
        is one deadline over connecting, the head and the whole block, body
        included: past it the block is cancelled and ``Timeout`` is raised
        from the ``async with``. ``follow_redirects`` (default ``False``):
        follow redirects by ``RedirectingConsumer``'s policy (at most 10;
        ``response.history`` holds the earlier hops). ``method``,
        ``headers``, ``body``, ``expect_continue``, ``decode``,
        ``max_decoded_size`` and ``retries``: as for ``fetch``.

        Raises what ``fetch`` raises (``InvalidURL``, ``ConnectError``,
        ``Timeout``, ``ProtocolError``, ...), from entering the block, from
        reading the body, or, for the deadline, from leaving the block; a
        response is returned whatever its status code. Closes: leaving the
        block normally reads and discards what is left of the body if that
        is small (so the connection can be reused), else closes the
        connection; leaving it by an exception closes the connection. No
        socket is left open.
        """
        timeout = self._timeout if timeout is _DEFAULT else check_seconds("timeout", timeout)
        state = FetchState(url, None, self._request_options(decode, max_decoded_size, retries))
        request = self._first_request(
            self._new_request(method, url, headers, body, state, expect_continue), state
        )
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        state.deadline = None if timeout is None else deadline
        with trio.CancelScope(deadline=deadline) as scope:
            ex = await self._start_following(request, state, follow_redirects)
            clean = False
            try:
                response = ex.response(list(state.history))
                pulled = BodyStream(ex, self._decoder(response, state))
                response._body = pulled
                yield response
                clean = await pulled.finish()
            finally:
                ex.release(self._pool, clean)
        if scope.cancelled_caught:
            raise Timeout(f"timed out after {timeout} s fetching {state.url}")

    async def _start_following(
        self, request: Request, state: FetchState, follow: bool
    ) -> Exchange:
        """The exchange whose head is final: redirects followed when ``follow``."""
        policy = RedirectingConsumer(_Discard()) if follow else None
        while True:
            state.url = request.url
            ex = await self._starter.start(request, state)
            if policy is None:
                return ex
            try:
                response = ex.response(list(state.history))
                step = await policy.http_header(response)
                if not isinstance(step, Request):
                    return ex
                clean = await ex.drain()
            except BaseException:
                ex.release(self._pool, False)
                raise
            ex.release(self._pool, clean)
            state.history.append(response)
            request = self._with_defaults(step, first=False)

    def _first_request(self, request: Request, state: FetchState) -> Request:
        """The request as the first hop sends it: the Client's default fields merged in."""
        if self._closed:
            raise HTTPError(f"the Client is closed (fetching {request.url})")
        # An unusable URL, or a body of the wrong type, fails here, before any I/O.
        body = state.body_for(request)
        state.prepared = self._preparer.prepare(request, body=body)
        return self._with_defaults(request, first=True)

    def _with_defaults(self, request: Request, *, first: bool) -> Request:
        defaults = self._headers
        if not defaults:
            return request
        own = request.headers
        extra = [
            (n, v)
            for n, v in defaults.items()
            if n not in own and (first or n not in _FIRST_HOP_ONLY)
        ]
        if not extra:
            return request
        return Request(request.method, request.url, [*own.items(), *extra], request.body)

    async def _run(
        self, request: Request, hooks: Hooks, state: FetchState, timeout: float | None
    ) -> Response:
        """The consumer's lifetime around the hops: deadline, close once, failure reports."""
        error: TimeHTTPError
        try:
            if timeout is None:
                # No deadline, no scope (what that saves: bench/README.md,
                # "speed tricks"). Outer scopes still cancel us (Cancelled
                # is no TimeHTTPError).
                response = await self._follow(request, hooks, state)
                timed_out = False
            else:
                state.deadline = trio.current_time() + timeout
                with trio.CancelScope(deadline=state.deadline) as scope:
                    response = await self._follow(request, hooks, state)
                timed_out = scope.cancelled_caught
        except BaseException as exc:
            if (
                exc is hooks.raised
                or not isinstance(exc, TimeHTTPError)
                or isinstance(exc, InvalidURL)
                or type(exc) is HTTPError
            ):
                # The consumer's own exception, a cancellation from outside, a
                # caller mistake, or (never expected) a bug: close, propagate.
                await hooks.call(hooks.close)
                raise
            error = exc
        else:
            if not timed_out:
                try:
                    if state.complete and hooks.complete is not None:
                        await hooks.call(hooks.complete)
                finally:
                    await hooks.call(hooks.close)
                return response
            error = Timeout(f"timed out after {timeout} s fetching {state.url}")
        await self._report(hooks, state, request, error)
        raise error

    async def _report(
        self, hooks: Hooks, state: FetchState, request: Request, error: TimeHTTPError
    ) -> None:
        """Tell the consumer about a failure (outside the deadline), then close it once."""
        log.debug("fetch %s failed: %s", state.url, error)
        try:
            if state.delivered:
                if hooks.error is not None:
                    await hooks.call(hooks.error, error)
            elif hooks.header is not None:
                failed = Response(
                    url=state.url,
                    request=state.request or request,
                    status_code=None,
                    history=list(state.history),
                    error=error,
                )
                await hooks.call(hooks.header, failed)
        finally:
            await hooks.call(hooks.close)

    # ------------------------------------------------------------------- hops

    async def _follow(self, request: Request, hooks: Hooks, state: FetchState) -> Response:
        """Run the hops: one exchange per request the consumer asks for."""
        while True:
            state.url = request.url
            state.request = request
            state.delivered = False
            response, follow = await self._hop(request, hooks, state)
            if follow is None:
                return response
            state.history.append(response)
            request = self._with_defaults(follow, first=False)

    async def _hop(
        self, request: Request, hooks: Hooks, state: FetchState
    ) -> tuple[Response, Request | None]:
        """One exchange pushed into the consumer; pooled only after a clean end."""
        ex = await self._starter.start(request, state)
        clean = False
        try:
            response = ex.response(list(state.history))
            follow: Request | None = None
            if hooks.header is not None:
                result = await hooks.call(hooks.header, response)
                if isinstance(result, Request):
                    follow = result
            state.delivered = follow is None
            if follow is not None:
                clean = await ex.drain()
                return response, follow
            await ex.stream_body(hooks, self._decoder(response, state))
            state.complete = ex.complete
            clean = True
            return response, None
        finally:
            ex.release(self._pool, clean)

    def _decoder(self, response: Response, state: FetchState) -> Decoder | None:
        return decoder_for(response, state.options.decode)


async def fetch(
    url: str,
    consumer: Consumer,
    *,
    method: str = "GET",
    headers: HeadersLike | None = None,
    body: Content | None = None,
    timeout: float | None = 30.0,
    expect_continue: bool = False,
    decode: bool = False,
    max_decoded_size: int | None = None,
    retries: int = 0,
    proxy: str | None = None,
    trust_env: bool = True,
) -> Response:
    """Send one request through a short-lived ``Client`` and stream the body into ``consumer``.

    ``await fetch(url, BytesConsumer())`` is ``Client.fetch`` on a
    ``Client`` made for this one request and closed when it ends (no
    connection is kept), so the consumer calls, the return value, the
    errors raised and what is closed are exactly those of ``Client.fetch``.
    Defaults: ``method="GET"``, ``headers=None``, ``body=None``,
    ``timeout=30.0`` seconds over the whole exchange, redirects included
    (``None``: no deadline), ``expect_continue=False``, ``decode=False``,
    ``max_decoded_size=None`` (no bound), ``retries=0``, ``proxy=None``,
    ``trust_env=True`` (proxy from the environment); each means what it
    means on ``Client``. For many requests, use one ``Client``: it reuses
    connections.
    """
    try:
        client = Client(
            timeout=timeout,
            max_connections=1,
            decode=decode,
            max_decoded_size=max_decoded_size,
            retries=retries,
            proxy=proxy,
            trust_env=trust_env,
        )
    except BaseException:  # a bad argument: the consumer is still closed, once
        hooks = Hooks(consumer)
        await hooks.call(hooks.close)
        raise
    async with client:
        return await client.fetch(
            url,
            consumer,
            method=method,
            headers=headers,
            body=body,
            expect_continue=expect_continue,
        )
