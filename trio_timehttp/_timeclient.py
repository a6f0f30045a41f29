"""Placeholder: being written (see the issues)."""

from typing import Any

query_many: Any = None
query_time: Any = None
