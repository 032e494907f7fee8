"""Engines, sessions, transactions and schema migration for the production database.

The same code runs on two backends (DESIGN.md §8):

* **SQLite** (the default, one file): every connection gets WAL journaling, foreign
  keys, a busy timeout and the chosen ``synchronous`` level from a connect-event
  listener. SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``: write
  transactions begin ``IMMEDIATE`` (the writer lock is taken at the first
  statement, so a read-then-write never fails half way on a lock upgrade and two
  claimers can never read the same "next pending" row); :meth:`Database.reader`
  begins ``DEFERRED`` for reports, which then never block the line.
* **PostgreSQL** by URL (``postgresql+psycopg://…``; a bare ``postgresql://`` is
  mapped to psycopg 3), READ COMMITTED, row claims with ``FOR UPDATE SKIP LOCKED``.

The schema is created and upgraded only by Alembic (:func:`upgrade`); the
migration scripts live in ``production/migrations`` next to this file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from cardperso.production.rawsql import FAST_EXECUTOR, FastExecutor

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "URL_ENV",
    "Clock",
    "Database",
    "DeferredWork",
    "HotPath",
    "current_revision",
    "default_url",
    "head_revision",
    "make_engine",
    "normalize_url",
    "upgrade",
]

DEFAULT_SQLITE_FILE = "cardperso.sqlite3"
URL_ENV = "CARDPERSO_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

Clock = Callable[[], datetime]
"""Injected wall clock (DESIGN.md §5)."""

_BEGIN_OPTION = "cardperso_sqlite_begin"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_url(directory: Path | str | None = None) -> str:
    """``$CARDPERSO_DATABASE_URL`` if set, else a SQLite file in ``directory`` (or cwd)."""
    env = os.environ.get(URL_ENV)
    if env:
        return env
    path = Path(directory or ".") / DEFAULT_SQLITE_FILE
    return f"sqlite:///{path.resolve()}"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; PostgreSQL URLs without a driver get psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database backend {parsed.get_backend_name()!r}")
    return parsed


def make_engine(
    url: str | URL | None = None,
    *,
    busy_timeout_ms: int = 30_000,
    synchronous: str = "FULL",
    echo: bool = False,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` (default: :func:`default_url`) with the backend set up.

    ``busy_timeout_ms`` and ``synchronous`` (``FULL`` survives power loss; ``NORMAL``
    survives a killed process) apply to SQLite only. Extra keyword arguments go
    to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url if url is not None else default_url())
    # The line holds one connection per module thread for its whole run (HotPath),
    # plus the finisher's and the callers': room for the largest line (16 modules).
    kwargs.setdefault("pool_size", 24)
    kwargs.setdefault("max_overflow", 16)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("the production database must be a file (WAL needs one)")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"bad synchronous level {synchronous!r}")
        engine = create_engine(parsed, echo=echo, **kwargs)
        _install_sqlite_hooks(engine, busy_timeout_ms, synchronous.upper())
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, echo=echo, **kwargs)


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # SQLAlchemy emits BEGIN itself (below); sqlite3 must not start transactions.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute(f"PRAGMA synchronous = {synchronous}")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN DEFERRED")


@runtime_checkable
class DeferredWork(Protocol):
    """An exception whose work must be committed even though the transaction fails.

    A refused login or a permission refusal must leave an audit record (and a
    failed-login count) although everything else in the transaction is refused.
    :meth:`Database.transaction` rolls back, then runs ``after_rollback`` in a
    fresh transaction of its own, commits it, and re-raises the exception.
    """

    def after_rollback(self, session: Session) -> None: ...


@dataclass
class Database:
    """An engine with its session factories, clock and transaction helpers."""

    engine: Engine
    clock: Clock = field(default=_utc_now)
    sessions: sessionmaker[Session] = field(init=False)
    read_sessions: sessionmaker[Session] = field(init=False)
    writer: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.writer = threading.Lock()
        """Held by a :class:`HotPath` transaction on SQLite: the file takes one writer at
        a time, and threads of this process that queue here wait without burning CPU
        in SQLite's busy-retry loop (PostgreSQL's row locks need no such queue)."""
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        reader = self.engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        self.read_sessions = sessionmaker(reader, expire_on_commit=False)

    @classmethod
    def open(
        cls, url: str | URL | None = None, *, clock: Clock | None = None, **engine_kw: Any
    ) -> Database:
        """Engine for ``url`` (see :func:`make_engine`); does not migrate."""
        return cls(make_engine(url, **engine_kw), clock or _utc_now)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error.

        An error implementing :class:`DeferredWork` gets its ``after_rollback`` run
        and committed in a separate transaction before it propagates.
        """
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            if isinstance(exc, DeferredWork):
                with session.begin():
                    exc.after_rollback(session)
            raise
        finally:
            session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read transaction (``BEGIN DEFERRED`` on SQLite), never committed.

        Closing releases the connection (its transaction is rolled back) and keeps
        the loaded objects usable, detached, after the block.
        """
        session = self.read_sessions()
        try:
            yield session
        finally:
            session.close()

    def hot_path(self) -> HotPath:
        """A connection for one thread's run of short, repeated write transactions
        (the line's claims and finishes); close it when the thread is done."""
        return HotPath(self)

    def upgrade(self, revision: str = "head") -> None:
        upgrade(self.engine, revision)

    def dispose(self) -> None:
        self.engine.dispose()


class HotPath:
    """One thread's own connection for many short write transactions.

    Each :meth:`transaction` is a real transaction on that connection (``BEGIN
    IMMEDIATE`` on SQLite, committed or rolled back as a whole), and its session runs
    the repository's prebuilt statements through a
    :class:`~cardperso.production.rawsql.FastExecutor`: no pool check-out, ORM
    session set-up or statement-cache look-up per transaction. ORM work done in the
    session (an audit record) is flushed into the same transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.connection = db.engine.connect()
        self._executor = FastExecutor(self.connection)
        self._sessions = sessionmaker(bind=self.connection, expire_on_commit=False)
        self._queue: contextlib.AbstractContextManager[object] = (
            db.writer if db.backend == "sqlite" else contextlib.nullcontext()
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._queue, self.connection.begin():
            session = self._sessions()
            session.info[FAST_EXECUTOR] = self._executor
            try:
                yield session
                session.flush()
            finally:
                session.close()

    def close(self) -> None:
        self.connection.close()


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Run the Alembic migrations on ``target`` (a URL or an engine) up to ``revision``."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    finally:
        if engine is not target:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
