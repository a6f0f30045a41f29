"""The streaming HTTP/1.1 requester's façade: ``Client`` and ``fetch``.

What lives here: the options, the total deadline, the consumer's lifetime
(``http_header`` / ``feed`` / ``http_complete`` / ``close`` exactly once,
failures reported as the contract says), the redirect loop and the retry of
a stale connection. What does not: sockets (``_transport``), idle
connections (``_pool``), head parsing (``_headreader``), body framing
(``_framing``) and the phases of one exchange (``_exchange``).

One exchange, start to end, runs in the calling task (an HTTP/1.1
request/response needs no background task, so no internal nursery and no
``ExceptionGroup`` can leak). One ``trio.CancelScope`` with a deadline covers
the pool wait, connecting, TLS, sending and the whole response across a
redirect chain; the consumer's ``close()`` (and error reporting) runs outside
it, so it happens even after the deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from ._bodies import RequestBody, request_body
from ._checks import check_count, check_seconds
from ._consumer import Consumer
from ._consumers import RedirectingConsumer
from ._decoding import BodyDecoder, DecodeLimits, accept_encoding, parse_codings
from ._errors import (
    ConnectError,
    HTTPError,
    InvalidURL,
    ProxyError,
    RedirectError,
    TimeHTTPError,
    Timeout,
)
from ._exchange import Decoder, Exchange, Hooks, StaleConnection
from ._headers import Headers, HeadersLike
from ._headreader import HeadLimits, HeadMemo
from ._models import Content, Request, Response
from ._pool import Connection, Pool
from ._prepare import USER_AGENT, Prepared, Preparer
from ._proxy import (
    Proxy,
    ProxyPolicy,
    absolute_target,
    forward_refusal,
    with_proxy_authorization,
)
from ._retry import RetryPolicy, parse_retry_after
from ._stream import BodyStream
from ._timing import ExchangeTimes
from ._transport import HandshakeError, TLSPlan, Transport, TransportPlan, open_transport
from ._tunnel import open_tunnel
from ._urls import URL

__all__ = ["USER_AGENT", "Client", "Route", "fetch"]

log = logging.getLogger("trio_timehttp.http")

# Default header fields that belong to the first hop only: the redirect
# policy decides whether they follow (credentials across origins; Host is
# recomputed), so they must not come back from the defaults on later hops.
_FIRST_HOP_ONLY: Final = frozenset({"authorization", "cookie", "proxy-authorization", "host"})
# Routes cached per origin (cleared when full).
_ROUTES: Final = 256


class _ClientSetting:
    """The default of a per-request keyword that means "this Client's own setting"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the Client's setting>"


_DEFAULT: Any = _ClientSetting()


@dataclass(frozen=True, slots=True)
class Route:
    """How one request reaches its server.

    ``key``: which pooled connections are interchangeable for it; ``plan``:
    how to open a new one; ``proxy``: the proxy on the way (None: direct);
    ``forward``: the request goes to the proxy in absolute-form (an http
    target), rather than through a CONNECT tunnel (https) or direct.
    """

    key: Hashable
    plan: TransportPlan
    proxy: Proxy | None = None
    forward: bool = False


