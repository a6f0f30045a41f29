"""A small case-insensitive, multi-valued header collection (pure).

Names are stored lower-case (as h11 hands them to us); repeated fields keep
their order, which matters for ``Set-Cookie`` and for what a user prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, Union

__all__ = ["Headers", "HeadersLike"]

HeadersLike: TypeAlias = Union[
    "Headers", Mapping[str, str], Iterable[tuple[str | bytes, str | bytes]]
]


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1")
    raise TypeError(f"headers: {what} must be str or bytes, not {type(value).__name__}")


def _fields(headers: object) -> tuple[tuple[str, str], ...]:
    """The caller's fields, names lower-case; ``TypeError`` for anything but text pairs."""
    source = headers.items() if isinstance(headers, Mapping) else headers
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | bytearray):
        pairs: Iterator[object] = iter(source)
    else:
        raise TypeError(
            "headers must be a mapping or an iterable of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    fields = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"headers: each field must be a (name, value) pair, not {pair!r}")
        name = _text(pair[0], "a field name")
        fields.append((name.lower(), _text(pair[1], f"the value of {name!r}")))
    return tuple(fields)


class Headers:
    """Case-insensitive header fields that keep repeats in order.

    ``Headers(headers)`` takes ``None`` (default: empty), another
    ``Headers``, a mapping, or an iterable of ``(name, value)`` pairs of
    ``str`` or ``bytes`` (bytes are read as ISO-8859-1). Names are kept
    lower-case; values are ``str``, as received. Anything else (a value
    that is not ``str``/``bytes``, a name with CR, LF or NUL) raises
    ``TypeError``/``ValueError`` naming the field.

    ``h["name"]`` joins repeated fields with ``", "`` (RFC 9110 section 5.3)
    and raises ``KeyError`` when there is none; use ``get_list`` where
    joining is wrong (``Set-Cookie``). ``"name" in h`` ignores case;
    ``len(h)`` counts fields (repeats included); iterating yields the
    distinct names, like ``keys()``. Immutable and hashable: build a new
    one with ``replace()`` / ``remove()``.
    """

    __slots__ = ("_fields",)

    _fields: tuple[tuple[str, str], ...]

    def __init__(self, headers: HeadersLike | None = None) -> None:
        if headers is None:
            self._fields = ()
        elif isinstance(headers, Headers):
            self._fields = headers._fields
        else:
            self._fields = _fields(headers)

    @classmethod
    def _from_lower(cls, fields: Iterable[tuple[str, str]]) -> Headers:
        """Build from pairs whose names are already lower-case (no copying work)."""
        new = cls.__new__(cls)
        new._fields = tuple(fields)
        return new

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` (any case), repeats joined with ``", "``.

        Returns ``default`` (default ``None``) when there is no such field;
        never raises.
        """
        values = self.get_list(name)
        return ", ".join(values) if values else default

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` (any case), in the order received.

        ``[]`` when there is no such field. Use it for fields that must not
        be joined, such as ``Set-Cookie``.
        """
        key = name.lower()
        return [v for k, v in self._fields if k == key]

    def items(self) -> list[tuple[str, str]]:
        """All fields as ``(name, value)`` pairs, in the order received.

        Names are lower-case; a repeated field appears once per occurrence.
        Returns a new list (changing it does not change the ``Headers``).
        """
        return list(self._fields)

    def keys(self) -> list[str]:
        """The distinct field names, lower-case, in order of first appearance.

        Returns a new list; a repeated field's name appears once.
        """
        return list(dict.fromkeys(k for k, _ in self._fields))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(k == key for k, _ in self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._fields)

    def __bool__(self) -> bool:
        return bool(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._fields == other._fields
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"

    def remove(self, *names: str) -> Headers:
        """A new ``Headers`` without any field called one of ``names`` (any case).

        The order of the rest is kept; names that are absent are ignored.
        """
        drop = {n.lower() for n in names}
        return Headers._from_lower((k, v) for k, v in self._fields if k not in drop)

    def replace(self, name: str, value: str) -> Headers:
        """A new ``Headers`` where ``name`` has exactly one field, ``value``.

        Every earlier field of that name (any case) is dropped and the new
        one goes last; the other fields keep their order.
        """
        key = name.lower()
        return Headers._from_lower([*((k, v) for k, v in self._fields if k != key), (key, value)])
