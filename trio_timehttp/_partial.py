"""The files a resumable download keeps between attempts: ``NAME.part`` and its validator.

``FileConsumer(path, resume=True)`` writes the body to ``<target>.part``
(``<target>`` is ``path`` with symlinks resolved), appending or starting over
as ``_resume.decide`` says, and keeps it when the transfer fails; the
response's validator (strong ETag, or a strong Last-Modified) goes to
``<target>.part.validator`` (one line) for the next attempt's If-Range. Only
a complete body is renamed to ``<target>``, and then both are removed. The
names are visible on purpose (as Firefox's ``.part``): a partial download is
something its owner may want to see, and delete.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO

from ._headers import Headers
from ._resume import Action, Decision, ResumeState, validator_of

__all__ = ["PartialFile"]


class PartialFile:
    """The partial data and saved validator for the download to ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.part = target + ".part"
        self.meta = self.part + ".validator"

    def state(self) -> ResumeState:
        """What an earlier attempt left (offset 0 and no validator when nothing)."""
        try:
            offset = os.path.getsize(self.part)
        except FileNotFoundError:
            return ResumeState()
        validator = None
        with contextlib.suppress(FileNotFoundError), open(self.meta, encoding="latin-1") as f:
            validator = f.readline().strip() or None
        return ResumeState(offset, validator if offset else None)

    def open(self, decision: Decision, headers: Headers) -> IO[bytes]:
        """The ``.part`` file to write the body to: appended to, or truncated."""
        mode = "ab" if decision.action is Action.APPEND else "wb"
        file = open(self.part, mode, buffering=1 << 16)  # noqa: SIM115 - the consumer closes it
        validator = validator_of(headers)
        if validator is None and decision.action is Action.APPEND:
            return file  # keep the validator the range was asked with
        self._save(validator)
        return file

    def _save(self, validator: str | None) -> None:
        if validator is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.meta)
            return
        tmp = self.meta + ".tmp"
        with open(tmp, "w", encoding="latin-1") as f:
            f.write(validator + "\n")
        os.replace(tmp, self.meta)

    def restore(self, size: int) -> None:
        """Cut the ``.part`` back to ``size`` bytes: a rejected answer's data goes, all of it."""
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.part, size)

    def finish(self, total: int | None) -> bool:
        """Put the data in place if it is the whole resource (``total`` bytes, when known)."""
        if total is not None and os.path.getsize(self.part) != total:
            return False  # a 206 that stopped short of the end: keep it for later
        os.replace(self.part, self.target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta)
        return True
