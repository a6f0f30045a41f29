"""Placeholder: being written (see the issues)."""

from typing import Any

Headers: Any = None