@dataclass(frozen=True, slots=True)
class _Options:
    """A fetch's per-request options: decoding (None: off), retries."""

    decode: DecodeLimits | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class _State:
    """Per-fetch bookkeeping shared by the hops of a redirect chain."""

    __slots__ = (
        "bodies",
        "complete",
        "deadline",
        "delivered",
        "history",
        "options",
        "prepared",
        "request",
        "times",
        "url",
    )

    def __init__(
        self, url: str, times: ExchangeTimes | None, options: _Options | None = None
    ) -> None:
        self.prepared: Prepared | None = None  # the first hop's, made while validating
        self.url = url  # the URL of the hop in progress (for messages)
        self.request: Request | None = None  # the hop in progress
        self.history: list[Response] = []  # the hops before it
        self.delivered = False  # http_header got a real response for this hop
        self.complete = False  # the final body's framing proved it complete
        self.times = times
        self.options = options or _Options()
        self.deadline: float | None = None  # trio time; None: no deadline
        # One RequestBody per body object, for the whole chain: a redirect or
        # retry sends the same source again (rewound), never a fresh empty one.
        self.bodies: dict[int, tuple[object, RequestBody]] = {}

    def body_for(self, request: Request) -> RequestBody | None:
        """The body source for a hop (None for no body or ``bytes``, which the preparer wraps).

        Raises ``TypeError`` for a body of the wrong type, ``ValueError`` for
        one that contradicts the request's Content-Length, and
        ``RedirectError`` when a redirect needs a body already sent that
        cannot be replayed.
        """
        value = request.body
        if value is None or isinstance(value, bytes):
            return None
        entry = self.bodies.get(id(value))
        if entry is None:
            body = request_body(value)
            assert body is not None
            length = request.headers.get("content-length")
            if length is not None and length.strip().isdigit():
                body.expect_length(int(length))
            self.bodies[id(value)] = (value, body)
            return body
        body = entry[1]
        if body.used and not body.replayable:
            raise RedirectError(
                f"cannot send the request body again to {request.url}: it was an iterator"
                " or stream and has been sent (use bytes or a seekable file to allow"
                " 307/308 redirects and retries)"
            )
        return body

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - trio.current_time()


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
        self._proxies = ProxyPolicy.from_settings(proxy, trust_env, os.environ)
        self._decode_limits = DecodeLimits(max_decoded_size, max_decode_ratio)
        self._options = _Options(
            self._decode_limits if decode else None, RetryPolicy(retries, backoff)
        )
        self._pool = Pool(max_connections, expiry)
        self._headers = Headers(headers)
        self._ssl_context = ssl_context
        limits = HeadLimits(max_header_fields, max_header_bytes, max_informational)
        self._limits = limits
        self._memo = HeadMemo(limits)
        self._preparer = Preparer()
        self._routes: dict[tuple[str, str, int], Route] = {}
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
            state = _State(url, None, self._request_options(decode, max_decoded_size, retries))
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
        state: _State,
        expect_continue: bool,
    ) -> Request:
        """The caller's request, with the fields decoding and Expect: 100-continue ask for."""
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
    ) -> _Options:
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
        return _Options(limits if on else None, retry)

    async def _fetch_timed(
        self, url: str, consumer: Consumer, *, method: str = "GET", times: ExchangeTimes
    ) -> Response:
        """``fetch`` without a deadline of its own, filling ``times`` (time over HTTP).

        ``times`` is the final hop's: see ``ExchangeTimes`` for the instants.
        """
        hooks = Hooks(consumer)
        state = _State(url, times)
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
        state = _State(url, None, self._request_options(decode, max_decoded_size, retries))
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

    async def _start_following(self, request: Request, state: _State, follow: bool) -> Exchange:
        """The exchange whose head is final: redirects followed when ``follow``."""
        policy = RedirectingConsumer(_Discard()) if follow else None
        while True:
            state.url = request.url
            ex = await self._start(request, state)
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

    def _first_request(self, request: Request, state: _State) -> Request:
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
        self, request: Request, hooks: Hooks, state: _State, timeout: float | None
    ) -> Response:
        """The consumer's lifetime around the hops: deadline, close once, failure reports."""
        error: TimeHTTPError
        try:
            if timeout is None:
                # No deadline, no scope: entering and leaving a CancelScope
                # costs about 6 us, a few % of a small keep-alive GET. Outer
                # scopes still cancel us (Cancelled is no TimeHTTPError).
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
        self, hooks: Hooks, state: _State, request: Request, error: TimeHTTPError
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

    async def _follow(self, request: Request, hooks: Hooks, state: _State) -> Response:
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
        self, request: Request, hooks: Hooks, state: _State
    ) -> tuple[Response, Request | None]:
        """One exchange pushed into the consumer; pooled only after a clean end."""
        ex = await self._start(request, state)
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

    async def _start(self, request: Request, state: _State) -> Exchange:
        """Send ``request`` and read its head: the exchange, ready for its body.

        Retried once on a fresh connection when a reused one turned out stale
        (``StaleConnection``) and the request may be sent again, and as the
        retry policy allows (connect failures; 429/503 to idempotent methods,
        whose answer is drained, never shown). On failure the connection is
        closed; on success the caller must ``release`` it.
        """
        body = state.body_for(request)
        prepared = state.prepared
        if prepared is None or prepared.request is not request:
            prepared = self._preparer.prepare(request, body=body)
        route = self._route(prepared.url)
        if route.forward and route.proxy is not None:
            # Absolute-form, and the proxy's credentials in the head bytes only.
            prepared = self._preparer.prepare(request, absolute_target(prepared.url), body)
            head = with_proxy_authorization(prepared.head, route.proxy)
            prepared = dataclasses.replace(prepared, head=head)
        fresh = False
        attempt = 0
        while True:
            try:
                conn = await self._checkout(route, prepared.url, state, fresh=fresh)
            except ConnectError as exc:
                retryable = state.options.retry.retryable_error(exc)
                delay = self._retry_wait(state, attempt, None) if retryable else None
                if delay is None:
                    raise
                await self._pause(prepared, delay, attempt, state, str(exc))
                attempt += 1
                continue
            ex = Exchange(conn, prepared, self._memo, state.times)
            if route.forward and route.proxy is not None:  # its faults are the proxy's
                ex.peer = f"the proxy {route.proxy.authority} (for {prepared.url.authority})"
            try:
                await ex.send_request()
                await ex.receive_head()
                delay, reason = self._status_retry(ex, state, attempt)
                if delay is not None:
                    ex.release(self._pool, await ex.drain())
            except StaleConnection:
                ex.release(self._pool, False)
                if fresh or not prepared.retryable:
                    raise
                log.debug("reused connection to %s was stale; retrying", prepared.url.authority)
                fresh = True
                continue
            except BaseException:
                ex.release(self._pool, False)
                raise
            if delay is not None:
                await self._pause(prepared, delay, attempt, state, reason)
                attempt += 1
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %s", request.method, request.url, ex.head and ex.head.status)
            if route.forward and route.proxy is not None and ex.head is not None:
                refused = forward_refusal(route.proxy, ex.head.status, request.url)
                if refused is not None:
                    ex.release(self._pool, False)
                    raise refused
            return ex

    def _retry_wait(self, state: _State, attempt: int, retry_after: float | None) -> float | None:
        """The wait before retry ``attempt``, or None: the policy or the deadline says no."""
        return state.options.retry.wait(
            attempt, retry_after=retry_after, remaining=state.remaining()
        )

    async def _pause(
        self, prepared: Prepared, delay: float, attempt: int, state: _State, reason: str
    ) -> None:
        log.info(
            "retrying %s %s in %.3g s (retry %d of %d): %s",
            prepared.request.method,
            prepared.request.url,
            delay,
            attempt + 1,
            state.options.retry.retries,
            reason,
        )
        await trio.sleep(delay)

    def _status_retry(self, ex: Exchange, state: _State, attempt: int) -> tuple[float | None, str]:
        """The wait before retrying a 429/503 answer, if the policy, the body and the
        deadline allow one (None: the answer stands)."""
        head, prepared = ex.head, ex.prepared
        policy = state.options.retry
        if head is None or not policy.retries:
            return None, ""
        if not policy.retryable_status(prepared.request.method, head.status):
            return None, ""
        if prepared.body is not None and not prepared.body.replayable:
            log.info("not retrying %s: its body cannot be sent again", prepared.request.url)
            return None, ""
        after = parse_retry_after(head.headers.get("retry-after"), now=time.time())
        return self._retry_wait(state, attempt, after), f"answered {head.status} {head.reason}"

    def _decoder(self, response: Response, state: _State) -> Decoder | None:
        """The content decoder for a response's body, when decoding is on and it has a coding.

        Raises ``ProtocolError`` for a coding we cannot decode (reported to
        the consumer's ``http_error``: its head was delivered).
        """
        limits = state.options.decode
        if limits is None or response.request.method == "HEAD":
            return None
        if response.status_code in (204, 304):
            return None
        coding = response.headers.get("content-encoding")
        if not coding or not parse_codings(coding):
            return None
        return BodyDecoder(coding, limits)

    # ------------------------------------------------------------ connections

    def _route(self, url: URL) -> Route:
        """Where a request to ``url`` goes (cached per origin).

        Direct to its origin, or through the proxy the policy chooses: an http
        target in absolute-form on a connection to the proxy (pooled per
        proxy, credentials included in the key), an https target through a
        CONNECT tunnel with TLS to the origin inside (pooled as a connection
        to that origin through that proxy). Raises ``InvalidURL`` when the
        environment names an unusable proxy.
        """
        route = self._routes.get(url.origin)
        if route is None:
            route = self._new_route(url, self._proxies.choose(url))
            if len(self._routes) >= _ROUTES:
                self._routes.clear()
            self._routes[url.origin] = route
        return route

    def _new_route(self, url: URL, proxy: Proxy | None) -> Route:
        tls = None
        if url.scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            tls = TLSPlan(self._ssl_context, url.host)
        if proxy is None:
            return Route(url.origin, TransportPlan(url.host, url.port, tls))
        if tls is None:
            return Route(("forward", proxy), TransportPlan(proxy.host, proxy.port), proxy, True)
        tunnel = functools.partial(open_tunnel, url=url, proxy=proxy, limits=self._limits)
        plan = TransportPlan(proxy.host, proxy.port, tls, tunnel)
        return Route((url.origin, proxy), plan, proxy)

    async def _checkout(self, route: Route, url: URL, state: _State, *, fresh: bool) -> Connection:
        """A pooled connection fit for reuse, or a new one within the bound."""

        async def connect() -> Transport:
            return await self._connect(route, url, state.times)

        try:
            return await self._pool.checkout(route.key, connect, fresh=fresh)
        except trio.ClosedResourceError as exc:
            raise HTTPError(f"the Client was closed while connecting to {url}") from exc

    async def _connect(self, route: Route, url: URL, times: ExchangeTimes | None) -> Transport:
        plan = route.plan
        log.debug("connecting to %s:%s", plan.host, plan.port)
        if times is not None:
            times.start = time.time()  # before anything the server could see
        try:
            return await open_transport(plan)
        except TimeHTTPError:
            raise
        except HandshakeError as exc:
            raise ConnectError(
                f"TLS handshake with {url.authority} failed ({url}): {exc}"
            ) from exc
        except OSError as exc:
            if route.proxy is not None:
                raise ProxyError(f"cannot connect to proxy {route.proxy} ({url}): {exc}") from exc
            raise ConnectError(f"cannot connect to {url.authority} ({url}): {exc}") from exc


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
