"""Make the peers the benchmark compares us with available, from a fresh clone.

Python peers come from ``bench/requirements.txt`` (pip, with this
interpreter).  Debian programs (nginx, gcc, curl) come from apt when we are
root; nginx's package would start a system service on port 80 during the
install, so a temporary ``/usr/sbin/policy-rc.d`` that exits 101 forbids
service starts for the duration (removed afterwards only if we created it).
When something cannot be installed, the rows that need it say so and the
rest of the bench still runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._common import BENCH_DIR

PY_MODULES = ("uvloop", "aiohttp", "httpx", "anyio", "urllib3")
DEBIAN = {
    "nginx": "nginx",
    "gcc": "gcc",
    "curl": "curl",
    "tinyproxy": "tinyproxy",
}  # program -> package
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def which(program: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (nginx lives in /usr/sbin)."""
    return shutil.which(program) or shutil.which(program, path=os.pathsep.join(_SBIN))


def missing_python() -> list[str]:
    return [m for m in PY_MODULES if importlib.util.find_spec(m) is None]


def ensure_python_peers() -> None:
    """pip-install ``bench/requirements.txt`` if any peer module is missing."""
    missing = missing_python()
    if not missing:
        return
    print(f"bench: installing Python peers ({', '.join(missing)})", file=sys.stderr)
    req = BENCH_DIR / "requirements.txt"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r", str(req)], check=False
    )
    if result.returncode != 0:
        print("bench: pip install failed; the rows needing them will be skipped", file=sys.stderr)
    importlib.invalidate_caches()


@contextlib.contextmanager
def _no_service_starts():  # type: ignore[no-untyped-def]
    """Forbid invoke-rc.d from starting services while packages are installed."""
    created = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text(
            "#!/bin/sh\n# temporary, written by trio_timehttp bench\nexit 101\n"
        )
        POLICY_RC_D.chmod(0o755)
        created = True
    try:
        yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                POLICY_RC_D.unlink()


def ensure_debian_programs() -> None:
    """apt-get install nginx, gcc, curl when missing and we are root; otherwise just report."""
    missing = [pkg for prog, pkg in DEBIAN.items() if which(prog) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"bench: missing {', '.join(missing)} "
            f"(install them: apt-get install {' '.join(missing)});"
            " the rows needing them will be skipped",
            file=sys.stderr,
        )
        return
    print(f"bench: apt-get install {' '.join(missing)} (service starts disabled)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _no_service_starts():
        if subprocess.run(
            ["apt-get", "install", "-y", "-q", *missing], env=env, check=False
        ).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, check=False)


def ensure_all() -> None:
    ensure_python_peers()
    ensure_debian_programs()
