"""Placeholder: being written (see the issues)."""

from typing import Any

query_http_time: Any = None
