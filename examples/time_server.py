"""An RFC 868 time server: the Trio version of the asyncore chapter's example 7-8.

    python examples/time_server.py [PORT]        (default 8037, as the seed)

Where the seed had a listening dispatcher and a channel dispatcher, Trio has
one task per connection under the server's nursery (inside serve_time_tcp).
Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import sys

import trio

from trio_timehttp import serve_time_tcp


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_time_tcp, port)
        # With port 0 the OS picks one: print the one we really got.
        print("listening on port", port or listeners[0].socket.getsockname()[1], flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8037)
