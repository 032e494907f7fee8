"""The production audit log: append-only rows, hash-chained so tampering shows.

Every row carries ``seq`` (1, 2, 3, … with no gaps), ``prev_hash`` (the previous
row's ``row_hash``; 64 zeros for the first) and ``row_hash`` = SHA-256 over the
canonical encoding of (seq, ts, actor, action, object, result, detail, prev_hash):
the JSON array of those values, no spaces, ASCII only, behind a domain label.

Appends are serialized through the single ``audit_head`` row (``SELECT … FOR
UPDATE`` on PostgreSQL; SQLite write transactions are already exclusive), which
also records the chain's last seq and hash. Because the head row is written in
the same transaction as the record, deleting the *last* records (which leaves a
shorter chain that is consistent in itself) still shows: the head names a record
that is no longer there. Someone who rewrites the whole tail *and* the head is
caught only by an anchor kept outside the database (pass ``expected_head``, e.g.
a head printed in an earlier batch report).

The database refuses UPDATE and DELETE on the table (triggers from the migration);
the chain is the check that does not depend on the database being honest.

Rows hold names and references only (an operator name, ``batch:12``, a masked
PAN at most), never cardholder data, PINs or keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardperso.production.models import AuditHead, AuditLog

__all__ = [
    "GENESIS",
    "AuditRecord",
    "ChainProblem",
    "append",
    "canonical_ts",
    "head",
    "row_hash",
    "verify_chain",
]

GENESIS = "0" * 64
_DOMAIN = b"cardperso-production-audit-v1\n"
_MAX_WALK = 64


def canonical_ts(when: datetime) -> str:
    """``2026-01-31T12:00:00.000000Z``: the exact text stored and hashed."""
    if when.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_detail(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def row_hash(
    seq: int,
    ts: str,
    actor: str,
    action: str,
    obj: str,
    result: str,
    detail: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical encoding of one row's fields."""
    body = json.dumps(
        [seq, ts, actor, action, obj, result, detail, prev_hash],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(_DOMAIN + body.encode("ascii")).hexdigest()


def _hash_of(row: AuditLog, seq: int | None = None) -> str:
    return row_hash(
        row.seq if seq is None else seq,
        row.ts,
        row.actor,
        row.action,
        row.object,
        row.result,
        row.detail,
        row.prev_hash,
    )


@dataclass(frozen=True)
class AuditRecord:
    """What to append (used to defer an append past a rollback, see db.DeferredWork)."""

    actor: str
    action: str
    obj: str
    result: str
    when: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)

    def append_to(self, session: Session) -> AuditLog:
        return append(
            session,
            actor=self.actor,
            action=self.action,
            obj=self.obj,
            result=self.result,
            when=self.when,
            detail=self.detail,
        )


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    obj: str,
    result: str,
    when: datetime,
    detail: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one record in the caller's transaction (committed or rolled back with it)."""
    head_row = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    seq = head_row.seq + 1
    ts = canonical_ts(when)
    detail_text = _canonical_detail(detail)
    digest = row_hash(seq, ts, actor, action, obj, result, detail_text, head_row.row_hash)
    row = AuditLog(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        object=obj,
        result=result,
        detail=detail_text,
        prev_hash=head_row.row_hash,
        row_hash=digest,
    )
    session.add(row)
    head_row.seq = seq
    head_row.row_hash = digest
    session.flush()
    return row


def head(session: Session) -> tuple[int, str]:
    """The chain's (last seq, last row_hash) as the head row records it."""
    row = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    return row.seq, row.row_hash


@dataclass(frozen=True)
class ChainProblem:
    """One break in the chain. ``kind`` is one of:

    ``edited``     the row's content no longer matches its own hash;
    ``missing``    rows ``seq``..``last`` are gone (a gap in the sequence);
    ``reordered``  the row sits at a seq other than the one it was written with;
    ``relinked``   the row's ``prev_hash`` is not the previous row's hash (an edit
                   whose hash was recomputed, or an inserted row);
    ``truncated``  the chain ends before the head row (last records deleted);
    ``head``       the head row, or the expected head, disagrees with the chain.
    """

    seq: int
    kind: str
    message: str
    last: int | None = None


