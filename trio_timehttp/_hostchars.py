"""Host names with characters IDNA 2008 forbids are refused, not mapped away (pure).

Both IDNA 2003 (the stdlib ``idna`` codec) and getaddrinfo's numeric parse
silently drop default-ignorable code points (U+200D ZERO WIDTH JOINER, U+00AD
SOFT HYPHEN, U+FEFF, variation selectors, ...), so ``ex\\u200dample.com``
would quietly become ``example.com``, a host the caller never wrote. IDNA
2008 disallows them all, except ZWJ and ZWNJ right after a virama (its
CONTEXTJ rule; ZWNJ's further joining-type context is not recognised here:
refused, the safe side).
"""

from __future__ import annotations

import unicodedata

__all__ = ["forbidden_char"]

#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt).
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_JOINERS = ("\u200c", "\u200d")
_VIRAMA = 9  # canonical combining class


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _IGNORABLE)


def forbidden_char(name: str, *, joiners: bool = True) -> str | None:
    """The first character of ``name`` IDNA 2008 forbids as ``"U+200D"``, else None.

    Only default-ignorable code points are checked (the ones other encoders
    drop silently); everything else is left to the encoder, which refuses
    loudly. ASCII names never have one. ``joiners=False``: a joiner is
    refused even after a virama (for an IDNA 2003 encoder, which would drop
    it).
    """
    if name.isascii():
        return None
    for index, char in enumerate(name):
        if not _ignorable(char):
            continue
        after_virama = index > 0 and unicodedata.combining(name[index - 1]) == _VIRAMA
        if joiners and char in _JOINERS and after_virama:
            continue
        return f"U+{ord(char):04X}"
    return None
