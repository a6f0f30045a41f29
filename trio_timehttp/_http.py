"""Placeholder: being written (see the issues)."""

from typing import Any

Client: Any = None
fetch: Any = None
