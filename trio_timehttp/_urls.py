"""URL parsing, validation and RFC 3986 resolution for the requester (pure).

We are strict where a lenient parser would put attacker bytes on the wire: no
control characters or spaces, a real host, a port in range, http or https only.
Non-ASCII is made wire-safe (IDNA for the host, percent-encoding elsewhere),
and dot segments are removed from the path before it is sent (RFC 3986
section 5.2.4). A server's ``Location`` gets the leniency browsers give it:
spaces and a few other characters RFC 3986 never allows raw are
percent-encoded outside the authority (never in the host).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from ._errors import InvalidURL
from ._hostchars import forbidden_char

__all__ = [
    "DEFAULT_PORTS",
    "URL",
    "encode_location",
    "parse_url",
    "remove_dot_segments",
    "resolve_location",
]

DEFAULT_PORTS = {"http": 80, "https": 443}

# Control characters, space, DEL, and the characters RFC 3986 never allows raw.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"\\^`{|}]")
_REG_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?$")
# One DNS label (RFC 1123 section 2.1, plus "_" as seen in the wild): 1 to 63
# characters, no hyphen at either end.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
# A reference with an authority part: optional scheme, then "//".
_NETWORK_PATH = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//")
# Everything RFC 3986 allows in a URL, plus '%' (keep existing escapes).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_SAFE = "!#$%&'()*+,/:;=?@[]~"
# Characters real servers put raw in a Location's path, query or fragment
# (spaces in file names, ``|`` and braces in query strings). curl, urllib3
# and browsers percent-encode them, and so do we, rather than refuse the
# redirect. Backslash is *not* here: browsers read it as ``/`` in http(s)
# URLs (``http:\\evil``), so a Location with one is ambiguous and stays an
# error; so do control characters (tab included).
_LENIENT = {c: f"%{ord(c):02X}" for c in ' <>"^`{|}'}
_LENIENT_RE = re.compile('[ <>"^`{|}]')
_AUTHORITY_END = re.compile(r"[/?#]")


@dataclass(frozen=True, slots=True)
class URL:
    """An absolute http(s) URL, split into what the requester needs."""

    scheme: str
    host: str  # lower-case; an IPv6 literal without brackets
    port: int
    target: str  # request-target: path and query, never the fragment
    fragment: str | None = None

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``, default ports made explicit (RFC 6454)."""
        return (self.scheme, self.host, self.port)

    @property
    def authority(self) -> str:
        """``host[:port]`` as sent in ``Host``: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        frag = "" if self.fragment is None else f"#{self.fragment}"
        return f"{self.scheme}://{self.authority}{self.target}{frag}"


def _encode_host(raw: str, url: str) -> str:
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise InvalidURL(f"unterminated IPv6 literal in {url!r}")
        if "%" in raw:  # RFC 6874 ``[fe80::1%25eth0]``: its Host, TLS name, pool key, proxy rules
            raise InvalidURL(f"IPv6 zone IDs are not supported in {url!r}")
        try:
            return str(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError as exc:
            raise InvalidURL(f"bad IPv6 literal in {url!r}") from exc
    host = raw.lower().rstrip(".") if raw.endswith(".") and len(raw) > 1 else raw.lower()
    if not host.isascii():
        bad = forbidden_char(host, joiners=False)  # the idna codec would drop it silently
        if bad is not None:
            raise InvalidURL(f"host {raw!r} has {bad}, which IDNA 2008 forbids, in {url!r}")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"host {raw!r} cannot be IDNA-encoded in {url!r}") from exc
    if not _REG_NAME.match(host) or not all(map(_LABEL.match, host.split("."))):
        raise InvalidURL(f"bad host {raw!r} in {url!r}")
    return host


def _ascii(part: str) -> str:
    """Percent-encode non-ASCII (as UTF-8), leaving existing escapes alone."""
    return part if part.isascii() else quote(part, safe=_SAFE)


def remove_dot_segments(path: str) -> str:
    """``path`` (absolute: it starts with ``/``) with its ``.`` and ``..`` segments resolved.

    RFC 3986 section 5.2.4, as curl, urllib3 and requests apply it to a
    request URL before sending: ``/../a/./b`` becomes ``/a/b``, ``/a/b/..``
    becomes ``/a/``, and a ``..`` never climbs above the root. Only literal
    dots count: ``%2E`` is left for the server to interpret.
    """
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if last:  # a trailing "." or ".." leaves the directory: "/a/." is "/a/"
            out.append("")
    return "/" + "/".join(out)


def encode_location(location: str) -> str:
    """Percent-encode spaces and ``<>"^`{|}`` in a Location, outside its authority.

    ``../m o o.html`` becomes ``../m%20o%20o.html`` (curl, urllib3 and browsers
    do the same). The authority (``//host:port`` of a network-path or
    absolute reference) is left as it is, so a space in the host still makes
    the Location unusable. Control characters and backslashes are left too:
    they stay errors.
    """
    start = 0
    network = _NETWORK_PATH.match(location)
    if network:
        end = _AUTHORITY_END.search(location, network.end())
        start = end.start() if end else len(location)
    rest = _LENIENT_RE.sub(lambda m: _LENIENT[m[0]], location[start:])
    return location[:start] + rest


def parse_url(url: str) -> URL:
    """Split and validate an absolute http(s) URL; anything unusable is ``InvalidURL``."""
    if not isinstance(url, str):
        raise InvalidURL(f"a URL must be a str, not {type(url).__name__}")
    if _FORBIDDEN.search(url):
        raise InvalidURL(f"control characters or spaces in URL {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "http://[::1" (unterminated bracket)
        raise InvalidURL(f"malformed URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"only http and https URLs are supported, not {url!r}")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidURL(
            f"credentials in the URL are not supported ({scheme}://...@...); "
            "send an Authorization header instead"
        )
    if not netloc:
        raise InvalidURL(f"no host in URL {url!r}")
    # Split host and port ourselves: urlsplit().port is lenient with odd input.
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidURL(f"unterminated IPv6 literal in {url!r}")
        raw_host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidURL(f"junk after the IPv6 literal in {url!r}")
        raw_port = rest[1:] if rest else None
    else:
        raw_host, sep, raw_port_str = netloc.partition(":")
        raw_port = raw_port_str if sep else None
    host = _encode_host(raw_host, url)
    if raw_port is None or raw_port == "":
        port = DEFAULT_PORTS[scheme]
    elif raw_port.isdigit() and raw_port.isascii():
        # RFC 3986 section 3.2.3: ``port = *DIGIT``, so ``:08080`` is port 8080 (as curl).
        digits = raw_port.lstrip("0") or "0"
        port = int(digits) if len(digits) <= 5 else 65536
        if not 0 < port < 65536:
            raise InvalidURL(f"port {raw_port} out of range in {url!r}")
    else:
        raise InvalidURL(f"bad port {raw_port!r} in {url!r}")
    path = _ascii(parts.path) or "/"
    target = remove_dot_segments(path if path.startswith("/") else "/" + path)
    if parts.query or url.split("#", 1)[0].endswith("?"):
        target = f"{target}?{_ascii(parts.query)}"
    fragment = _ascii(parts.fragment) if "#" in url else None
    return URL(scheme, host, port, target, fragment)


def resolve_location(base: URL, location: str) -> URL:
    """Resolve a ``Location`` against the URL that answered with it (RFC 3986 section 5).

    ``http:/path`` (same scheme, no authority) resolves against the base's
    origin; when the Location has no fragment, the base's is kept (RFC 9110
    section 10.2.2). Spaces and ``<>"^`{|}`` in the path, query or fragment
    are percent-encoded first (``encode_location``). Raises ``InvalidURL``
    for anything unusable: control characters, a backslash, a space in the
    authority, a bad host or port, a scheme other than http(s).
    """
    location = encode_location(location)
    if _FORBIDDEN.search(location):
        raise InvalidURL(f"control characters or spaces in Location {location!r}")
    scheme = _SCHEME.match(location)
    if scheme and scheme[1].lower() not in DEFAULT_PORTS:
        # Say what is wrong (the scheme) before anything else can complain.
        raise InvalidURL(f"only http and https URLs are supported, not Location {location!r}")
    try:
        empty_host = bool(_NETWORK_PATH.match(location)) and not urlsplit(location).netloc
        joined = urljoin(str(URL(base.scheme, base.host, base.port, base.target)), location)
    except ValueError as exc:
        raise InvalidURL(f"malformed Location {location!r}: {exc}") from exc
    if empty_host:
        # "http:///x": urljoin would quietly read it as the relative "http:/x";
        # RFC 9110 section 4.2.1: an http URI with an empty host is invalid.
        raise InvalidURL(f"empty host in Location {location!r}")
    resolved = parse_url(joined)
    if resolved.fragment is None:
        # urljoin drops an empty fragment ("/c#"), which still counts as one:
        # only a Location with no "#" at all inherits the base's fragment.
        fragment = "" if "#" in location else base.fragment
        if fragment is not None:
            resolved = URL(
                resolved.scheme, resolved.host, resolved.port, resolved.target, fragment
            )
    return resolved
