"""Developer tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``examples``, ``bench``,
``soak``.

``tests`` installs what the suite needs: the package with its test extra, and
(when run as root on Debian) the real outside peers from apt. It runs on every
supported Python found on the machine (3.11 to 3.13; Debian 12 has 3.11);
``TRIO_TIMEHTTP_PYTHONS="3.11 3.12 3.13"`` demands a list instead. Under
``CI=true`` a Python that cannot be found fails the run (locally it is
skipped, as nox does by default), so ``nox -s tests --force-python 3.99``
cannot pass in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() in ("true", "1")

SUPPORTED = ("3.11", "3.12", "3.13")  # keep in step with pyproject's classifiers


def _pythons() -> list[str]:
    """The interpreters ``tests`` runs on: those asked for, else the supported ones present."""
    asked = os.environ.get("TRIO_TIMEHTTP_PYTHONS", "").split()
    if asked:
        return asked
    found = [v for v in SUPPORTED if _runs(f"python{v}")]
    return found or [SUPPORTED[0]]  # none at all: ask for 3.11, which then fails or skips


def _runs(name: str) -> bool:
    """Whether ``name`` on PATH is a working interpreter (a pyenv shim may not be)."""
    path = shutil.which(name)
    if path is None:
        return False
    try:
        return subprocess.run([path, "-c", ""], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


PYTHONS = _pythons()
PYTHON = PYTHONS[0]  # the one-off sessions (lint, build, ...) need only one


def _install_peers(session: nox.Session) -> None:
    """Debian peers (nginx, rdate, xinetd, htpdate) via apt when we are root."""
    session.run("bash", ".ci/install-peers", external=True)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite, real peers included (they fail, not skip, under CI=true)."""
    _install_peers(session)
    session.install("-e", ".[test]")
    # The interpreter running nox, so the suite can check nox itself
    # (tests/test_setup_commands.py) without nox in the test extra.
    env = {"PYTHONFAULTHANDLER": "1", "TRIO_TIMEHTTP_NOX_PYTHON": sys.executable}
    session.run("python", "-m", "pytest", *session.posargs, env=env)


@nox.session(python=PYTHON)
def tests_min(session: nox.Session) -> None:
    """The suite against the oldest trio and h11 we claim to support (pyproject's floors)."""
    _install_peers(session)
    session.install("-e", ".[test]")
    session.install("trio==0.25.0", "h11==0.16.0")
    env = {"PYTHONFAULTHANDLER": "1", "TRIO_TIMEHTTP_NOX_PYTHON": sys.executable}
    session.run("python", "-m", "pytest", "-q", *session.posargs, env=env)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, and check the wheel ships py.typed and the licence."""
    import glob
    import zipfile

    session.install("build")
    session.run("python", "-m", "build", "--outdir", "dist")
    wheel = sorted(glob.glob("dist/trio_timehttp-*.whl"))[-1]
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("trio_timehttp/py.typed", "trio_timehttp/__init__.py"):
        if needed not in names:
            session.error(f"{wheel} lacks {needed}")
    if not any(n.endswith("licenses/LICENSE") for n in names):
        session.error(f"{wheel} lacks the LICENSE file")
    session.log(f"{wheel}: {len(names)} files, py.typed and LICENSE included")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over everything."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (configured in pyproject.toml)."""
    # The optional extras too: their modules are type-checked against the real packages.
    session.install("mypy>=1.10", "-e", ".[brotli,zstd,metrics]")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site into docs/_build/html, warnings as errors.

    ``nox -s docs -- --figures`` first redraws the precise-mode figure
    (docs/_scripts/precise_figure.py) from the probe-by-probe record of a real
    run that ``python -m bench accuracy`` saves in bench/precise_narrowing.json.
    """
    session.install("-e", ".[docs]")
    if "--figures" in session.posargs:
        session.run("python", "docs/_scripts/precise_figure.py")
    session.run(
        "python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Run the examples against local servers (the same tests the suite runs)."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "tests/test_examples_time.py",
        "tests/test_examples_http.py",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks beside the peers (asyncio, asyncore, uvloop, aiohttp, urllib3, httpx, nginx)."""
    _install_peers(session)
    session.install("-e", ".", "-r", "bench/requirements.txt")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Long-running mixed good/evil load; reports errors, fds and RSS (not in the test run)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "bench.soak", *session.posargs, env={"PYTHONPATH": os.getcwd()})
