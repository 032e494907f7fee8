"""Alembic environment for the production database.

Run programmatically by :func:`cardperso.production.db.upgrade`, which passes an
open connection in ``config.attributes["connection"]``. Without one (the
``alembic`` command line), the URL comes from ``sqlalchemy.url`` or
``$CARDPERSO_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cardperso.production.db import default_url, make_engine
from cardperso.production.models import Base

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite has little ALTER
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        return
    url = context.config.get_main_option("sqlalchemy.url") or default_url()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _configure(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
