"""Placeholder: being written (see the issues)."""

from typing import Any

main: Any = None
