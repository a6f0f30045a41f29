"""Dropping root after binding: ``serve --user NAME [--group NAME]``.

Order matters and is fixed here: supplementary groups first (``setgroups([])``
needs root), then the group, then the user (after ``setuid`` nothing else may
be changed). Then the result is checked -- real and effective ids, no
supplementary groups, and for a non-root target that root cannot be regained
-- and anything short of that raises `PrivilegeError`: a service asked to drop
root never keeps running as root.
"""

from __future__ import annotations

import codecs
import grp
import logging
import os
import pwd
import sys
from dataclasses import dataclass

__all__ = [
    "Identity",
    "LateImports",
    "PrivilegeError",
    "drop_privileges",
    "preload",
    "resolve_identity",
]

logger = logging.getLogger("trio_timehttp.server")


class PrivilegeError(OSError):
    """The process could not become the user and group it was asked to run as."""


@dataclass(frozen=True)
class Identity:
    """A user and group to run as, by name and number."""

    user: str
    uid: int
    group: str
    gid: int

    def __str__(self) -> str:
        return f"user {self.user} (uid {self.uid}), group {self.group} (gid {self.gid})"


def resolve_identity(user: str, group: str | None = None) -> Identity:
    """Look ``user`` and ``group`` up (names or numbers); the group defaults to the user's own.

    Raises ``ValueError`` naming what does not exist. Done before binding, so
    a typo fails at once, not after the sockets are open.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"no such user: {user!r}") from None
    if group is None:
        gid = entry.pw_gid
        try:
            group_name = grp.getgrgid(gid).gr_name
        except KeyError:
            group_name = str(gid)
    else:
        try:
            gentry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except KeyError:
            raise ValueError(f"no such group: {group!r}") from None
        gid, group_name = gentry.gr_gid, gentry.gr_name
    return Identity(entry.pw_name, entry.pw_uid, group_name, gid)


def _already(identity: Identity) -> bool:
    ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
    return ids == (identity.uid, identity.uid, identity.gid, identity.gid)


def drop_privileges(identity: Identity) -> None:
    """Become ``identity`` for good: no supplementary groups, then the group, then the user.

    Already running as exactly that user and group: nothing to change (a
    non-root process cannot call ``setgroups``). Raises `PrivilegeError` when
    a step fails or the result is not what was asked (the caller must then
    stop); logs the new identity at INFO on success.
    """
    if _already(identity) and os.geteuid() != 0:
        logger.info("running as %s already", identity)
        return
    try:
        os.setgroups([])
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    except OSError as exc:
        raise PrivilegeError(
            exc.errno,
            f"cannot switch to {identity}: {exc.strerror or exc} (run as root to use --user)",
        ) from None
    if not _already(identity) or os.getgroups() not in ([], [identity.gid]):
        raise PrivilegeError(f"switching to {identity} did not take effect")
    if identity.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass  # as it must be
        else:
            raise PrivilegeError(f"switched to {identity}, but root could be regained")
    logger.info("dropped privileges: now %s, no supplementary groups", identity)


def preload() -> None:
    """Load now what serving would otherwise load from disk on first use.

    After the drop the interpreter's own files may be unreadable (a Python
    under ``/root``): the codecs ``getaddrinfo`` and ``str.encode`` look up
    lazily (``idna`` and its ``stringprep``/``unicodedata``) must be in
    memory before it. Call before `drop_privileges`.
    """
    "x".encode("idna")
    for name in ("idna", "ascii", "utf-8", "latin-1"):
        codecs.lookup(name)


class LateImports:
    """The modules imported since it was made: made right after the drop, none should be."""

    def __init__(self) -> None:
        self._before = frozenset(sys.modules)

    def names(self) -> list[str]:
        """Sorted names of the modules imported since; ``[]`` when there are none."""
        return sorted(set(sys.modules) - self._before)
