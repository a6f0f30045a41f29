"""Placeholder: being written (see the issues)."""

from typing import Any

BytesConsumer: Any = None
FileConsumer: Any = None
RedirectingConsumer: Any = None
TextConsumer: Any = None
