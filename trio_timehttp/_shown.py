"""Peer-supplied text, made safe to put in an error message.

``shown(data)`` quotes what a server (or proxy) sent so that a message can
include it: escaped (control and non-ASCII characters as ``\\xNN``, so a
hostile peer cannot write to the user's terminal), truncated (at
``SHOWN_CHARS`` characters, marked with ``…``), in double quotes. Never a
Python ``bytes`` or list repr. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SHOWN_CHARS", "shown"]

SHOWN_CHARS: Final = 60

_NAMED: Final = {"\r": "\\r", "\n": "\\n", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if " " <= ch <= "~":
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(data: bytes | str, limit: int = SHOWN_CHARS) -> str:
    """``data`` (bytes read as latin-1) escaped, cut at ``limit`` characters, quoted."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    more = "…" if len(text) > limit else ""
    return '"' + "".join(_escape(ch) for ch in text[:limit]) + more + '"'
