"""trio_timehttp: an RFC 868 time service and a streaming HTTP/1.1 requester on Trio and h11.

Public names are re-exported here; the modules behind them are private.
"""

from ._consumer import Consumer
from ._consumers import BytesConsumer
from ._errors import (
    BodyTooLarge,
    ConnectError,
    HTTPError,
    InvalidURL,
    ProtocolError,
    ProxyError,
    RedirectError,
    TimeHTTPError,
    Timeout,
    TimeProtocolError,
    TooManyRedirects,
)
from ._fileconsumer import FileConsumer
from ._headers import Headers
from ._http import Client, fetch
from ._httptime import query_http_time
from ._models import Request, Response
from ._redirects import RedirectingConsumer
from ._rfc868 import TIME1970, decode_time, encode_time
from ._sample import TimeSample
from ._textconsumer import TextConsumer
from ._timeclient import query_many, query_time
from ._timeserver import serve_time, serve_time_tcp, serve_time_udp
from ._version import __version__

__all__ = [
    "TIME1970",
    "BodyTooLarge",
    "BytesConsumer",
    "Client",
    "ConnectError",
    "Consumer",
    "FileConsumer",
    "HTTPError",
    "Headers",
    "InvalidURL",
    "ProtocolError",
    "ProxyError",
    "RedirectError",
    "RedirectingConsumer",
    "Request",
    "Response",
    "TextConsumer",
    "TimeHTTPError",
    "TimeProtocolError",
    "TimeSample",
    "Timeout",
    "TooManyRedirects",
    "__version__",
    "decode_time",
    "encode_time",
    "fetch",
    "query_http_time",
    "query_many",
    "query_time",
    "serve_time",
    "serve_time_tcp",
    "serve_time_udp",
]
