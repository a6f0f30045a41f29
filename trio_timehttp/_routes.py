"""How a request reaches its server: direct, through a forward proxy, or a CONNECT tunnel.

``Router`` owns the choice (the proxy policy, cached per origin), the TLS
context, and opening a new connection for a route with its failures named as
ours (``ConnectError``, ``ProxyError``). ``Route`` says what is special about
one: which pooled connections are interchangeable (``key``), how to open a new
one (``plan``), and, for a forward proxy, how the request head differs
(absolute-form target, the proxy's credentials in the bytes only) and who is
to blame for what comes back. Nothing here sends a request or reads a
response: that is ``_exchange``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import ssl
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from ._errors import ConnectError, ProxyError, TimeHTTPError
from ._headreader import Head, HeadLimits
from ._prepare import Prepared, Preparer
from ._proxy import (
    Proxy,
    ProxyPolicy,
    absolute_target,
    forward_refusal,
    with_proxy_authorization,
)
from ._timing import ExchangeTimes
from ._transport import HandshakeError, TLSPlan, Transport, TransportPlan, open_transport
from ._tunnel import open_tunnel
from ._urls import URL

__all__ = ["Route", "Router"]

log = logging.getLogger("trio_timehttp.http")

#: Routes cached per origin (the cache is cleared when full).
ROUTE_CACHE: Final = 256


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

    def prepare(self, preparer: Preparer, prepared: Prepared) -> Prepared:
        """``prepared`` as this route sends it: unchanged, except to a forward proxy.

        A forward proxy gets the absolute-form target, and its credentials in
        the head's bytes only (never in the ``Request``, so neither a
        ``Response.request`` nor a redirect's next hop carries them).
        """
        if not self.forward or self.proxy is None:
            return prepared
        forwarded = preparer.prepare(
            prepared.request, absolute_target(prepared.url), prepared.body
        )
        head = with_proxy_authorization(forwarded.head, self.proxy)
        return dataclasses.replace(forwarded, head=head)

    def peer(self, url: URL) -> str | None:
        """Who answers for ``url`` when it is not the origin (a forward proxy), else None."""
        if not self.forward or self.proxy is None:
            return None
        return f"the proxy {self.proxy.authority} (for {url.authority})"

    def refusal(self, head: Head | None, url: str) -> ProxyError | None:
        """The ``ProxyError`` for a forward proxy's own refusal of ``url`` (407), else None."""
        if not self.forward or self.proxy is None or head is None:
            return None
        return forward_refusal(self.proxy, head.status, url)


class Router:
    """Chooses each origin's ``Route`` and opens new connections for routes.

    ``proxies``: the policy (an explicit proxy, or the environment's);
    ``ssl_context`` (None: ``ssl.create_default_context()``, made on the
    first https route): TLS to every https origin, inside a tunnel too;
    ``limits``: the caps a proxy's answer to CONNECT gets.
    """

    def __init__(
        self, proxies: ProxyPolicy, ssl_context: ssl.SSLContext | None, limits: HeadLimits
    ) -> None:
        self._proxies = proxies
        self._ssl_context = ssl_context
        self._limits = limits
        self._routes: dict[tuple[str, str, int], Route] = {}

    def route(self, url: URL) -> Route:
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
            if len(self._routes) >= ROUTE_CACHE:
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

    async def connect(self, route: Route, url: URL, times: ExchangeTimes | None) -> Transport:
        """A new connection (TLS and tunnel included) for ``route``, on the way to ``url``.

        Sets ``times.start`` just before anything the server could see.
        Raises ``ConnectError`` (a failed connect or TLS handshake, named
        with ``url``), ``ProxyError`` (the proxy cannot be reached, or
        refused the tunnel).
        """
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
