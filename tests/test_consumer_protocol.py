"""The ``Consumer`` protocol: what ``fetch`` accepts, checked by mypy --strict."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from mypy import api

import trio_timehttp as t
from trio_timehttp._consumer import call_optional

GOOD = """
import xml.etree.ElementTree as ET
import trio_timehttp as t

class Mine:
    def feed(self, data: bytes) -> None: ...
    async def close(self) -> int: return 1

async def main(client: t.Client) -> None:
    await t.fetch("http://x/", t.BytesConsumer())
    await t.fetch("http://x/", t.RedirectingConsumer(t.BytesConsumer()))
    await t.fetch("http://x/", ET.XMLParser())
    await client.fetch("http://x/", Mine())
"""

BAD = """
import trio_timehttp as t

class NoClose:
    def feed(self, data: bytes) -> None: ...

async def main(client: t.Client) -> None:
    await t.fetch("http://x/", object())
    await client.fetch("http://x/", NoClose())
"""


def _mypy(code: str, tmp_path: os.PathLike[str]) -> tuple[str, int]:
    # An empty config file: the project's own (which lists files) must not apply.
    config = os.path.join(tmp_path, "mypy.ini")
    with open(config, "w") as f:
        f.write("[mypy]\n")
    cache = os.path.join(tmp_path, "cache")
    out, err, status = api.run(
        ["--config-file", config, "--strict", "--cache-dir", cache, "-c", code]
    )
    return out + err, status


@pytest.mark.slow
def test_mypy_strict_accepts_consumers_and_rejects_other_objects(
    tmp_path: os.PathLike[str],
) -> None:
    out, status = _mypy(GOOD, tmp_path)
    assert status == 0, out
    out, status = _mypy(BAD, tmp_path)
    assert status == 1
    assert out.count("incompatible type") == 2, out
    assert '"object"' in out
    assert '"NoClose"' in out


def test_protocol_is_exported() -> None:
    assert "Consumer" in t.__all__
    assert t.Consumer.__name__ == "Consumer"


async def test_call_optional_calls_plain_and_async_methods_and_skips_missing() -> None:
    calls: list[str] = []

    class Plain:
        def http_error(self, exc: BaseException) -> str:
            calls.append(f"plain {exc}")
            return "p"

    class Async:
        async def http_error(self, exc: BaseException) -> str:
            calls.append(f"async {exc}")
            return "a"

    assert await call_optional(Plain(), "http_error", ValueError("x")) == "p"
    assert await call_optional(Async(), "http_error", ValueError("y")) == "a"
    assert await call_optional(ET.XMLParser(), "http_error", ValueError("z")) is None
    assert calls == ["plain x", "async y"]
