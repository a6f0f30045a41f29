"""HTTP proxies, pure: the proxy URL, which proxy a request uses, and CONNECT.

Nothing here touches a socket, the clock or a logger; the transport asks this
module three questions and does the I/O itself:

* which proxy (if any) does this URL go through (`ProxyPolicy.choose`),
* what bytes open a tunnel (`connect_request`),
* what does the proxy's answer to CONNECT mean (`ConnectReply`).

Environment rules (curl's, from ``lib/url.c`` ``detect_proxy`` and
``lib/noproxy.c``; the differences are marked *ours*):

* ``http://`` targets read ``http_proxy`` -- lower case only: a CGI server
  sets ``HTTP_PROXY`` from a request's ``Proxy:`` header ("httpoxy").
* ``https://`` targets read ``https_proxy``, then ``HTTPS_PROXY``.
* Both fall back to ``all_proxy``, then ``ALL_PROXY``.
* ``no_proxy``, then ``NO_PROXY``, lists targets that go direct.
* A variable set to the empty string counts as unset (curl's ``curl_getenv``).
* *Ours*: a loopback target (``localhost``, ``*.localhost``, 127.0.0.0/8,
  ``::1``) never goes through a proxy taken from the environment (curl would
  proxy it; Go's ``httpproxy`` does not). An explicit ``proxy=`` applies to
  every request, loopback included, and ignores ``NO_PROXY`` (curl lets
  ``NO_PROXY`` override ``-x``).

Credentials live only in `Proxy.authorization`; `repr`, `str` and every
message built here show the proxy as ``http://host:port``.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ._errors import InvalidURL, ProtocolError, ProxyError
from ._urls import URL, parse_url

__all__ = [
    "DEFAULT_PROXY_PORT",
    "ConnectReply",
    "Proxy",
    "ProxyPolicy",
    "absolute_target",
    "connect_request",
    "forward_refusal",
    "is_loopback",
    "no_proxy_matches",
    "parse_proxy",
    "redact",
    "with_proxy_authorization",
]

# curl's CURL_DEFAULT_PROXY_PORT: "If not specified, libcurl defaults to using
# port 1080 for proxies" (CURLOPT_PROXY(3)), for http:// proxies too. Squid's
# habit is 3128 and tinyproxy's 8888, so name the port; we only follow curl.
DEFAULT_PROXY_PORT = 1080

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it is, and the ``Proxy-Authorization`` value for it.

    ``str()`` and ``repr()`` never show the credentials; ``authorization`` is
    the only place they exist (base64, as RFC 7617 Basic sends them).
    """

    host: str  # lower-case; an IPv6 literal without brackets
    port: int
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def authority(self) -> str:
        """``host:port`` (IPv6 in brackets), the port always present."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"http://{self.authority}"

    def __repr__(self) -> str:
        auth = ", with credentials" if self.authorization is not None else ""
        return f"Proxy('{self}'{auth})"


def redact(url: str) -> str:
    """A proxy URL with everything before its last ``@`` (after the scheme) as ``***``.

    For messages; never raises. A proxy URL has no path, so any ``@`` ends a
    userinfo -- even one holding a raw ``/``, ``?`` or ``#`` that a general URL
    parser would take for the start of a path and show.
    """
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    if at < 0:
        return url
    return url[:start] + "***" + url[at:]


def _credentials(userinfo: str, shown: str) -> bytes:
    user, _, password = userinfo.partition(":")
    try:
        user_b = unquote_to_bytes(user).decode("utf-8")
        password_b = unquote_to_bytes(password).decode("utf-8")
    except UnicodeDecodeError:
        # No chaining: the decode error quotes the offending byte of the secret.
        raise InvalidURL(f"proxy credentials are not UTF-8 in {shown!r}") from None
    if ":" in user_b:
        # RFC 7617 section 2: the user-id cannot contain a colon.
        raise InvalidURL(f"the proxy user name contains ':' in {shown!r}")
    pair = f"{user_b}:{password_b}".encode()
    return b"Basic " + base64.b64encode(pair)


def parse_proxy(url: str) -> Proxy:
    """Parse ``[http://][user:pass@]host[:port][/]`` into a `Proxy`.

    No scheme means ``http`` and no port means 1080, as curl does. The user
    and password are percent-decoded (UTF-8). Raises ``InvalidURL`` (its
    message shows the URL with the credentials replaced by ``***``) for any
    other scheme -- ``https`` (TLS to the proxy) and ``socks*`` are not
    supported -- a path, query or fragment, or a bad host or port.
    """
    if not isinstance(url, str):
        raise InvalidURL(f"a proxy URL must be a str, not {type(url).__name__}")
    shown = redact(url)
    scheme_m = _SCHEME.match(url)
    scheme = scheme_m[1].lower() if scheme_m else "http"
    if scheme.startswith("socks"):
        raise InvalidURL(f"SOCKS proxies are not supported ({shown!r}); use an http:// proxy")
    if scheme != "http":
        raise InvalidURL(f"only http:// proxies are supported, not {shown!r}")
    rest = url[scheme_m.end() :] if scheme_m else url
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(sep in rest for sep in "/?#"):
        raise InvalidURL(f"a proxy URL has no path, query or fragment: {shown!r}")
    userinfo, at, hostport = rest.rpartition("@")
    authorization = _credentials(userinfo, shown) if at else None
    if not hostport:
        raise InvalidURL(f"no host in proxy URL {shown!r}")
    has_port = ":" in hostport.rpartition("]")[2]
    if has_port and hostport.endswith(":"):
        hostport, has_port = hostport[:-1], False
    try:
        target = parse_url(f"http://{hostport}" + ("" if has_port else f":{DEFAULT_PROXY_PORT}"))
    except InvalidURL as exc:
        raise InvalidURL(f"bad proxy URL {shown!r}: {exc}") from None
    return Proxy(target.host, target.port, authorization)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``*.localhost`` (RFC 6761), 127.0.0.0/8, ``::1``."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip is not None and ip.is_loopback


def _split_token(token: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of one NO_PROXY entry; None if the port is not a number."""
    host, port = token, ""
    if token.startswith("["):
        host, _, after = token[1:].partition("]")
        if after:
            if not after.startswith(":"):
                return None
            port = after[1:]
    elif token.count(":") == 1:
        host, _, port = token.partition(":")
    if not port:
        return host, None
    if not (port.isascii() and port.isdigit()):
        return None
    return host, int(port)


def _match_ip(pattern: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return network.version == ip.version and ip in network


def _match_name(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("."):
        pattern = pattern[1:]
    if not pattern.isascii():
        try:
            pattern = pattern.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return bool(pattern) and (host == pattern or host.endswith("." + pattern))


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Does the ``NO_PROXY`` value ``no_proxy`` send ``host:port`` direct?

    curl's rules: the whole value ``*`` matches every host; otherwise entries
    are separated by commas (blanks around them ignored). A host-name target
    matches an entry equal to it or a domain it is inside (``example.com`` and
    ``.example.com`` both match ``www.example.com``, neither matches
    ``notexample.com``), case-insensitively, trailing dots ignored. An IP
    target matches only IP entries: an address (any spelling of it) or a CIDR
    range (``10.0.0.0/8``, ``fe80::/10``). *Ours*: an entry may carry a port
    (``host:8080``, ``[::1]:8080``) and then matches that port only (curl's
    entry with a port never matches); ``/0`` means every address (curl reads
    it as the one address).
    """
    if no_proxy == "*":
        return True
    host = host.lower().rstrip(".")
    ip = _ip(host)
    for raw in no_proxy.split(","):
        token = raw.strip(" \t")
        split = _split_token(token) if token else None
        if split is None:
            continue
        pattern, token_port = split
        if token_port is not None and token_port != port:
            continue
        if ip is not None:
            if _match_ip(pattern, ip):
                return True
        elif _match_name(pattern, host):
            return True
    return False


def _env(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` set to a non-empty value, as ``(name, value)``."""
    for name in names:
        value = environ.get(name)
        if value:
            return name, value
    return None


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """Which proxy each request uses: an explicit one, the environment's, or none.

    Build it once per client with `from_settings`; `choose` is then a pure
    function of the target URL.
    """

    explicit: Proxy | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(
        cls, proxy: str | None, trust_env: bool, environ: Mapping[str, str]
    ) -> ProxyPolicy:
        """``proxy`` parsed now (``InvalidURL`` if unusable); the environment
        copied (only its proxy variables) when ``trust_env`` and no ``proxy``."""
        if proxy is not None:
            return cls(parse_proxy(proxy))
        if not trust_env:
            return cls()
        names = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY")  # fmt: skip
        return cls(None, {n: environ[n] for n in names if n in environ})

    def choose(self, url: URL) -> Proxy | None:
        """The proxy for ``url``, or None to go direct.

        Raises ``InvalidURL`` when the environment names an unusable proxy
        (the message names the variable; credentials shown as ``***``).
        """
        if self.explicit is not None:
            return self.explicit
        if not self.environ or is_loopback(url.host):
            return None
        no_proxy = _env(self.environ, "no_proxy", "NO_PROXY")
        if no_proxy and no_proxy_matches(url.host, url.port, no_proxy[1]):
            return None
        scheme_vars = ("http_proxy",) if url.scheme == "http" else ("https_proxy", "HTTPS_PROXY")
        found = _env(self.environ, *scheme_vars, "all_proxy", "ALL_PROXY")
        if found is None:
            return None
        name, value = found
        try:
            return parse_proxy(value)
        except InvalidURL as exc:
            raise InvalidURL(f"{name}: {exc} (or pass trust_env=False)") from exc


def connect_request(url: URL, proxy: Proxy) -> bytes:
    """The CONNECT request head that opens a tunnel to ``url``'s host and port.

    ``CONNECT host:port HTTP/1.1`` (RFC 9110 section 9.3.6: authority-form,
    the port always present), ``Host`` the same, and ``Proxy-Authorization``
    when the proxy has credentials -- the only request that carries them.
    """
    host = f"[{url.host}]" if ":" in url.host else url.host
    authority = f"{host}:{url.port}".encode("ascii")
    head = b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
    if proxy.authorization is not None:
        head += b"Proxy-Authorization: " + proxy.authorization + b"\r\n"
    return head + b"\r\n"


# The end of a head: an empty line, CRLF or bare LF (RFC 9112 section 2.2
# lets a recipient accept a bare LF as a line terminator).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x09\x20-\x7e\x80-\xff]*?)[ \t]*")


@dataclass(slots=True)
class ConnectReply:
    """Reads a proxy's answer to CONNECT, fed bytes as they arrive.

    `feed` returns None until a final (non-1xx) response head is complete,
    then the bytes after it (empty for a proper proxy: the TLS client speaks
    first, so nothing from the origin can precede our ClientHello). A 2xx
    means the tunnel is open. Raises ``ProxyError`` for 407 ("requires
    authentication", or "rejected the credentials" when we sent some) and any
    other final status (the message names the proxy, never its credentials,
    and the status); ``ProtocolError`` for a malformed head, a head over
    ``max_header_bytes`` or ``max_header_fields``, more than
    ``max_informational`` 1xx responses, or a 2xx that announces a body
    (``Content-Length`` other than 0, or ``Transfer-Encoding``: RFC 9110
    section 9.3.6 forbids both, and bytes of a body could not be told from
    the origin's). Feeding after a result raises ``RuntimeError``.
    """

    proxy: Proxy
    target: str  # "host:port", for messages
    max_header_bytes: int = 65536
    max_header_fields: int = 100
    max_informational: int = 10
    _buffer: bytes = field(default=b"", repr=False)
    _informational: int = field(default=0, repr=False)
    _done: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> bytes | None:
        """Add ``data``; None while the head is incomplete, else the bytes after it."""
        if self._done:
            raise RuntimeError("ConnectReply already produced its result")
        self._buffer += data
        while True:
            end = _HEAD_END.search(self._buffer)
            if end is None:
                if len(self._buffer) > self.max_header_bytes:
                    raise self._error(f"sent a head over {self.max_header_bytes} bytes")
                self._check_start()
                return None
            if end.start() > self.max_header_bytes:
                raise self._error(f"sent a head over {self.max_header_bytes} bytes")
            head, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            status = self._check(head)
            if status >= 200:
                self._done = True
                rest, self._buffer = self._buffer, b""
                return rest
            self._informational += 1
            if self._informational > self.max_informational:
                raise self._error(f"sent more than {self.max_informational} 1xx responses")

    def _error(self, what: str) -> ProtocolError:
        return ProtocolError(f"proxy {self.proxy} {what} in reply to CONNECT {self.target}")

    def _check_start(self) -> None:
        """Fail as soon as the bytes so far cannot begin an HTTP/1.x status line.

        (SSH, SMTP or any other service on the proxy's port: no need to wait
        for a head that will never end.)
        """
        first, newline, _ = self._buffer.partition(b"\n")
        if newline:
            line = first[:-1] if first.endswith(b"\r") else first
            if _STATUS_LINE.fullmatch(line) is None:
                raise self._error(f"sent a malformed status line {line[:80]!r}")
        elif not b"HTTP/1.".startswith(first[:7]):
            raise self._error(f"sent a malformed status line {first[:80]!r} (not HTTP/1.x)")

    def _check(self, head: bytes) -> int:
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        status_m = _STATUS_LINE.fullmatch(lines[0])
        if status_m is None:
            raise self._error(f"sent a malformed status line {lines[0][:80]!r}")
        if len(lines) - 1 > self.max_header_fields:
            raise self._error(f"sent more than {self.max_header_fields} header fields")
        fields: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            field_m = _FIELD.fullmatch(line)
            if field_m is None:
                raise self._error(f"sent a malformed header line {line[:80]!r}")
            fields.append((field_m[1].lower(), field_m[2]))
        status = int(status_m[1])
        if 200 <= status < 300:
            self._check_no_body(fields)
        elif status >= 300:
            raise self._refused(status, status_m[2] or b"")
        return status

    def _check_no_body(self, fields: list[tuple[bytes, bytes]]) -> None:
        lengths = {value for name, value in fields if name == b"content-length"}
        if any(name == b"transfer-encoding" for name, _ in fields):
            raise self._error("announced a body (Transfer-Encoding) on a 2xx")
        if lengths and lengths != {b"0"}:
            if all(v.isdigit() for v in lengths) and len(lengths) == 1:
                raise self._error("announced a body (Content-Length > 0) on a 2xx")
            raise self._error(f"sent a bad Content-Length {sorted(lengths)!r}")

    def _refused(self, status: int, reason: bytes) -> ProxyError:
        # A hostile proxy's reason phrase: at most 80 bytes, printable only.
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in reason[:80])
        status_text = f"{status} {text.strip()}".strip()
        if status == 407:
            what = (
                "rejected the credentials"
                if self.proxy.authorization is not None
                else "requires authentication"
            )
            return ProxyError(f"proxy {self.proxy} {what} ({status_text})")
        return ProxyError(f"proxy {self.proxy} refused CONNECT {self.target}: {status_text}")


# --- forward requests (http:// targets through the proxy) ---------------------------


def absolute_target(url: URL) -> str:
    """The absolute-form request-target a forward proxy needs (RFC 9112 section 3.2.2).

    The URL without its fragment, the port only when not the default.
    """
    return f"{url.scheme}://{url.authority}{url.target}"


def with_proxy_authorization(head: bytes, proxy: Proxy) -> bytes:
    """A request head with ``Proxy-Authorization`` added, when the proxy has credentials.

    Added to the bytes, not to the request: a ``Response.request`` (and with it
    a redirect policy's next hop) never carries the proxy's credentials.
    """
    if proxy.authorization is None:
        return head
    if not head.endswith(b"\r\n\r\n"):  # pragma: no cover - h11 always ends a head so
        raise ValueError("not a request head")
    return head[:-2] + b"Proxy-Authorization: " + proxy.authorization + b"\r\n\r\n"


def forward_refusal(proxy: Proxy, status: int, url: str) -> ProxyError | None:
    """The ``ProxyError`` for a forward proxy's 407 to a request for ``url``, else None.

    Only 407 is surely the proxy's own answer; any other status (a 502 for an
    unreachable origin included) is delivered as the response, as curl does.
    """
    if status != 407:
        return None
    what = (
        "rejected the credentials"
        if proxy.authorization is not None
        else "requires authentication"
    )
    return ProxyError(f"proxy {proxy} {what} (407) for {url}")
