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
    """``[tcp, udp]`` ports of a WAN relay in front of 127.0.0.1 ``tcp`` / ``udp`` (0: none)."""
    return _relay_many([tcp] if tcp else [], [udp] if udp else [], up=up, down=down,
                       jitter=jitter, loss=loss, seed=seed, pad=(tcp, udp))  # fmt: skip


@contextlib.contextmanager
def _relay_many(tcp: Sequence[int], udp: Sequence[int], *, pad: tuple[int | None, int | None]
                | None = None, **path: float) -> Iterator[list[int]]:  # fmt: skip
    argv = [str(HERE / "wanrelay.py")]
    for name, value in path.items():
        argv += [f"--{name}", repr(value)]
    argv += [a for port in tcp for a in ("--tcp", f"127.0.0.1:{port}")]
    argv += [a for port in udp for a in ("--udp", f"127.0.0.1:{port}")]
    with started(argv) as ports:
        if pad is None:
            yield ports
        else:  # one of each, 0 for a side not relayed
            it = iter(ports)
            yield [next(it) if pad[0] else 0, next(it) if pad[1] else 0]


def relay_many(tcp: Sequence[int], udp: Sequence[int], **path: float
               ) -> contextlib.AbstractContextManager[list[int]]:  # fmt: skip
    """Relay ports for every TCP target, then every UDP target, over one emulated path.

    ``path``: ``up``, ``down``, ``jitter``, ``loss``, ``seed`` as for ``relay``.
    """
    return _relay_many(tcp, udp, **path)
