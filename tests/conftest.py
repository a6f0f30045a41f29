"""Test rules: loopback only, port 0 (or a port the OS just handed us), no sleeps
to wait for readiness (``nursery.start`` / ``task_status``, or a bounded
connect-retry for outside programs), ``MockClock`` only with in-process peers.

Under ``CI=true`` a missing outside peer (rdate, xinetd, nginx, ...) fails the
test instead of skipping it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# Let test modules in sub-folders (tests/peers/) import the shared helpers.
sys.path.insert(0, os.path.dirname(__file__))

from helpers import closed_port


@pytest.fixture(name="refused_port")
def _refused_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that refuses connections for the whole test (see closed_port)."""
    with closed_port() as port:
        yield port
