"""The audit chain: appends verify; an edited, deleted or reordered row is found."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from sqlalchemy import select

from cardperso.production import audit
from cardperso.production.db import Database
from cardperso.production.models import AuditHead, AuditLog


def _fill(db: Database, n: int = 8) -> None:
    for i in range(n):
        with db.transaction() as s:
            audit.append(
                s,
                actor="sam",
                action="start_batch" if i % 2 else "pause_batch",
                obj=f"batch:{i}",
                result="ok",
                when=db.now(),
                detail={"i": i, "note": "naïve ünïcode"},
            )


def _tamper(db: Database, *statements: str) -> None:
    """What a database administrator could do: bypass the append-only triggers."""
    with db.engine.begin() as conn:
        if db.backend == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        for stmt in statements:
            conn.exec_driver_sql(stmt)


def _verify(db: Database, anchor: tuple[int, str] | None = None) -> list[tuple[int, str]]:
    with db.reader() as s:
        return [(p.seq, p.kind) for p in audit.verify_chain(s, anchor)]


def test_intact_chain(db: Database) -> None:
    _fill(db)
    assert _verify(db) == []
    with db.reader() as s:
        rows = s.scalars(select(AuditLog).order_by(AuditLog.seq)).all()
        assert [r.seq for r in rows] == list(range(1, 9))
        assert rows[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
        assert audit.head(s) == (8, rows[-1].row_hash)
        assert rows[0].ts == "2026-01-05T08:00:00.000000Z"


def test_rolled_back_append_leaves_no_trace(db: Database) -> None:
    _fill(db, 2)
    try:
        with db.transaction() as s:
            audit.append(s, actor="x", action="y", obj="z", result="ok", when=db.now())
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    _fill(db, 1)
    assert _verify(db) == []


def test_edited_row(db: Database) -> None:
    _fill(db)
    _tamper(db, "UPDATE audit_log SET result = 'denied' WHERE seq = 3")
    assert _verify(db) == [(3, "edited")]


def test_edited_row_with_recomputed_hash(db: Database) -> None:
    _fill(db)
    with db.reader() as s:
        row = s.get(AuditLog, 3)
        assert row is not None
        forged = audit.row_hash(
            3, row.ts, row.actor, row.action, row.object, "denied", row.detail, row.prev_hash
        )
    _tamper(db, f"UPDATE audit_log SET result = 'denied', row_hash = '{forged}' WHERE seq = 3")
    assert _verify(db) == [(4, "relinked")]


def test_deleted_row(db: Database) -> None:
    _fill(db)
    _tamper(db, "DELETE FROM audit_log WHERE seq = 5")
    problems = _verify(db)
    assert problems == [(5, "missing")]


def test_deleted_last_rows(db: Database) -> None:
    _fill(db)
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 7")
    assert _verify(db) == [(7, "truncated")]


def test_reordered_rows(db: Database) -> None:
    _fill(db)
    _tamper(
        db,
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -1",
    )
    assert _verify(db) == [(3, "reordered"), (4, "reordered")]


def test_row_moved_to_the_end(db: Database) -> None:
    _fill(db)
    _tamper(db, "UPDATE audit_log SET seq = 20 WHERE seq = 2")
    kinds = _verify(db)
    assert (2, "missing") in kinds and (20, "reordered") in kinds


def test_rewritten_tail_needs_an_outside_anchor(db: Database) -> None:
    """Rewriting every later hash and the head hides an edit from the chain alone;
    an anchor taken earlier (e.g. printed in a batch report) still shows it."""
    _fill(db)
    with db.reader() as s:
        anchor = audit.head(s)
        rows = s.scalars(select(AuditLog).order_by(AuditLog.seq)).all()
    prev = rows[4].prev_hash
    statements = []
    for r in rows[4:]:
        result = "denied" if r.seq == 5 else r.result
        h = audit.row_hash(r.seq, r.ts, r.actor, r.action, r.object, result, r.detail, prev)
        statements.append(
            f"UPDATE audit_log SET result = '{result}', prev_hash = '{prev}', row_hash = '{h}' "
            f"WHERE seq = {r.seq}"
        )
        prev = h
    statements.append(f"UPDATE audit_head SET row_hash = '{prev}' WHERE id = 1")
    _tamper(db, *statements)
    assert _verify(db) == []
    assert _verify(db, anchor) == [(8, "head")]


def test_head_disagreeing(db: Database) -> None:
    _fill(db, 3)
    with db.transaction() as s:
        s.execute(sa.update(AuditHead).values(row_hash="f" * 64))
    assert _verify(db) == [(3, "head")]
