"""The migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from cardperso.production.db import (
    Database,
    current_revision,
    head_revision,
    make_engine,
    normalize_url,
    upgrade,
)
from cardperso.production.models import Base


def _diffs(engine: sa.Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_migrated_schema_equals_models(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        assert _diffs(engine, Base.metadata) == []
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        engine.dispose()


def test_comparison_is_not_vacuous(empty_db_url: str) -> None:
    """A model change the migration lacks shows up as a difference."""
    upgrade(empty_db_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("extra_table", changed, Column("id", Integer, primary_key=True))
    changed.tables["card_jobs"].append_column(Column("extra", Integer, nullable=True))
    engine = make_engine(empty_db_url)
    try:
        kinds = {d[0] for d in _diffs(engine, changed) if isinstance(d, tuple)}
        assert {"add_table", "add_column"} <= kinds
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_works(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    upgrade(empty_db_url)  # second run: nothing to do
    engine = make_engine(empty_db_url)
    try:
        from alembic import command

        from cardperso.production.db import _alembic_config

        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "base")
        assert current_revision(engine) is None
        assert "card_jobs" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert _diffs(engine, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_connection_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    upgrade(url)
    db = Database.open(url, busy_timeout_ms=1234)
    try:
        with db.reader() as s:
            assert s.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert s.execute(sa.text("PRAGMA busy_timeout")).scalar() == 1234
            assert s.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        db.dispose()


def test_sqlite_write_transactions_are_immediate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A write transaction holds the writer lock from its first read; a reader doesn't."""
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    upgrade(url)
    db = Database.open(url, busy_timeout_ms=50)
    try:
        with db.transaction() as s1:
            s1.execute(sa.text("SELECT 1")).all()  # only a read, yet the lock is taken
            with db.reader() as r:
                assert r.execute(sa.text("SELECT count(*) FROM card_jobs")).scalar() == 0
            s2 = db.sessions()
            try:
                with_error = False
                try:
                    s2.execute(sa.text("SELECT 1")).all()
                except sa.exc.OperationalError as exc:
                    with_error = "locked" in str(exc)
                assert with_error
            finally:
                s2.close()
    finally:
        db.dispose()


def test_urls() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    import pytest

    with pytest.raises(ValueError):
        normalize_url("mysql://u@h/db")
    with pytest.raises(ValueError):
        make_engine("sqlite://")


def test_audit_table_refuses_update_and_delete(db: Database) -> None:
    from cardperso.production import audit

    with db.transaction() as s:
        audit.append(s, actor="t", action="a", obj="o", result="ok", when=db.now())
    for stmt in ("UPDATE audit_log SET result = 'x'", "DELETE FROM audit_log"):
        import pytest

        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.transaction() as s:
            s.execute(sa.text(stmt))
