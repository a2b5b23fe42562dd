"""``feproxy --version`` and ``python -m frontend --version``, run as real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.serve import ROOT


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, cwd=cwd, env=env
    )


def test_feproxy_version_prints_the_installed_version_and_exits_0() -> None:
    """The console script prints ``feproxy <version>`` from the package metadata,
    which for this checkout's install is pyproject.toml's version."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert version("feproxy") == pyproject["project"]["version"]
    done = run([str(Path(sys.executable).parent / "feproxy"), "--version"])
    assert (done.returncode, done.stdout, done.stderr) == (0, f"feproxy {version('feproxy')}\n", "")


def test_python_m_frontend_version_prints_the_same() -> None:
    """``python -m frontend --version`` answers as the console script does."""
    done = run([sys.executable, "-m", "frontend", "--version"])
    assert (done.returncode, done.stdout, done.stderr) == (0, f"feproxy {version('feproxy')}\n", "")


@pytest.mark.parametrize(
    ("pyproject", "expected"),
    [
        ('[project]\nname = "feproxy"\nversion = "7.7.7"\n', "feproxy 7.7.7\n"),
        ('[project]\nname = "other"\nversion = "7.7.7"\n', "feproxy 0+unknown\n"),
        ("not toml [", "feproxy 0+unknown\n"),
    ],
    ids=["feproxy", "another-project", "unreadable"],
)
def test_an_uninstalled_checkout_reads_its_version_from_pyproject(
    tmp_path: Path, pyproject: str, expected: str
) -> None:
    """With no package metadata (python -S: no site-packages), --version reads the
    checkout's pyproject.toml, and only feproxy's; it needs nothing but the
    standard library."""
    shutil.copytree(
        ROOT / "frontend", tmp_path / "frontend", ignore=shutil.ignore_patterns("*.pyc")
    )
    (tmp_path / "pyproject.toml").write_text(pyproject)
    done = run([sys.executable, "-S", "-m", "frontend", "--version"], cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
