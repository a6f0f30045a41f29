"""Fetch a URL, following redirects, as the seed's example 7-11 does.

    python examples/http_redirect.py http://127.0.0.1:8000/old-place

``RedirectingConsumer`` wraps the consumer of ``http_get.py``: on a redirect
its ``http_header`` returns the next request instead of passing the response
on, and the requester issues it. The wrapped consumer sees only the final
response. The subclass below only adds the seed's "redirecting to ..." line.
"""

from __future__ import annotations

import sys

import trio
from http_get import DummyConsumer  # the consumer of examples 7-9/7-10, beside this file

from trio_timehttp import InvalidURL, RedirectingConsumer, Request, Response, TimeHTTPError, fetch


class LoudRedirectingConsumer(RedirectingConsumer):
    """A RedirectingConsumer that says where each redirect goes."""

    async def http_header(self, response: Response) -> Request | None:
        request = await super().http_header(response)
        if request is not None:
            print("redirecting to", request.url, "...")
        return request


async def main(url: str) -> int:
    try:
        await fetch(url, LoudRedirectingConsumer(DummyConsumer()))
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
