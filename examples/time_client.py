"""An RFC 868 time client: the Trio version of the asyncore chapter's example 7-7.

    python examples/time_client.py [HOST [PORT]]    (default localhost 37)

Try it against the example server: ``python examples/time_client.py localhost 8037``.
Prints the seed's line, ``time difference is N``, with N = local - server in
whole seconds (the seed's ``adjust_time(delta)``; the library's ``offset`` has
the opposite sign, server - local, as rdate prints it).
"""

from __future__ import annotations

import math
import sys

import trio

from trio_timehttp import TimeHTTPError, query_time


def adjust_time(delta: int) -> None:
    """Override this! (as the seed says) -- here we only report it."""
    print("time difference is", delta)


async def main(host: str, port: int) -> int:
    try:
        sample = await query_time(host, port)
    except TimeHTTPError as exc:
        print(f"time_client: {exc}", file=sys.stderr)
        return 1
    # As the seed: our clock in whole seconds when the reply arrived, minus
    # the server's whole second.
    here = math.floor(sample.local_time + sample.rtt / 2)
    adjust_time(here - int(sample.server_time))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 3 or (
        len(sys.argv) == 3 and not (sys.argv[2].isdigit() and 0 < int(sys.argv[2]) < 65536)
    ):
        print(f"usage: {sys.argv[0]} [HOST [PORT]]  (PORT 1-65535, default 37)", file=sys.stderr)
        sys.exit(2)
    host = sys.argv[1] if len(sys.argv) > 1 else "localhost"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 37
    try:
        status = trio.run(main, host, port)
    except* KeyboardInterrupt:  # Ctrl-C: no traceback, the shell's usual 130
        status = 130  # (no sys.exit in here: Python < 3.11.4 would wrap it in a group)
    sys.exit(status)