def verify_chain(
    session: Session,
    expected_head: tuple[int, str] | None = None,
    *,
    batch_rows: int = 5_000,
) -> list[ChainProblem]:
    """Recompute the whole chain; an empty list means it is intact.

    ``expected_head`` is an outside anchor ``(seq, row_hash)`` taken earlier; the
    chain must contain that record unchanged.
    """
    problems: list[ChainProblem] = []
    expected_seq = 1
    prev_hash = GENESIS
    last_seq = 0
    anchor_seen = expected_head is None
    stmt = select(AuditLog).order_by(AuditLog.seq).execution_options(yield_per=batch_rows)
    for row in session.scalars(stmt):
        if row.seq != expected_seq:
            problems.append(
                ChainProblem(
                    expected_seq,
                    "missing",
                    f"audit rows {expected_seq}..{row.seq - 1} are missing",
                    last=row.seq - 1,
                )
            )
        gap = row.seq != expected_seq
        flagged_before = bool(problems) and problems[-1].seq == expected_seq - 1
        own_ok = hmac.compare_digest(_hash_of(row), row.row_hash)
        link_ok = hmac.compare_digest(row.prev_hash, prev_hash)
        if not own_ok:
            written_at = _written_seq(session, row)
            if written_at is not None and written_at != row.seq:
                problems.append(
                    ChainProblem(
                        row.seq,
                        "reordered",
                        f"audit row at seq {row.seq} was written as seq {written_at}",
                    )
                )
            else:
                problems.append(ChainProblem(row.seq, "edited", f"audit row {row.seq} was edited"))
        elif not link_ok and not gap and not flagged_before:
            problems.append(
                ChainProblem(
                    row.seq,
                    "relinked",
                    f"audit row {row.seq} does not follow row {row.seq - 1}",
                )
            )
        if expected_head is not None and row.seq == expected_head[0]:
            anchor_seen = True
            if not hmac.compare_digest(row.row_hash, expected_head[1]):
                problems.append(
                    ChainProblem(row.seq, "head", f"audit row {row.seq} differs from the anchor")
                )
        prev_hash = row.row_hash
        last_seq = row.seq
        expected_seq = row.seq + 1
    head_seq, head_hash = head(session)
    if last_seq < head_seq:
        problems.append(
            ChainProblem(
                last_seq + 1,
                "truncated",
                f"audit rows {last_seq + 1}..{head_seq} are missing at the end",
                last=head_seq,
            )
        )
    elif last_seq > head_seq or not hmac.compare_digest(prev_hash, head_hash):
        problems.append(ChainProblem(last_seq, "head", "the audit head does not name the last row"))
    if not anchor_seen and expected_head is not None:
        problems.append(
            ChainProblem(
                expected_head[0], "truncated", f"anchored audit row {expected_head[0]} is gone"
            )
        )
    return problems


def _written_seq(session: Session, row: AuditLog, depth: int = 0) -> int | None:
    """The seq ``row`` was hashed with, if its content is intact but it moved.

    The row that ``row.prev_hash`` names was its predecessor when it was written, so
    ``row`` was written one after that predecessor's own written seq (1 after the
    genesis link). The predecessor may have moved too (two rows swapped), hence the
    walk back, bounded by ``_MAX_WALK``.
    """
    if row.prev_hash == GENESIS:
        candidate = 1
    else:
        pred = session.scalars(select(AuditLog).where(AuditLog.row_hash == row.prev_hash)).first()
        if pred is None:
            return None
        if hmac.compare_digest(_hash_of(pred), pred.row_hash):
            pred_written: int | None = pred.seq
        elif depth < _MAX_WALK:
            pred_written = _written_seq(session, pred, depth + 1)
        else:
            pred_written = None
        if pred_written is None:
            return None
        candidate = pred_written + 1
    return candidate if hmac.compare_digest(_hash_of(row, candidate), row.row_hash) else None
