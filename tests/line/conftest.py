"""Line-test fixtures: each ``db`` test runs on SQLite and on PostgreSQL.

PostgreSQL is a throwaway cluster started once per test session and worker
(``tests/production/pg.py``); without server binaries those cases are skipped,
or fail when ``CARDPERSO_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardperso.hsm import SoftHsm
from cardperso.production.db import Database, upgrade
from production.pg import REQUIRE_ALL_ENV, PgCluster, PgUnavailable, start_cluster
from production.support import Staff, TickClock

from .kit import make_keystore, open_hsm

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.realcomponent),
]


@pytest.fixture(scope="session")
def line_pg() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PgUnavailable as exc:
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{REQUIRE_ALL_ENV}=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'line.sqlite3'}"
        upgrade(url)
        yield url
        return
    cluster: PgCluster = request.getfixturevalue("line_pg")
    url = cluster.create_database()
    upgrade(url)
    yield url
    cluster.drop_database(url)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.open(db_url, clock=TickClock(), synchronous="NORMAL")
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'line.sqlite3'}"
    upgrade(url)
    database = Database.open(url, clock=TickClock(), synchronous="NORMAL")
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def keystore_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keystore(tmp_path_factory.mktemp("keystore"))


@pytest.fixture
def keystore(keystore_template: Path, tmp_path: Path) -> Path:
    """A private copy of the bureau keystore (and its audit log) for one test."""
    import shutil

    target = tmp_path / "ks"
    shutil.copytree(keystore_template.parent, target)
    return target / keystore_template.name


@pytest.fixture
def hsm(keystore: Path) -> Iterator[SoftHsm]:
    h = open_hsm(keystore)
    yield h
    h.close()


@pytest.fixture
def staff(db: Database) -> Staff:
    return Staff(db)
