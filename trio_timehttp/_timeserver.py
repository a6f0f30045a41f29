"""Placeholder: being written (see the issues)."""

from typing import Any

serve_time: Any = None
serve_time_tcp: Any = None
serve_time_udp: Any = None
