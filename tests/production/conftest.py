"""Production-database fixtures: every ``db`` test runs once per backend.

``backend`` is "sqlite" (a temporary file) or "postgresql" (a throwaway cluster this
fixture starts itself, once per test session and worker, see :mod:`.pg`). Without
PostgreSQL server binaries the postgresql cases are skipped, or fail when
``CARDPERSO_REQUIRE_ALL=1`` (CI).

Each test gets its own migrated database: a copy of a template migrated once per
session (a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL).
``empty_db_url`` gives an unmigrated one for the migration tests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database, upgrade

from .pg import REQUIRE_ALL_ENV, PgCluster, PgUnavailable, start_cluster
from .support import Staff, TickClock, make_cipher

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.realcomponent),
]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PgUnavailable as exc:
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{REQUIRE_ALL_ENV}=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    print(f"\n[pg] throwaway cluster started in {cluster.startup_seconds:.2f} s")
    try:
        yield cluster
    finally:
        t0 = time.perf_counter()
        cluster.stop()
        print(f"\n[pg] cluster stopped in {time.perf_counter() - t0:.2f} s")


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PgCluster) -> str:
    """Name of a database migrated to head, used as the template for test databases."""
    url = pg_cluster.create_database()
    upgrade(url)
    return pg_cluster.name_of(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, unmigrated database of the current backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the current backend, migrated to head."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "cardperso.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database(template=request.getfixturevalue("pg_template"))
    yield url
    cluster.drop_database(url)


@pytest.fixture
def clock() -> TickClock:
    return TickClock()


@pytest.fixture
def db(db_url: str, clock: TickClock) -> Iterator[Database]:
    database = Database.open(db_url, clock=clock, synchronous="NORMAL")
    yield database
    database.dispose()


@pytest.fixture
def staff(db: Database) -> Staff:
    return Staff(db)


@pytest.fixture
def cipher() -> SoftFieldCipher:
    return make_cipher()
