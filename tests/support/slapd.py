"""A throwaway OpenLDAP server (slapd) loaded with conf/directory.ldif: fixtures.

The :class:`Slapd` harness itself lives in :mod:`frontend.loadtest.slapd`
(the load test starts slapd too, and production code does not import from
tests/); this module re-exports its names and adds the fixtures.

Fixtures:

``slapd``
    session scope: the shared instance, read-only for tests.
``slapd_factory``
    function scope: ``slapd_factory(extra_ldif="")`` makes a private
    instance (started), stopped at the end of the test; use it for restarts
    or extra data.

:func:`start_or_fail` starts an instance for a fixture of another scope
(a module's own directory, stopped by that fixture).

A machine without slapd fails these fixtures (never skips): run
``scripts/install-slapd``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from frontend.loadtest.slapd import (
    BASE_DN,
    CONFIG_DN,
    INSTALL_HINT,
    LDIF,
    REPO,
    ROOT_DN,
    ROOT_PASSWORD,
    SCHEMA,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    SlapdError,
    SlapdNotFound,
    free_port,
)

__all__ = [
    "BASE_DN",
    "CONFIG_DN",
    "INSTALL_HINT",
    "LDIF",
    "REPO",
    "ROOT_DN",
    "ROOT_PASSWORD",
    "SCHEMA",
    "SERVICE_DN",
    "SERVICE_PASSWORD",
    "Slapd",
    "SlapdError",
    "SlapdNotFound",
    "free_port",
    "slapd",
    "slapd_factory",
    "start_or_fail",
]


def start_or_fail(instance_factory: Callable[[], Slapd]) -> Slapd:
    """Make and start a Slapd; a missing or failing slapd fails the test (never skips)."""
    try:
        instance = instance_factory()
        instance.start()
    except SlapdNotFound as error:
        pytest.fail(str(error), pytrace=False)
    except SlapdError as error:
        pytest.fail(f"slapd: {error}", pytrace=False)
    return instance


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The shared slapd with conf/directory.ldif (do not modify its data)."""
    workdir = tmp_path_factory.mktemp("slapd")
    instance = start_or_fail(lambda: Slapd(workdir))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def slapd_factory(tmp_path: Path) -> Iterator[Callable[..., Slapd]]:
    """Make private, started slapd instances; all stopped after the test."""
    made: list[Slapd] = []

    def make(extra_ldif: str = "") -> Slapd:
        workdir = tmp_path / f"slapd{len(made)}"
        workdir.mkdir()
        instance = start_or_fail(lambda: Slapd(workdir, extra_ldif=extra_ldif))
        made.append(instance)
        return instance

    try:
        yield make
    finally:
        for instance in made:
            instance.stop()
