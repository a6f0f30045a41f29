"""An RFC 868 time server: the Trio version of the asyncore chapter's example 7-8.

    python examples/time_server.py [PORT]        (default 8037, as the seed)

Where the seed had a listening dispatcher and a channel dispatcher, Trio has
one task per connection under the server's nursery (inside serve_time_tcp).
Ctrl-C stops it (exit status 130, as a shell reports an interrupted program).
"""

from __future__ import annotations

import sys

import trio

from trio_timehttp import serve_time_tcp


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_time_tcp, port)
        # With port 0 the OS picks one: print the one we really got.
        print("listening on port", port or listeners[0].socket.getsockname()[1], flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 or (
        len(sys.argv) == 2 and not (sys.argv[1].isdigit() and int(sys.argv[1]) < 65536)
    ):
        print(f"usage: {sys.argv[0]} [PORT]  (PORT 0-65535, 0: any free one)", file=sys.stderr)
        sys.exit(2)
    status = 0
    try:
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8037)
    except* KeyboardInterrupt:
        # Ctrl-C is how it stops. It arrives inside the nursery's exception
        # group, which contextlib.suppress does not unwrap before Python 3.12.
        # (No sys.exit in here: Python < 3.11.4 would wrap it in a group too.)
        status = 130
    except* OSError as group:  # the port is taken, or needs privileges
        print(f"time_server: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    sys.exit(status)
