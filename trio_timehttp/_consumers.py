"""Ready-made consumers: ``BytesConsumer`` here; text, files and redirects beside it.

A *consumer* is what the requester streams a response into, as in the seed's
asyncore requester: ``http_header(response)`` (optional) once the head is
parsed, ``feed(chunk)`` for each piece of the body, ``close()`` once at the
end, and the optional ``http_error(exc)`` when the exchange breaks after the
head. Each may be a plain method or an ``async def`` (the ``Consumer``
protocol: ``_consumer``).

The split is deliberately simple: the **requester** (``fetch``/``Client``)
owns sockets, connections, tasks and the deadline and knows nothing about
redirects; a **consumer** owns what happens to a body (``BytesConsumer``
here, ``TextConsumer`` in ``_textconsumer``, ``FileConsumer`` in
``_fileconsumer``) or policy (``RedirectingConsumer`` in ``_redirects``).
Nothing in these modules imports Trio: the consumers are plain objects that
work with any driver that follows the protocol (and are tested by calling
their methods directly).
"""

from __future__ import annotations

from ._errors import BodyTooLarge
from ._models import Request, Response

__all__ = ["BytesConsumer"]


def _content_length(response: Response) -> int | None:
    """The body length the head announces, or None (no body expected to match)."""
    if response.request.method == "HEAD" or response.status_code in (204, 304):
        return None
    if (response.headers.get("content-encoding") or "identity").lower() != "identity":
        return None  # a decoding requester feeds more than was framed
    value = response.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


class BytesConsumer:
    """Collects the whole body in memory: ``.body`` (bytes), ``.response`` (the head).

    ``max_size`` (default ``None``: no bound) bounds the body in bytes: a
    larger one raises ``BodyTooLarge`` from ``http_header`` when
    ``Content-Length`` announces it, else from ``feed`` as soon as the bound
    is crossed, so memory stays bounded either way. ``ValueError`` at
    construction for a negative ``max_size``. ``.closed`` turns true on
    ``close()``. A second ``http_header`` (a retried request) starts the
    body over. Holds no resources: nothing to close but itself.
    """

    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, not {max_size}")
        self.max_size = max_size
        self.response: Response | None = None
        self.closed = False
        self._chunks: list[bytes] = []
        self._size = 0

    def http_header(self, response: Response) -> Request | None:
        """Keep the head as ``.response`` and start an empty body.

        Raises ``BodyTooLarge`` when the response's ``Content-Length``
        announces more than ``max_size`` bytes. Returns None (no redirect).
        """
        self.response = response
        self._chunks, self._size = [], 0
        length = _content_length(response) if response.status_code is not None else None
        if self.max_size is not None and length is not None and length > self.max_size:
            raise BodyTooLarge(
                f"{response.url}: Content-Length {length} is over the limit "
                f"of {self.max_size} bytes"
            )
        return None

    def feed(self, data: bytes) -> None:
        """Append a piece of the body (copied to ``bytes``).

        Raises ``BodyTooLarge`` as soon as the total passes ``max_size``;
        the piece that crossed the bound is not kept.
        """
        self._size += len(data)
        if self.max_size is not None and self._size > self.max_size:
            where = f"{self.response.url}: " if self.response is not None else ""
            raise BodyTooLarge(f"{where}body is over the limit of {self.max_size} bytes")
        self._chunks.append(bytes(data))

    def close(self) -> None:
        """End of the body: join the pieces once and set ``.closed``.

        Never raises; ``.body`` afterwards is the whole body received.
        """
        self.closed = True
        self._chunks = [self.body]

    @property
    def body(self) -> bytes:
        """The body received so far, as one ``bytes`` (all of it after ``close``).

        ``b""`` before any body arrived; joining is done once and remembered.
        """
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0]
