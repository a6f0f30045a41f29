"""A program on a pseudo-terminal, for tests where a terminal matters.

``Terminal`` opens a pty of a given size; ``start`` runs a command with the
pty as stdin and stderr (and stdout unless redirected) and, through
``setsid --ctty``, as its *controlling* terminal, so ``ctrl_c()`` — writing
``^C`` to the terminal — is the kernel's SIGINT to the foreground process
group, exactly what a user's keypress does. Output is read as it comes
(``read_until``), so a chatty program never blocks on a full pty buffer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import shutil
import struct
import termios
from collections.abc import Sequence
from typing import Any

import pytest
import trio


class Terminal:
    """A pty ``columns`` wide; everything the program writes to it lands in ``output``."""

    def __init__(self, columns: int = 80, rows: int = 24) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.set_blocking(self.master, False)
        self.output = b""
        self.closed = False

    async def start(
        self, command: Sequence[str], *, stdout: Any = None, env: dict[str, str] | None = None
    ) -> trio.Process:
        setsid = shutil.which("setsid")
        if setsid is None:
            pytest.fail("needs setsid (util-linux) to give the program a controlling terminal")
        proc = await trio.lowlevel.open_process(
            [setsid, "--ctty", *command],
            stdin=self.slave,
            stdout=self.slave if stdout is None else stdout,
            stderr=self.slave,
            env=env,
        )
        os.close(self.slave)  # the child holds it now; EIO on master once it is gone
        self.slave = -1
        return proc

    def ctrl_c(self) -> None:
        """Type Ctrl-C at the terminal."""
        os.write(self.master, b"\x03")

    async def _read_some(self) -> bool:
        """Read what is there; False once the program's side is closed."""
        await trio.lowlevel.wait_readable(self.master)
        try:
            chunk = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:  # every slave fd closed: the program is done
                return False
            raise
        self.output += chunk
        return bool(chunk)

    async def read_until(self, needle: bytes, timeout: float = 30) -> bytes:
        """Read until ``needle`` has appeared (fails the test after ``timeout`` s)."""
        with trio.fail_after(timeout):
            while needle not in self.output:
                if not await self._read_some():
                    raise AssertionError(f"{needle!r} never came; got {self.output!r}")
        return self.output

    async def read_to_end(self, timeout: float = 30) -> bytes:
        with trio.fail_after(timeout):
            while await self._read_some():
                pass
        return self.output

    def close(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1
        if not self.closed:
            os.close(self.master)
            self.closed = True


async def finish(proc: trio.Process, timeout: float = 30) -> int:
    """Wait for ``proc`` (killing it if it overstays); its exit status."""
    try:
        with trio.fail_after(timeout):
            return await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


__all__ = ["Terminal", "finish"]
