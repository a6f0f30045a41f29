"""Placeholder: being written (see the issues)."""

from typing import Any

Request: Any = None
Response: Any = None
