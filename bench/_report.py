"""The results blocks of bench/README.md: the machine header and the block replacement."""

from __future__ import annotations

import re
import shlex
import subprocess
import time

from ._common import BENCH_DIR, machine_info, pick_cores

README = BENCH_DIR / "README.md"


def _revision() -> str:
    """The repository commit the numbers belong to (``+dirty`` with local changes)."""

    def git(*cmd: str) -> str:
        result = subprocess.run(
            ["git", *cmd], cwd=BENCH_DIR, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "(not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "trio_timehttp")
    return f"commit {commit}" + (" +local changes" if dirty else "")


def machine_block(argv: list[str]) -> str:
    info = machine_info()
    sut, load = pick_cores()
    command = shlex.join(["python", "-m", "bench", *argv])
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command}`"
        f" on trio_timehttp {_revision()}.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        f"System under test pinned to core {sut}, load (generator or nginx) to core {load}. "
        f"Load average when the run started: {loadavg} (other work on the machine adds noise).",
        "",
    ]
    return "\n".join(lines)


def update_readme(suite: str, text: str) -> None:
    """Replace the ``suite`` results block of bench/README.md (between its markers)."""
    start, end = f"<!-- results:{suite}:start -->", f"<!-- results:{suite}:end -->"
    doc = README.read_text() if README.exists() else ""
    block = f"{start}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: block, doc) if pattern.search(doc) else doc + "\n" + block + "\n"
    README.write_text(doc)
