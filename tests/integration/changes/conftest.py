"""Copies of the stack's demo database in the module's scratch server, standing in for production
in the engine tests: dumped once per module, restored fresh for each use, dropped after the test."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def demo_dump(stack, tmp_path_factory) -> Path:
    """The stack's demo database, dumped once for the module (it is only read)."""
    path = tmp_path_factory.mktemp("demo") / "stellar_escrow.dump"
    result = subprocess.run(
        [find_binaries().path("pg_dump"), "-Fc", "--no-owner", "--no-acl", "-f", str(path)],
        capture_output=True,
        text=True,
        env=stack.db.client_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return path


def _restored(scratch: PgTarget, dump: Path) -> PgTarget:
    name = f"demo_copy_{next(_numbers)}"
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = scratch.with_dbname(name)
    result = subprocess.run(
        [find_binaries().path("pg_restore"), "--no-owner", "--no-acl", "-d", name, str(dump)],
        capture_output=True,
        text=True,
        env=target.client_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def fresh_copy(scratch: PgTarget, demo_dump: Path) -> Iterator[Callable[[], PgTarget]]:
    """Makes fresh copies of the demo database, dropped after the test."""
    made: list[PgTarget] = []

    def make() -> PgTarget:
        made.append(_restored(scratch, demo_dump))
        return made[-1]

    try:
        yield make
    finally:
        with connect(scratch.with_dbname("postgres")) as conn:
            for target in made:
                conn.execute(f'DROP DATABASE "{target.dbname}" WITH (FORCE)')


@pytest.fixture
def copy(fresh_copy: Callable[[], PgTarget]) -> PgTarget:
    """One fresh copy of the demo database."""
    return fresh_copy()
