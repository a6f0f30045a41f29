"""The sources of ``time`` and ``monitor``, checked before any reading.

A source that can never be read (``htp://x``, ``127.0.0.1:65536``,
``http://[::1``, a control character in a host name) or one given twice
(``a``, ``A:37``: two votes for one clock) is a mistake in the command line,
a ``UsageError``, rather than an error repeated every round.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._cli_args import UsageError
from ._errors import TimeHTTPError
from ._timeclient import _label, _scheme, _split_host
from ._urls import parse_url

# C0 controls, space, DEL and C1: never part of a host name (as in a URL's host).
_CONTROL_OR_SPACE = re.compile("[\x00-\x20\x7f-\x9f]")


def source_key(source: str, port: int) -> str:
    """What ``source`` reads, normalised: ``http://host:80/``, ``tcp:host:37``.

    The host's case and a default port written out or left implicit make no
    difference. Raises ``UsageError`` naming the source when it can never be
    read: an unsupported scheme, a malformed URL or host, a port out of range.
    """
    scheme = _scheme(source)
    if scheme is not None and scheme not in ("http", "https"):
        raise UsageError(f"source {source!r} can never be read: unsupported scheme {scheme!r} "
                         "(give host[:port], or an http:// or https:// URL)")  # fmt: skip
    try:
        if scheme is not None:
            url = parse_url(source)
            return f"{url.scheme}://{_label(url.host, url.port)}{url.target}"
        if _CONTROL_OR_SPACE.search(source):  # the resolver would only say "not known"
            raise UsageError(f"source {source!r} can never be read: control characters or "
                             "spaces in a host name")  # fmt: skip
        name, number = _split_host(source, port)
    except TimeHTTPError as exc:
        raise UsageError(f"source {source!r} can never be read: {exc}") from None
    return _label(name.lower(), number)


def check_sources(sources: Sequence[str], port: int) -> None:
    """Every source readable and none given twice, else a ``UsageError`` naming it."""
    seen: dict[str, str] = {}
    for source in sources:
        key = source_key(source, port)
        if key in seen:
            same = "" if seen[key] == source else f" (as {seen[key]!r})"
            raise UsageError(f"a source is given more than once: {source!r}{same}")
        seen[key] = source
