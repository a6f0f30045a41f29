"""Developer tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``examples``, ``bench``,
``soak``.

``tests`` installs what the suite needs: the package with its test extra, and
(when run as root on Debian) the real outside peers from apt.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def _install_peers(session: nox.Session) -> None:
    """Debian peers (nginx, rdate, xinetd, htpdate) via apt when we are root."""
    session.run("bash", ".ci/install-peers", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, real peers included (they fail, not skip, under CI=true)."""
    _install_peers(session)
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"PYTHONFAULTHANDLER": "1"})


@nox.session(python=PYTHON)
def tests_min(session: nox.Session) -> None:
    """The suite against the oldest trio and h11 we claim to support (pyproject's floors)."""
    _install_peers(session)
    session.install("-e", ".[test]")
    session.install("trio==0.25.0", "h11==0.16.0")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


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
    session.install("mypy>=1.10", "-e", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site into docs/_build/html, warnings as errors.

    ``nox -s docs -- --figures`` first remakes the precise-mode figure from a
    real run on loopback (docs/figures/precise_figure.py).
    """
    session.install("-e", ".[docs]")
    if "--figures" in session.posargs:
        session.run("python", "docs/figures/precise_figure.py")
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
