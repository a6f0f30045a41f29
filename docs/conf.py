"""Sphinx configuration for the trio_timehttp documentation (``nox -s docs``)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package, straight from the work tree

import trio_timehttp  # noqa: E402

project = "trio_timehttp"
author = "trio_timehttp developers"
copyright = "trio_timehttp developers"
release = trio_timehttp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

root_doc = "index"
exclude_patterns = ["_build", "_inventories", "figures"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_theme = "furo"
html_title = f"trio_timehttp {release}"
pygments_style = "friendly"
pygments_dark_style = "monokai"

# Signatures as written in the source (``timeout=DEFAULT``), not the repr of a
# sentinel object; annotations in the description, where they read better.
autodoc_preserve_defaults = True
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"

# Offline by default: the inventories in _inventories/ (see the script there).
# TT_DOCS_ONLINE=1 tries the real ones first.
_INV = Path(__file__).parent / "_inventories"
_ONLINE = os.environ.get("TT_DOCS_ONLINE") == "1"


def _inventory(name: str) -> tuple[str | None, ...]:
    local = str(_INV / f"{name}.inv")
    return (None, local) if _ONLINE else (local,)


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", _inventory("python")),
    "trio": ("https://trio.readthedocs.io/en/stable", _inventory("trio")),
}
intersphinx_timeout = 10

# The CLI reference renders argparse help as reST, where "|word|" would be a
# substitution: the help says "abs(offset)" instead (tests/test_public_api.py
# keeps it so).

# ``Client.fetch``/``Client.stream`` default ``timeout`` and
# ``max_decoded_size`` to a sentinel meaning "the Client's own setting". Kept
# as source text, that would read ``_DEFAULT``; show its repr, as help() does.
# Private dataclass fields (``Response``'s ``_body``) are left out, and
# factory defaults show what the factory makes.
_CLIENT_SETTING = repr(trio_timehttp._http._DEFAULT)
# Dataclass fields made by a factory read ``<factory>``: show what it makes.
_FACTORIES = {"headers": "Headers()", "history": "[]"}
_PRIVATE_PARAMETER = re.compile(r",\s*_\w+(?:\s*:[^,=)]*)?\s*=\s*[^,)]*")


def _readable_signature(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> tuple[str | None, str | None]:
    if signature:
        signature = signature.replace("=_DEFAULT", "=" + _CLIENT_SETTING)
        signature = _PRIVATE_PARAMETER.sub("", signature)
        for field, value in _FACTORIES.items():
            signature = signature.replace(f"{field}=<factory>", f"{field}={value}")
    return signature, ret


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _readable_signature)
    return {"parallel_read_safe": True}
