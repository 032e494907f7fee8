"""Prebuilt Core statements run straight on the driver's cursor (the line's hot path).

The batch line runs the same dozen statements for every card (claim a job and a
stock card, record the attempt, finish it). Through SQLAlchemy each execution
builds an execution context, looks the compiled form up in a cache and wraps the
result: several times the cost of the SQL itself, and on the line that overhead,
not the database, was the largest share of the host's CPU per card.

:class:`FastExecutor` compiles each statement once for the connection's dialect
(the same Core statements the rest of the repository runs, so one source of SQL),
converts parameters and results with the column types' own bind and result
processors (enum text, UTC timestamps, JSON), and runs the SQL on the DBAPI
connection underneath a SQLAlchemy :class:`~sqlalchemy.engine.Connection`. The
transaction stays that Connection's: begun and committed by SQLAlchemy (``BEGIN
IMMEDIATE`` on SQLite), so crash safety and isolation are unchanged, and ORM work
in the same transaction (an audit record) shares it. Statements must be built
once (module constants): the cache is keyed by the statement object.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.expression import Executable

__all__ = ["FAST_EXECUTOR", "FastExecutor", "FastResult"]

FAST_EXECUTOR = "cardperso.fast_executor"
"""``Session.info`` key of a :class:`FastExecutor` on the session's connection: the
repository's hot-path statements then run through it."""

_Processor = Callable[[Any], Any] | None


class _Prepared:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("plan", "positional", "result_procs", "row", "sql")

    def __init__(self, stmt: Any, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a hot-path statement may not use expanding IN parameters")
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        # rendered name -> the bind parameter (its type converts the value)
        rendered = {name: bind for bind, name in compiled.bind_names.items()}
        order = list(compiled.positiontup or []) if self.positional else list(rendered)
        # Which caller key feeds each rendered parameter, or its fixed value: learnt
        # once from SQLAlchemy's own mapping, with a marker in place of each value.
        marked = compiled.construct_params({k: _Given(k) for k in keys})
        self.plan: list[tuple[str, str | None, _Processor, Any]] = []
        for name in order:
            proc = rendered[name].type.dialect_impl(dialect).bind_processor(dialect)
            value = marked[name]
            if isinstance(value, _Given):
                self.plan.append((name, value.key, proc, None))
            else:
                self.plan.append((name, None, None, proc(value) if proc is not None else value))
        columns = list(getattr(stmt, "exported_columns", []) or [])
        self.result_procs: list[_Processor] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        names = [str(getattr(c, "key", None) or f"c{i}") for i, c in enumerate(columns)]
        self.row = namedtuple("Row", names, rename=True) if names else None

    def parameters(self, given: Mapping[str, Any]) -> Any:
        out = []
        for _, key, proc, fixed in self.plan:
            if key is None:
                out.append(fixed)
            else:
                value = given[key]
                out.append(proc(value) if proc is not None else value)
        if self.positional:
            return tuple(out)
        return {name: v for (name, _, _, _), v in zip(self.plan, out, strict=True)}


class _Given:
    """Marks where a caller's parameter goes while a statement is being prepared."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


class FastResult:
    """The few result methods the repository's hot path uses."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]

    def all(self) -> list[Any]:
        return list(self._rows)


class FastExecutor:
    """Runs prebuilt statements on ``connection``'s DBAPI connection, in its transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect
        self._cache: dict[tuple[int, tuple[str, ...]], tuple[Executable, _Prepared]] = {}

    def execute(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> FastResult:
        given = params or {}
        key = (id(stmt), tuple(given))
        hit = self._cache.get(key)
        if hit is None or hit[0] is not stmt:
            hit = (stmt, _Prepared(stmt, self.dialect, list(given)))
            self._cache[key] = hit
        prepared = hit[1]
        dbapi = self.connection.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            try:
                cursor.execute(prepared.sql, prepared.parameters(given))
            except self.dialect.loaded_dbapi.Error as e:
                # as SQLAlchemy's own execution reports it (callers catch sqlalchemy.exc),
                # with the parameters left out of the message: they are cardholder data
                raise exc.DBAPIError.instance(
                    prepared.sql,
                    None,
                    e,
                    self.dialect.loaded_dbapi.Error,
                    hide_parameters=True,
                    dialect=self.dialect,
                ) from e
            rows: list[Any] = []
            if cursor.description is not None:
                procs, make = prepared.result_procs, prepared.row
                if make is None:  # rows the statement did not ask for (an implicit
                    rows = [tuple(raw) for raw in cursor.fetchall()]  # RETURNING of the key)
                else:
                    for raw in cursor.fetchall():
                        values = [p(v) if p else v for p, v in zip(procs, raw, strict=True)]
                        rows.append(make(*values))
            return FastResult(rows, cursor.rowcount)
        finally:
            cursor.close()
