"""Compile the C load generator (``bench/loadgen.c``) into the git-ignored ``bench/_build/``."""

from __future__ import annotations

import subprocess

from ._common import BENCH_DIR, BUILD_DIR
from ._install import which

SOURCE = BENCH_DIR / "loadgen.c"
BINARY = BUILD_DIR / "loadgen"


def loadgen() -> str:
    """Path of the load generator binary, (re)built when the source is newer.

    Raises RuntimeError when there is no C compiler or the build fails.
    """
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(BINARY)
    cc = which("gcc") or which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (apt-get install gcc)")
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BINARY.with_suffix(".tmp")
    result = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the load generator failed:\n{result.stderr}")
    tmp.replace(BINARY)
    return str(BINARY)
