"""The README's first two commands, as a new user on a fresh Debian machine types them.

Debian's own ``python3`` refuses ``pip install`` outside a virtual
environment (PEP 668, ``externally-managed-environment``); the commands make
and use ``.venv``. The first is run for real in a copy of the project with
the system's ``python3``; the second (the whole suite) is what ``.ci/run``
runs, exactly, and ``nox -s tests`` must not pass on a missing interpreter
under ``CI=true``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_venv_commands() -> None:
    first, second = readme_commands()
    assert first.startswith("python3 -m venv .venv && ")
    assert first.endswith("trio-timehttp demo")
    assert second == "python3 -m venv .venv && .venv/bin/pip install nox && .venv/bin/nox -s tests"


# A pip that installs outside .venv: bare ``pip``/``pip3``, ``python3 -m pip``, or an
# install by a name PyPI does not have yet (the package is installed from a clone).
_BARE_PIP = re.compile(
    r"(?<![/\w.])(?:pip3?|python3? -m pip) install"
    r"|pip install '?trio[-_]timehttp"
)


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.rst"))]
)
def test_no_page_tells_a_pip_install_debian_refuses(page: str) -> None:
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    lines = path.read_text().splitlines()
    bare = [
        f"{page}:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if _BARE_PIP.search(line)
    ]
    assert bare == []


def test_the_bare_pip_rule_sees_what_debian_refuses() -> None:
    refused = ["python3 -m pip install .", "pip install trio-timehttp", "(pip3 install x)",
               "``pip install 'trio_timehttp[metrics]'``"]  # fmt: skip
    fine = [".venv/bin/pip install .", ".venv/bin/pip install '.[metrics]'",
            "python3 -m venv .venv && .venv/bin/pip install nox"]  # fmt: skip
    assert [bool(_BARE_PIP.search(t)) for t in refused + fine] == [True] * 4 + [False] * 3


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, second = readme_commands()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert second in lines


_NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", ".nox", "__pycache__", "*.pyc", ".*_cache", "dist", "build", "*.egg-info"
)


def project_copy(destination: Path) -> Path:
    """The project's files as a fresh clone has them (a git checkout or an unpacked archive)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:  # not a git checkout (an archive): copy the tree
        shutil.copytree(ROOT, destination, ignore=_NOT_SHIPPED, symlinks=True)
        return destination
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.mark.slow
def test_first_readme_command_works_with_debians_python(tmp_path: Path) -> None:
    system = shutil.which("python3", path="/usr/bin")
    if system is None or not glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs on Debian: /usr/bin/python3 with PEP 668's marker expected")
        pytest.skip("needs a Debian-style externally managed /usr/bin/python3")
    project = project_copy(tmp_path / "trio_timehttp")
    first, _ = readme_commands()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    result = subprocess.run(
        ["bash", "-c", f"set -e; {first}"], cwd=project, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "time difference is " in result.stdout
    assert "status => HTTP/1.1 200 OK" in result.stdout
    assert "externally-managed-environment" not in result.stderr
    # The package went into .venv, not the system.
    assert (project / ".venv" / "bin" / "trio-timehttp").exists()


def test_nox_tests_cannot_pass_on_a_missing_python_under_ci(tmp_path: Path) -> None:
    # Under `nox -s tests` the noxfile names the interpreter running nox.
    runner = os.environ.get("TRIO_TIMEHTTP_NOX_PYTHON", sys.executable)
    probe = subprocess.run([runner, "-c", "import nox"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail(f"nox is not importable by {runner} (pip install nox)")
    env = {**os.environ, "CI": "true"}
    result = subprocess.run(
        [runner, "-m", "nox", "-s", "tests", "--force-python", "3.99",
         "--envdir", str(tmp_path / "nox")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "3.99" in result.stderr
