"""Starting the out-of-process peers of the accuracy tests and bench (relay, offset servers).

Each program prints one ``READY <port>...`` line when it listens; we wait for
it with a deadline (no sleeps), and kill the process (by its own pid) on exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 30.0


@contextlib.contextmanager
def started(argv: Sequence[str], timeout: float = READY_TIMEOUT) -> Iterator[list[int]]:
    """Run ``python argv...``; yield the ports of its READY line; kill it afterwards."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    proc = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            raise RuntimeError(f"{argv[0]} did not start (exit {proc.poll()}): {line!r}")
        yield [int(p) for p in line.split()[1:]]
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def offset_servers(offset: float, cert: str | None = None, key: str | None = None
                   ) -> contextlib.AbstractContextManager[list[int]]:  # fmt: skip
    """``[tcp, udp, http, https]`` ports of servers whose clock is ours + ``offset``."""
    argv = [str(HERE / "offset_servers.py"), "--offset", repr(offset)]
    if cert:
        argv += ["--cert", cert, "--key", key or cert]
    return started(argv)


def relay(tcp: int | None, udp: int | None, *, up: float = 0.0, down: float = 0.0,
          jitter: float = 0.0, loss: float = 0.0, seed: int = 1
          ) -> contextlib.AbstractContextManager[list[int]]:  # fmt: skip
    """``[tcp, udp]`` ports of a WAN relay in front of 127.0.0.1 ``tcp`` / ``udp``."""
    argv = [str(HERE / "wanrelay.py"), "--up", repr(up), "--down", repr(down),
            "--jitter", repr(jitter), "--loss", repr(loss), "--seed", str(seed)]  # fmt: skip
    if tcp:
        argv += ["--tcp", f"127.0.0.1:{tcp}"]
    if udp:
        argv += ["--udp", f"127.0.0.1:{udp}"]
    return started(argv)
