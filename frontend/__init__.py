"""feproxy's front end: an HTTP front-end server for mail and public-folder back ends."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["__version__"]

#: What ``__version__`` says when neither the package metadata nor a
#: checkout's pyproject.toml gives a version.
_UNKNOWN_VERSION = "0+unknown"


def _checkout_version(pyproject: Path) -> str | None:
    """The ``[project]`` version of feproxy's pyproject.toml, or None if that
    file is missing, unreadable, or another project's."""
    try:
        with pyproject.open("rb") as f:
            project = tomllib.load(f).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(project, dict) or project.get("name") != "feproxy":
        return None
    found = project.get("version")
    return found if isinstance(found, str) else None


def _version() -> str:
    """The installed package's version; from a checkout that is not installed,
    the version in its pyproject.toml."""
    try:
        return version("feproxy")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return _checkout_version(pyproject) or _UNKNOWN_VERSION


__version__ = _version()
