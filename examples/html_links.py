"""Print the links of a web page while it downloads: HTML parsed on the fly.

    python examples/html_links.py http://127.0.0.1:8000/

The seed notes that its consumer interface fits the parsers of the day "to
parse HTML or XML data on the fly". Here an ``html.parser.HTMLParser`` is the
consumer: ``TextConsumer`` decodes the body incrementally (charset from the
Content-Type) and feeds it text as it arrives, and ``RedirectingConsumer``
follows redirects. Each link is printed as soon as the parser sees it,
resolved against the final URL (or the page's ``<base href>``).
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from urllib.parse import urljoin

import trio

from trio_timehttp import (
    InvalidURL,
    RedirectingConsumer,
    Response,
    TextConsumer,
    TimeHTTPError,
    fetch,
)


class LinkPrinter(HTMLParser):
    """Prints each distinct ``<a href>`` once, absolute, as the page streams in."""

    def __init__(self) -> None:
        super().__init__()
        self.base = ""
        self.seen: set[str] = set()

    def http_header(self, response: Response) -> None:
        # TextConsumer passes the head on: the final URL, after any redirect.
        self.base = response.url
        if response.status_code is not None and response.status_code >= 400:
            print(f"status {response.status_code} {response.reason}", file=sys.stderr)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if not href:
            return
        if tag == "base":
            self.base = urljoin(self.base, href.strip())
        elif tag == "a":
            link = urljoin(self.base, href.strip())
            if link not in self.seen:
                self.seen.add(link)
                print(link)


async def main(url: str) -> int:
    parser = LinkPrinter()
    try:
        await fetch(url, RedirectingConsumer(TextConsumer(parser)))
    except InvalidURL as exc:  # the URL given (a redirect's bad one is a RedirectError)
        print(f"usage: {sys.argv[0]} URL: {exc}", file=sys.stderr)
        return 2
    except TimeHTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(len(parser.seen), "links", file=sys.stderr)
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
