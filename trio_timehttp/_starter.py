"""Starting one hop: a connection, the request sent, the response head read — retried as allowed.

``Starter.start`` is the only place a request is sent again. Three causes,
each decided by someone else: a reused connection that turned out stale
(``StaleConnection`` from ``_exchange``; once, on a fresh connection, and
only when ``Prepared.retryable``), a connect failure, and a 429/503 answer
(both by the fetch's ``RetryPolicy``, within its deadline). Everything else
about the hop (the consumer, the body, redirects) is the façade's
(``_http``).
"""

from __future__ import annotations

import logging
import time

import trio

from ._errors import ConnectError, HTTPError
from ._exchange import Exchange, StaleConnection
from ._fetchstate import FetchState
from ._headreader import HeadMemo
from ._models import Request
from ._pool import Connection, Pool
from ._prepare import Prepared, Preparer
from ._retry import parse_retry_after
from ._routes import Route, Router
from ._transport import Transport

__all__ = ["Starter"]

log = logging.getLogger("trio_timehttp.http")


class Starter:
    """Sends a hop's request on a pooled or new connection and reads the response head.

    Holds no state of its own beyond what it is given: the ``pool`` of
    connections, the ``router`` that opens new ones, the ``memo`` of
    validated heads and the ``preparer`` of request heads (all the Client's).
    """

    def __init__(self, pool: Pool, router: Router, memo: HeadMemo, preparer: Preparer) -> None:
        self._pool = pool
        self._router = router
        self._memo = memo
        self._preparer = preparer

    def _prepared(self, request: Request, state: FetchState) -> Prepared:
        body = state.body_for(request)
        prepared = state.prepared
        if prepared is None or prepared.request is not request:
            prepared = self._preparer.prepare(request, body=body)
        return prepared

    async def start(self, request: Request, state: FetchState) -> Exchange:
        """Send ``request`` and read its head: the exchange, ready for its body.

        Retried once on a fresh connection when a reused one turned out stale
        (``StaleConnection``) and the request may be sent again, and as the
        retry policy allows (connect failures; 429/503 to idempotent methods,
        whose answer is drained, never shown). Raises what connecting,
        sending and reading the head raise (``ConnectError``, ``ProxyError``,
        ``ProtocolError``, ``HTTPError`` once the Client is closed). On
        failure the connection is closed; on success the caller must
        ``release`` it.
        """
        prepared = self._prepared(request, state)
        route = self._router.route(prepared.url)
        prepared = route.prepare(self._preparer, prepared)
        fresh = False
        attempt = 0
        while True:
            try:
                conn = await self._checkout(route, prepared, state, fresh=fresh)
            except ConnectError as exc:
                retryable = state.options.retry.retryable_error(exc)
                delay = self._retry_wait(state, attempt, None) if retryable else None
                if delay is None:
                    raise
                await self._pause(prepared, delay, attempt, state, str(exc))
                attempt += 1
                continue
            ex = Exchange(conn, prepared, self._memo, state.times)
            ex.peer = route.peer(prepared.url)  # a forward proxy's faults are its own
            try:
                delay, reason = await self._send(ex, state, attempt)
            except StaleConnection:
                if fresh or not prepared.retryable:
                    raise
                log.debug("reused connection to %s was stale; retrying", prepared.url.authority)
                fresh = True
                continue
            if delay is not None:
                await self._pause(prepared, delay, attempt, state, reason)
                attempt += 1
                continue
            refused = route.refusal(ex.head, request.url)
            if refused is not None:
                ex.release(self._pool, False)
                raise refused
            return ex

    async def _send(
        self, ex: Exchange, state: FetchState, attempt: int
    ) -> tuple[float | None, str]:
        """Send and read the head; a 429/503 the policy retries is drained and released.

        Returns the wait before that retry (None: the answer stands) and why.
        On any failure the connection is released unclean (closed).
        """
        try:
            await ex.send_request()
            await ex.receive_head()
            delay, reason = self._status_retry(ex, state, attempt)
            if delay is not None:
                ex.release(self._pool, await ex.drain())
        except BaseException:
            ex.release(self._pool, False)
            raise
        if delay is None and log.isEnabledFor(logging.DEBUG):
            request = ex.prepared.request
            log.debug("%s %s -> %s", request.method, request.url, ex.head and ex.head.status)
        return delay, reason

    async def _checkout(
        self, route: Route, prepared: Prepared, state: FetchState, *, fresh: bool
    ) -> Connection:
        """A pooled connection fit for reuse, or a new one within the bound."""

        async def connect() -> Transport:
            return await self._router.connect(route, prepared.url, state.times)

        try:
            return await self._pool.checkout(route.key, connect, fresh=fresh)
        except trio.ClosedResourceError as exc:
            raise HTTPError(f"the Client was closed while connecting to {prepared.url}") from exc

    def _retry_wait(
        self, state: FetchState, attempt: int, retry_after: float | None
    ) -> float | None:
        """The wait before retry ``attempt``, or None: the policy or the deadline says no."""
        return state.options.retry.wait(
            attempt, retry_after=retry_after, remaining=state.remaining()
        )

    async def _pause(
        self, prepared: Prepared, delay: float, attempt: int, state: FetchState, reason: str
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

    def _status_retry(
        self, ex: Exchange, state: FetchState, attempt: int
    ) -> tuple[float | None, str]:
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
