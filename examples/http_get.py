"""Fetch a URL and report it as the seed's DummyConsumer does (examples 7-9 and 7-10).

    python examples/http_get.py http://127.0.0.1:8000/

The requester (``trio_timehttp.fetch``) streams the response into a
*consumer*: ``http_header`` once the status line and headers are parsed,
``feed`` for each piece of the body, ``close`` at the end. A failed connection
reaches ``http_header`` as a response whose ``status_code`` is None, as the
seed's asyncore requester reported it with ``status`` None. Redirects are not
followed here (see ``http_redirect.py``).
"""

from __future__ import annotations

import sys

import trio

from trio_timehttp import InvalidURL, Response, TimeHTTPError, fetch


class DummyConsumer:
    """Prints the status line and headers, counts the body, prints the count."""

    size = 0

    def http_header(self, response: Response) -> None:
        if response.status_code is None:
            print("connection failed")
        else:
            status = f"HTTP/{response.http_version} {response.status_code} {response.reason}"
            print("status", "=>", status)
            for key, value in response.headers.items():
                print(key, "=", value)

    def feed(self, data: bytes) -> None:
        self.size += len(data)

    def close(self) -> None:
        print(self.size, "bytes in body")


async def main(url: str) -> int:
    try:
        await fetch(url, DummyConsumer())
    except InvalidURL as exc:  # the URL given (a redirect's bad one is a RedirectError)
        print(f"usage: {sys.argv[0]} URL: {exc}", file=sys.stderr)
        return 2
    except TimeHTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} URL", file=sys.stderr)
        sys.exit(2)
    try:
        status = trio.run(main, sys.argv[1])
    except* KeyboardInterrupt:  # Ctrl-C: no traceback, the shell's usual 130
        status = 130  # (no sys.exit in here: Python < 3.11.4 would wrap it in a group)
    sys.exit(status)
