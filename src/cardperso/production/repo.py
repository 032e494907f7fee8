"""Repository functions the production line calls: batches, claims, attempts, rejects,
remakes, crash recovery and progress.

Every function works inside the caller's transaction (``with db.transaction() as
s:``) and never commits; a function that raises leaves the caller to roll the whole
transaction back, which is how a batch is accepted whole or refused whole. Objects
are passed by id across transactions (a row read in an earlier transaction may be
stale); functions that change a row re-read it with a row lock.

Claims are atomic on both backends: PostgreSQL takes the first unlocked row with
``SELECT … FOR UPDATE SKIP LOCKED``; SQLite write transactions begin IMMEDIATE
(see :mod:`cardperso.production.db`), so a claimer holds the writer lock from its
first read. Either way no job and no stock card is handed out twice.

Life of a card job::

    pending --claim--> in_progress --mark_good--> good
       ^                   |
       +---- reject -------+  (card to the reject bin, chip spoiled, remade on a new
       |                   |   card whose attempt links to the rejected one)
     release <-- held <----+  (reject when the batch's attempt limit is reached)

Crash recovery (:func:`recover_in_flight`, run by :func:`resume_batch`) rejects
every attempt still open ("interrupted": the card that was in a module is spoiled
and its job remade), requeues jobs claimed without an attempt, and spoils stock
cards claimed but never attempted. It assumes no line process is still working on
the batch: the orchestrator calls resume before it starts its modules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from cardperso.errors import CardpersoError, InputError
from cardperso.production import audit
from cardperso.production.crypto_fields import FieldCipher, mask_pan, pan_digest
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    Batch,
    BatchState,
    CardJob,
    ChipState,
    ChipUsage,
    InvalidTransition,
    Issuer,
    JobState,
    Profile,
    RejectBinEntry,
    StockCard,
    StockKind,
    StockState,
)
from cardperso.production.operators import Action, Principal, authorize
from cardperso.production.rawsql import FAST_EXECUTOR

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "ChipReportRow",
    "JobRecord",
    "LineClaim",
    "OutOfStock",
    "Progress",
    "Recovery",
    "UnusedSet",
    "begin_attempt",
    "cancel_batch",
    "chip_report",
    "claim_for_module",
    "claim_next_job",
    "claim_stock_card",
    "complete_if_done",
    "create_batch",
    "find_jobs_by_pan",
    "mark_good",
    "normalize_serial",
    "open_record",
    "pause_batch",
    "progress",
    "receive_stock",
    "record_aad",
    "record_station",
    "recover_in_flight",
    "register_issuer",
    "register_profile",
    "reject",
    "release_held",
    "remake_chain",
    "resume_batch",
    "start_attempt",
    "start_batch",
    "unused_bound_sets",
]

DEFAULT_MAX_ATTEMPTS = 5
INSERT_CHUNK = 1_000
INTERRUPTED = "interrupted"
CHIP_UNAVAILABLE = "its bound chip is not available in stock"
_SERIAL_RE = re.compile(r"^[0-9A-F]{2,40}$")
_MODULE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,32}$")


def _log(
    session: Session,
    actor: str,
    action: str,
    obj: str,
    when: datetime,
    *,
    result: str = "ok",
    detail: Mapping[str, Any] | None = None,
) -> None:
    audit.append(
        session, actor=actor, action=action, obj=obj, result=result, when=when, detail=detail
    )


class OutOfStock(CardpersoError):
    """No stock card of the wanted kind is available (the job claim is rolled back)."""

    exit_code = 6


# ---------------------------------------------------------------------------------
# Reference data


def register_issuer(session: Session, code: str, name: str, *, when: datetime) -> Issuer:
    """The issuer with ``code``, created if new."""
    issuer = session.scalars(select(Issuer).where(Issuer.code == code)).first()
    if issuer is None:
        issuer = Issuer(code=code, name=name, created_at=when)
        session.add(issuer)
        session.flush()
    return issuer


def register_profile(
    session: Session, code: str, version: int, yaml_text: str, *, when: datetime
) -> Profile:
    """Store a profile version verbatim; the same (code, version) must keep its text."""
    digest = hashlib.sha256(yaml_text.encode("utf-8")).hexdigest()
    found = session.scalars(
        select(Profile).where(Profile.code == code, Profile.version == version)
    ).first()
    if found is not None:
        if found.yaml_sha256 != digest:
            raise InputError(
                f"profile {code} v{version} is already registered with other content",
                field="version",
            )
        return found
    profile = Profile(
        code=code, version=version, yaml_text=yaml_text, yaml_sha256=digest, created_at=when
    )
    session.add(profile)
    session.flush()
    return profile


# ---------------------------------------------------------------------------------
# Batches


@dataclass(frozen=True, repr=False)
class JobRecord:
    """One issuer record as handed to :func:`create_batch` (clear; sealed on insert)."""

    record_ref: str
    pan: str
    record: bytes
    seq: int | None = None
    """Production (presort) order; defaults to the record's position, from 1."""
    chip_serial: str | None = None
    """A chip-bound data set: the chip serial the record was prepared for."""

    def __repr__(self) -> str:
        return f"JobRecord(record_ref={self.record_ref!r}, <cardholder data redacted>)"


def record_aad(batch_id: int, seq: int) -> bytes:
    """Associated data binding a sealed record to its batch and place."""
    return f"cardperso/card_job/{batch_id}/{seq}".encode("ascii")


def create_batch(
    session: Session,
    *,
    issuer: Issuer,
    profile: Profile,
    reference: str,
    records: Iterable[JobRecord],
    cipher: FieldCipher,
    by: Principal,
    when: datetime,
    input_sha256: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    chunk: int = INSERT_CHUNK,
) -> Batch:
    """Create a batch and one pending job per record, in the caller's transaction.

    Any bad record (malformed or repeated PAN, repeated seq, over-long reference)
    raises :class:`InputError` naming the record's position, and the caller's
    rollback leaves nothing behind. A batch reference can be imported once per issuer.
    """
    authorize(session, by, Action.IMPORT_BATCH, f"batch:{reference}", when)
    if not 1 <= len(reference) <= 100:
        raise InputError("batch reference must be 1..100 characters", field="reference")
    if max_attempts < 1:
        raise InputError("max_attempts must be at least 1", field="max_attempts")
    dup = session.scalars(
        select(Batch.id).where(Batch.issuer_id == issuer.id, Batch.reference == reference)
    ).first()
    if dup is not None:
        raise InputError(f"batch {reference!r} was already imported", field="reference")
    batch = Batch(
        issuer_id=issuer.id,
        profile_id=profile.id,
        reference=reference,
        input_sha256=input_sha256,
        state=BatchState.IMPORTED,
        record_count=0,
        max_attempts=max_attempts,
        created_by=by.operator_id,
        created_at=when,
    )
    session.add(batch)
    session.flush()
    seen_seq: set[int] = set()
    seen_pan: dict[bytes, int] = {}
    seen_chip: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    count = 0
    for position, rec in enumerate(records, 1):
        seq = rec.seq if rec.seq is not None else position
        if seq in seen_seq or seq < 1:
            raise InputError(
                "sequence number repeated or < 1", file=reference, line=position, field="seq"
            )
        if not 1 <= len(rec.record_ref) <= 64:
            raise InputError(
                "record reference must be 1..64 characters",
                file=reference,
                line=position,
                field="record_ref",
            )
        try:
            digest = pan_digest(cipher, rec.pan)
            masked = mask_pan(rec.pan)
        except InputError as exc:
            raise InputError(exc.reason, file=reference, line=position, field="pan") from None
        if digest in seen_pan:
            raise InputError(
                f"PAN repeats record {seen_pan[digest]}", file=reference, line=position, field="pan"
            )
        bound: str | None = None
        if rec.chip_serial:
            try:
                bound = normalize_serial(rec.chip_serial)
            except InputError as exc:
                raise InputError(
                    exc.reason, file=reference, line=position, field="chip_serial"
                ) from None
            if bound in seen_chip:
                raise InputError(
                    f"chip serial repeats record {seen_chip[bound]}",
                    file=reference,
                    line=position,
                    field="chip_serial",
                )
            seen_chip[bound] = position
        seen_seq.add(seq)
        seen_pan[digest] = position
        rows.append(
            {
                "batch_id": batch.id,
                "seq": seq,
                "record_ref": rec.record_ref,
                "state": JobState.PENDING,
                "record_blob": cipher.seal(rec.record, record_aad(batch.id, seq)),
                "pan_masked": masked,
                "pan_digest": digest,
                "attempt_count": 0,
                "updated_at": when,
                "bound_serial": bound,
            }
        )
        count += 1
        if len(rows) >= chunk:
            session.execute(insert(CardJob), rows)
            rows = []
    if rows:
        session.execute(insert(CardJob), rows)
    if count == 0:
        raise InputError("a batch needs at least one record", file=reference)
    batch.record_count = count
    _log(
        session,
        by.name,
        "import_batch",
        f"batch:{batch.id}",
        when,
        detail={
            "reference": reference,
            "issuer": issuer.code,
            "profile": f"{profile.code}/{profile.version}",
            "records": count,
            "input_sha256": input_sha256,
            "cipher_key": cipher.key_id,
        },
    )
    session.flush()
    return batch


def _batch_for_update(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id, with_for_update=True, populate_existing=True)
    if batch is None:
        raise InputError(f"no batch {batch_id}", field="batch")
    return batch


def start_batch(session: Session, batch_id: int, *, by: Principal, when: datetime) -> Batch:
    """imported -> running (supervisor or operator)."""
    authorize(session, by, Action.START_BATCH, f"batch:{batch_id}", when)
    batch = _batch_for_update(session, batch_id)
    if batch.state is not BatchState.IMPORTED:
        raise InvalidTransition(f"batch {batch_id} is {batch.state.value}; use resume")
    batch.move_to(BatchState.RUNNING)
    batch.started_at = when
    _log(session, by.name, "start_batch", f"batch:{batch_id}", when)
    return batch


def pause_batch(session: Session, batch_id: int, *, by: Principal, when: datetime) -> Batch:
    """running -> paused: no new claims; cards in modules may still finish."""
    authorize(session, by, Action.PAUSE_BATCH, f"batch:{batch_id}", when)
    batch = _batch_for_update(session, batch_id)
    if batch.state is not BatchState.RUNNING:
        raise InvalidTransition(f"batch {batch_id} is {batch.state.value}, not running")
    batch.move_to(BatchState.PAUSED)
    _log(session, by.name, "pause_batch", f"batch:{batch_id}", when)
    return batch


@dataclass
class Recovery:
    """What :func:`recover_in_flight` did."""

    rejected_attempts: list[int] = field(default_factory=list)
    requeued_jobs: list[int] = field(default_factory=list)
    spoiled_cards: list[str] = field(default_factory=list)

    def as_detail(self) -> dict[str, int]:
        return {
            "rejected_attempts": len(self.rejected_attempts),
            "requeued_jobs": len(self.requeued_jobs),
            "spoiled_cards": len(self.spoiled_cards),
        }


def resume_batch(session: Session, batch_id: int, *, by: Principal, when: datetime) -> Recovery:
    """paused or running (after a crash) -> running, after :func:`recover_in_flight`."""
    authorize(session, by, Action.RESUME_BATCH, f"batch:{batch_id}", when)
    batch = _batch_for_update(session, batch_id)
    if batch.state not in (BatchState.PAUSED, BatchState.RUNNING):
        raise InvalidTransition(f"batch {batch_id} is {batch.state.value}; cannot resume")
    recovery = recover_in_flight(session, batch_id, when=when, actor=by.name)
    batch.move_to(BatchState.RUNNING)
    _log(session, by.name, "resume_batch", f"batch:{batch_id}", when, detail=recovery.as_detail())
    return recovery


def cancel_batch(
    session: Session, batch_id: int, *, by: Principal, when: datetime, reason: str = ""
) -> Batch:
    """imported/running/paused -> cancelled (supervisor). Pending and held jobs are
    cancelled; good cards stay good. Refused while any card is in a module: pause
    and let the modules finish, or resume (which recovers) first."""
    authorize(session, by, Action.CANCEL_BATCH, f"batch:{batch_id}", when)
    batch = _batch_for_update(session, batch_id)
    if batch.state in (BatchState.DONE, BatchState.CANCELLED):
        raise InvalidTransition(f"batch {batch_id} is already {batch.state.value}")
    busy = session.scalar(
        select(func.count())
        .select_from(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state == JobState.IN_PROGRESS)
    ) or session.scalar(
        select(func.count())
        .select_from(StockCard)
        .where(StockCard.batch_id == batch_id, StockCard.state == StockState.CLAIMED)
    )
    if busy:
        raise InvalidTransition(f"batch {batch_id} has cards in modules; cannot cancel now")
    jobs = session.scalars(
        select(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state.in_([JobState.PENDING, JobState.HELD]))
        .with_for_update()
    ).all()
    for job in jobs:
        job.move_to(JobState.CANCELLED)
        job.updated_at = when
    batch.move_to(BatchState.CANCELLED)
    batch.finished_at = when
    _log(
        session,
        by.name,
        "cancel_batch",
        f"batch:{batch_id}",
        when,
        detail={"cancelled_jobs": len(jobs), "reason": reason[:200]},
    )
    return batch


def complete_if_done(session: Session, batch_id: int, *, when: datetime) -> bool:
    """running -> done once every job is good; returns whether the batch is done."""
    batch = _batch_for_update(session, batch_id)
    if batch.state is BatchState.DONE:
        return True
    if batch.state is not BatchState.RUNNING:
        return False
    open_jobs = session.scalar(
        select(func.count())
        .select_from(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state != JobState.GOOD)
    )
    if open_jobs:
        return False
    batch.move_to(BatchState.DONE)
    batch.finished_at = when
    _log(
        session,
        "line",
        "batch_done",
        f"batch:{batch_id}",
        when,
        detail={"records": batch.record_count},
    )
    return True


# ---------------------------------------------------------------------------------
# Stock


def normalize_serial(serial: str | bytes) -> str:
    """Chip serials as upper-case hex (bytes are hex-encoded)."""
    text = serial.hex().upper() if isinstance(serial, bytes) else serial.strip().upper()
    if not _SERIAL_RE.match(text):
        raise InputError("chip serial must be 1..20 bytes of hex", field="serial")
    return text


def receive_stock(
    session: Session,
    serials: Iterable[str | bytes],
    *,
    kind: StockKind,
    by: Principal,
    when: datetime,
    product: str | None = None,
    lot: str | None = None,
) -> int:
    """Book a delivery of blank or pre-initialized cards; refuses known serials."""
    authorize(session, by, Action.RECEIVE_STOCK, f"stock:{lot or '-'}", when)
    if kind is StockKind.PRE_INITIALIZED and not product:
        raise InputError("pre-initialized stock names its product", field="product")
    clean = [normalize_serial(s) for s in serials]
    if len(set(clean)) != len(clean):
        raise InputError("the delivery repeats a chip serial", field="serial")
    for start in range(0, len(clean), INSERT_CHUNK):
        part = clean[start : start + INSERT_CHUNK]
        known = (
            session.scalars(
                select(StockCard.serial).where(StockCard.serial.in_(part)).limit(1)
            ).first()
            or session.scalars(
                select(ChipUsage.chip_serial).where(ChipUsage.chip_serial.in_(part)).limit(1)
            ).first()
        )
        if known is not None:
            raise InputError(f"chip serial {known} is already known", field="serial")
        session.execute(
            insert(StockCard),
            [
                {
                    "serial": s,
                    "kind": kind,
                    "product": product,
                    "lot": lot,
                    "state": StockState.AVAILABLE,
                    "received_at": when,
                }
                for s in part
            ],
        )
    _log(
        session,
        by.name,
        "receive_stock",
        f"stock:{lot or '-'}",
        when,
        detail={"cards": len(clean), "kind": kind.value, "product": product},
    )
    return len(clean)


def _check_module(module_id: str) -> None:
    if not _MODULE_RE.match(module_id):
        raise InputError("module id must be 1..32 of [A-Za-z0-9_.:-]", field="module_id")


def claim_stock_card(
    session: Session,
    *,
    kind: StockKind,
    module_id: str,
    batch_id: int,
    when: datetime,
    product: str | None = None,
) -> StockCard | None:
    """Take the oldest available card of ``kind`` (and ``product``) for a module."""
    _check_module(module_id)
    stmt = select(StockCard).where(StockCard.state == StockState.AVAILABLE, StockCard.kind == kind)
    if product is not None:
        stmt = stmt.where(StockCard.product == product)
    card = session.scalars(
        stmt.order_by(StockCard.id).limit(1).with_for_update(skip_locked=True)
    ).first()
    if card is None:
        return None
    card.state = StockState.CLAIMED
    card.module_id = module_id
    card.batch_id = batch_id
    card.claimed_at = when
    session.flush()
    return card


# ---------------------------------------------------------------------------------
# Jobs and attempts


def claim_next_job(
    session: Session, batch_id: int, module_id: str, *, when: datetime
) -> CardJob | None:
    """The pending job with the lowest seq, now in progress for ``module_id``.

    None when nothing is pending or the batch is not running.
    """
    _check_module(module_id)
    state = session.scalar(select(Batch.state).where(Batch.id == batch_id))
    if state is not BatchState.RUNNING:
        return None
    job = session.scalars(
        select(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state == JobState.PENDING)
        .order_by(CardJob.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if job is None:
        return None
    job.move_to(JobState.IN_PROGRESS)
    job.module_id = module_id
    job.claimed_at = when
    job.updated_at = when
    session.flush()
    return job


def _job_for_update(session: Session, job_id: int) -> CardJob:
    job = session.get(CardJob, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise InputError(f"no card job {job_id}", field="job")
    return job


def _attempt_for_update(session: Session, attempt: Attempt | int) -> Attempt:
    attempt_id = attempt if isinstance(attempt, int) else attempt.id
    row = session.get(Attempt, attempt_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise InputError(f"no attempt {attempt_id}", field="attempt")
    return row


def start_attempt(
    session: Session,
    job: CardJob | int,
    card: StockCard | int,
    *,
    module_id: str,
    when: datetime,
) -> Attempt:
    """Record that ``card`` went into ``module_id`` for ``job`` (both claimed by it).

    A job's later attempts link to the rejected attempt they remake.
    """
    j = _job_for_update(session, job if isinstance(job, int) else job.id)
    c = session.get(
        StockCard,
        card if isinstance(card, int) else card.id,
        with_for_update=True,
        populate_existing=True,
    )
    if j.state is not JobState.IN_PROGRESS or j.module_id != module_id:
        raise InvalidTransition(f"card job {j.id} is not claimed by module {module_id}")
    if c is None or c.state is not StockState.CLAIMED or c.module_id != module_id:
        raise InvalidTransition(f"stock card is not claimed by module {module_id}")
    previous = session.scalars(
        select(Attempt).where(Attempt.job_id == j.id).order_by(Attempt.attempt_no.desc()).limit(1)
    ).first()
    if previous is not None and previous.outcome is not AttemptOutcome.REJECTED:
        raise InvalidTransition(f"card job {j.id}: attempt {previous.id} is {previous.outcome}")
    j.attempt_count += 1
    j.updated_at = when
    attempt = Attempt(
        job_id=j.id,
        batch_id=j.batch_id,
        attempt_no=j.attempt_count,
        stock_card_id=c.id,
        chip_serial=c.serial,
        module_id=module_id,
        remake_of_id=previous.id if previous is not None else None,
        started_at=when,
        station_results=[],
        outcome=AttemptOutcome.IN_PROGRESS,
    )
    session.add(attempt)
    session.flush()
    return attempt


@dataclass(frozen=True, slots=True)
class LineClaim:
    """What a chip module needs of a claimed job and card (no ORM object: the line's
    hot path reads and writes by id)."""

    attempt_id: int
    job_id: int
    batch_id: int
    seq: int
    attempt_no: int
    record_ref: str
    chip_serial: str
    stock_card_id: int
    module_id: str
    remake_of_id: int | None
    record_blob: bytes


# The line's hot path (once per card) runs prebuilt statements over the tables, not
# ORM units of work: building, caching and flushing ORM statements cost several
# times the SQL itself. Each UPDATE re-checks the state it expects (rowcount 1), so
# a concurrent claimer on PostgreSQL - which skipped the locked row - can never take
# the same job or card, and a stale caller gets InvalidTransition.
_JOBS = cast(Table, CardJob.__table__)
_CARDS = cast(Table, StockCard.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)
_USAGE = cast(Table, ChipUsage.__table__)
_NEXT_JOB = (
    select(
        _JOBS.c.id,
        _JOBS.c.seq,
        _JOBS.c.record_ref,
        _JOBS.c.attempt_count,
        _JOBS.c.record_blob,
        _JOBS.c.bound_serial,
    )
    .where(
        _JOBS.c.batch_id == bindparam("b"),
        _JOBS.c.state == JobState.PENDING,
        # only while the batch runs: a pause stops the next claim (a subquery, not a
        # join, so FOR UPDATE locks job rows only)
        select(Batch.__table__.c.id)
        .where(
            Batch.__table__.c.id == bindparam("b"),
            Batch.__table__.c.state == BatchState.RUNNING,
        )
        .exists(),
    )
    .order_by(_JOBS.c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_UNMADE = (JobState.PENDING, JobState.IN_PROGRESS, JobState.HELD)
# A card reserved for a chip-bound job still to be made is not taken for another job.
_RESERVED = (
    select(_JOBS.c.id)
    .where(
        _JOBS.c.bound_serial == _CARDS.c.serial,
        # (= of each state, not IN: an expanding IN list is re-rendered per execution)
        or_(
            *(_JOBS.c.state == st for st in (JobState.PENDING, JobState.IN_PROGRESS, JobState.HELD))
        ),
    )
    .exists()
)
_NEXT_CARD = {
    by_product: (
        select(_CARDS.c.id, _CARDS.c.serial)
        .where(
            _CARDS.c.state == StockState.AVAILABLE,
            _CARDS.c.kind == bindparam("kind"),
            *([_CARDS.c.product == bindparam("product")] if by_product else []),
            ~_RESERVED,
        )
        .order_by(_CARDS.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    for by_product in (False, True)
}
_BOUND_CARD = {
    by_product: (
        select(_CARDS.c.id, _CARDS.c.serial).where(
            _CARDS.c.serial == bindparam("serial"),
            _CARDS.c.state == StockState.AVAILABLE,
            _CARDS.c.kind == bindparam("kind"),
            *([_CARDS.c.product == bindparam("product")] if by_product else []),
        )
    )
    for by_product in (False, True)
}
_HOLD_UNMADE = (
    _JOBS.update()
    .where(_JOBS.c.id == bindparam("j"), _JOBS.c.state == JobState.PENDING)
    .values(state=JobState.HELD, updated_at=bindparam("w"))
)
_TAKE_JOB = (
    _JOBS.update()
    .where(_JOBS.c.id == bindparam("j"), _JOBS.c.state == JobState.PENDING)
    .values(
        state=JobState.IN_PROGRESS,
        module_id=bindparam("m"),
        claimed_at=bindparam("w"),
        updated_at=bindparam("w"),
        attempt_count=bindparam("n"),
    )
)
_TAKE_CARD = (
    _CARDS.update()
    .where(_CARDS.c.id == bindparam("c"), _CARDS.c.state == StockState.AVAILABLE)
    .values(
        state=StockState.CLAIMED,
        module_id=bindparam("m"),
        batch_id=bindparam("b"),
        claimed_at=bindparam("w"),
    )
)
_LAST_ATTEMPT = (
    select(_ATTEMPTS.c.id, _ATTEMPTS.c.outcome)
    .where(_ATTEMPTS.c.job_id == bindparam("j"))
    .order_by(_ATTEMPTS.c.attempt_no.desc())
    .limit(1)
)
_NEW_ATTEMPT = _ATTEMPTS.insert().returning(_ATTEMPTS.c.id)
_OPEN_ATTEMPT = (
    select(
        _ATTEMPTS.c.id,
        _ATTEMPTS.c.job_id,
        _ATTEMPTS.c.batch_id,
        _ATTEMPTS.c.chip_serial,
        _ATTEMPTS.c.stock_card_id,
        _ATTEMPTS.c.outcome,
        _ATTEMPTS.c.station_results,
    )
    .where(_ATTEMPTS.c.id == bindparam("a"))
    # the results are read, extended and written back: no other writer in between
    .with_for_update()
)
_SET_RESULTS = (
    _ATTEMPTS.update()
    .where(_ATTEMPTS.c.id == bindparam("a"), _ATTEMPTS.c.outcome == AttemptOutcome.IN_PROGRESS)
    .values(station_results=bindparam("r"))
)
_END_ATTEMPT = (
    _ATTEMPTS.update()
    .where(_ATTEMPTS.c.id == bindparam("a"), _ATTEMPTS.c.outcome == AttemptOutcome.IN_PROGRESS)
    .values(station_results=bindparam("r"), outcome=bindparam("o"), ended_at=bindparam("e"))
)


def _sql(session: Session) -> Any:
    """What runs the prebuilt statements: the session's fast executor, else its connection."""
    return session.info.get(FAST_EXECUTOR) or session.connection()


_JOB_GOOD = (
    _JOBS.update()
    .where(_JOBS.c.id == bindparam("j"), _JOBS.c.state == JobState.IN_PROGRESS)
    .values(state=JobState.GOOD, updated_at=bindparam("w"))
)
_CARD_CONSUMED = (
    _CARDS.update().where(_CARDS.c.id == bindparam("c")).values(state=StockState.CONSUMED)
)
_NEW_USAGE = _USAGE.insert()


def claim_for_module(
    session: Session,
    batch_id: int,
    module_id: str,
    *,
    when: datetime,
    kind: StockKind = StockKind.BLANK,
    product: str | None = None,
) -> LineClaim | None:
    """Claim the next pending job and the oldest available stock card and record the
    attempt, in the caller's transaction: the attempt exists before the card enters
    the module. None when nothing is pending or the batch is not running; raises
    :class:`OutOfStock` (roll back) when no card is left.
    """
    _check_module(module_id)
    conn = _sql(session)
    by_product = product is not None
    while True:
        job = conn.execute(_NEXT_JOB, {"b": batch_id}).first()
        if job is None:
            return None
        if job.bound_serial is None:
            card = conn.execute(_NEXT_CARD[by_product], {"kind": kind, "product": product}).first()
            if card is None:
                raise OutOfStock(f"no {kind.value} stock card available for batch {batch_id}")
            break
        # A chip-bound data set goes into its own chip or nowhere.
        card = conn.execute(
            _BOUND_CARD[by_product], {"serial": job.bound_serial, "kind": kind, "product": product}
        ).first()
        if card is not None:
            break
        _expect_one(
            conn.execute(_HOLD_UNMADE, {"j": job.id, "w": when}),
            f"card job {job.id} is no longer pending",
        )
        _log(
            session,
            f"module:{module_id}",
            "hold_job",
            f"job:{job.id}",
            when,
            result="held",
            detail={"chip": job.bound_serial, "reason": CHIP_UNAVAILABLE},
        )
    attempt_no = job.attempt_count + 1
    _expect_one(
        conn.execute(_TAKE_JOB, {"j": job.id, "m": module_id, "w": when, "n": attempt_no}),
        f"card job {job.id} is no longer pending",
    )
    _expect_one(
        conn.execute(_TAKE_CARD, {"c": card.id, "m": module_id, "b": batch_id, "w": when}),
        "the stock card is no longer available",
    )
    previous: int | None = None
    if job.attempt_count:
        last = conn.execute(_LAST_ATTEMPT, {"j": job.id}).first()
        if last is not None:
            if last.outcome is not AttemptOutcome.REJECTED:
                raise InvalidTransition(f"card job {job.id}: attempt {last.id} is {last.outcome}")
            previous = last.id
    attempt_id = conn.execute(
        _NEW_ATTEMPT,
        {
            "job_id": job.id,
            "batch_id": batch_id,
            "attempt_no": attempt_no,
            "stock_card_id": card.id,
            "chip_serial": card.serial,
            "module_id": module_id,
            "remake_of_id": previous,
            "started_at": when,
            "station_results": [],
            "outcome": AttemptOutcome.IN_PROGRESS,
        },
    ).scalar_one()
    session.expire_all()  # rows of this job or card loaded in the session are stale now
    return LineClaim(
        attempt_id=attempt_id,
        job_id=job.id,
        batch_id=batch_id,
        seq=job.seq,
        attempt_no=attempt_no,
        record_ref=job.record_ref,
        chip_serial=card.serial,
        stock_card_id=card.id,
        module_id=module_id,
        remake_of_id=previous,
        record_blob=job.record_blob,
    )


def _expect_one(result: Any, message: str) -> None:
    """A conditional UPDATE that touched no row: the state changed under us."""
    if result.rowcount != 1:
        raise InvalidTransition(message)


def begin_attempt(
    session: Session,
    batch_id: int,
    module_id: str,
    *,
    when: datetime,
    kind: StockKind = StockKind.BLANK,
    product: str | None = None,
) -> Attempt | None:
    """:func:`claim_for_module`, returning the attempt as an ORM object.

    None when no job is pending; raises :class:`OutOfStock` (roll back) when no card.
    """
    claim = claim_for_module(session, batch_id, module_id, when=when, kind=kind, product=product)
    if claim is None:
        return None
    return session.get(Attempt, claim.attempt_id)


def _open_attempt(session: Session, attempt: Attempt | int) -> Any:
    """The attempt's row (plain SQL, no ORM object); it must still be in progress."""
    attempt_id = attempt if isinstance(attempt, int) else attempt.id
    row = _sql(session).execute(_OPEN_ATTEMPT, {"a": attempt_id}).first()
    if row is None:
        raise InputError(f"no attempt {attempt_id}", field="attempt")
    if row.outcome is not AttemptOutcome.IN_PROGRESS:
        raise InvalidTransition(f"attempt {row.id} is {row.outcome.value}, not in progress")
    return row


def _station_entry(
    station: str, ok: bool, when: datetime, detail: Mapping[str, Any] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"station": station, "ok": ok, "at": audit.canonical_ts(when)}
    if detail:
        entry["detail"] = dict(detail)
    return entry


def record_station(
    session: Session,
    attempt: Attempt | int,
    station: str,
    ok: bool,
    *,
    when: datetime,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one station's result to an open attempt (names and figures, no data)."""
    row = _open_attempt(session, attempt)
    _set_results(session, row, [*row.station_results, _station_entry(station, ok, when, detail)])
    session.expire_all()  # an Attempt loaded in this session is stale now


def _set_results(
    session: Session,
    row: Any,
    results: list[dict[str, Any]],
    *,
    end: tuple[AttemptOutcome, datetime] | None = None,
) -> None:
    """Write an open attempt's station results (and with ``end``, its outcome and end)."""
    if end is None:
        done = _sql(session).execute(_SET_RESULTS, {"a": row.id, "r": results})
    else:
        params = {"a": row.id, "r": results, "o": end[0], "e": end[1]}
        done = _sql(session).execute(_END_ATTEMPT, params)
    _expect_one(done, f"attempt {row.id} is no longer in progress")


def mark_good(
    session: Session,
    attempt: Attempt | int,
    *,
    when: datetime,
    station: tuple[str, Mapping[str, Any] | None] | None = None,
    stations: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> None:
    """The card passed every check: job good, card consumed, chip reported used.

    ``station`` (name, detail), then each of ``stations``, appends a passed station's
    result in the same write (one read and one write of the attempt per card)."""
    row = _open_attempt(session, attempt)
    results = list(row.station_results)
    for name, detail in (*([station] if station is not None else []), *stations):
        results.append(_station_entry(name, True, when, detail))
    _set_results(session, row, results, end=(AttemptOutcome.GOOD, when))
    conn = _sql(session)
    _expect_one(
        conn.execute(_JOB_GOOD, {"j": row.job_id, "w": when}),
        f"card job {row.job_id} is not in progress",
    )
    conn.execute(_CARD_CONSUMED, {"c": row.stock_card_id})
    conn.execute(
        _NEW_USAGE,
        {
            "chip_serial": row.chip_serial,
            "state": ChipState.USED_GOOD,
            "batch_id": row.batch_id,
            "job_id": row.job_id,
            "attempt_id": row.id,
            "stock_card_id": row.stock_card_id,
            "reason": None,
            "recorded_at": when,
        },
    )
    session.expire_all()  # loaded rows of this card are stale now


def reject(
    session: Session,
    attempt: Attempt | int,
    *,
    station: str,
    reason: str,
    when: datetime,
    actor: str | None = None,
) -> RejectBinEntry:
    """The card failed: reject bin, chip spoiled, job pending again for a remake
    (or held once it has used the batch's ``max_attempts``)."""
    att = _attempt_for_update(session, attempt)
    if att.outcome is not AttemptOutcome.IN_PROGRESS:
        raise InvalidTransition(f"attempt {att.id} is {att.outcome.value}, not in progress")
    job = _job_for_update(session, att.job_id)
    batch = session.get(Batch, att.batch_id)
    assert batch is not None
    station, reason = station[:32], reason[:200]
    att.outcome = AttemptOutcome.REJECTED
    att.ended_at = when
    entry = RejectBinEntry(
        attempt_id=att.id, batch_id=att.batch_id, station=station, reason=reason, binned_at=when
    )
    session.add(entry)
    card = session.get(StockCard, att.stock_card_id, with_for_update=True, populate_existing=True)
    assert card is not None
    card.state = StockState.SPOILED
    session.add(
        ChipUsage(
            chip_serial=att.chip_serial,
            state=ChipState.SPOILED,
            batch_id=att.batch_id,
            job_id=job.id,
            attempt_id=att.id,
            stock_card_id=card.id,
            reason=f"{station}: {reason}"[:200],
            recorded_at=when,
        )
    )
    # A chip-bound data set cannot be remade on another chip: it is held (unused).
    held = job.bound_serial is not None or job.attempt_count >= batch.max_attempts
    job.move_to(JobState.HELD if held else JobState.PENDING)
    job.module_id = None
    job.claimed_at = None
    job.updated_at = when
    session.flush()
    _log(
        session,
        actor or f"module:{att.module_id}",
        "reject_card",
        f"job:{job.id}",
        when,
        result="held" if job.state is JobState.HELD else "remake",
        detail={"attempt": att.id, "chip": att.chip_serial, "station": station, "reason": reason},
    )
    return entry


def release_held(session: Session, job_id: int, *, by: Principal, when: datetime) -> CardJob:
    """A supervisor sends a held job back to pending (one more attempt)."""
    authorize(session, by, Action.RELEASE_JOB, f"job:{job_id}", when)
    job = _job_for_update(session, job_id)
    if job.state is not JobState.HELD:
        raise InvalidTransition(f"card job {job_id} is {job.state.value}, not held")
    job.move_to(JobState.PENDING)
    job.updated_at = when
    _log(session, by.name, "release_job", f"job:{job_id}", when)
    return job


def recover_in_flight(session: Session, batch_id: int, *, when: datetime, actor: str) -> Recovery:
    """After a crash: every open attempt is rejected ("interrupted") and remade, every
    job claimed without an attempt is pending again, every card claimed without an
    attempt is spoiled. Idempotent; assumes no line process works on the batch."""
    recovery = Recovery()
    open_ids = session.scalars(
        select(Attempt.id)
        .where(Attempt.batch_id == batch_id, Attempt.outcome == AttemptOutcome.IN_PROGRESS)
        .order_by(Attempt.id)
    ).all()
    for attempt_id in open_ids:
        att = _attempt_for_update(session, attempt_id)
        last = att.station_results[-1]["station"] if att.station_results else "unknown"
        reject(session, att, station=str(last), reason=INTERRUPTED, when=when, actor=actor)
        recovery.rejected_attempts.append(attempt_id)
    orphan_jobs = session.scalars(
        select(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state == JobState.IN_PROGRESS)
        .with_for_update()
    ).all()
    for job in orphan_jobs:
        job.move_to(JobState.PENDING)
        job.module_id = None
        job.claimed_at = None
        job.updated_at = when
        recovery.requeued_jobs.append(job.id)
    stray = session.scalars(
        select(StockCard)
        .where(
            StockCard.batch_id == batch_id,
            StockCard.state == StockState.CLAIMED,
            ~exists().where(Attempt.stock_card_id == StockCard.id),
        )
        .with_for_update()
    ).all()
    for card in stray:
        card.state = StockState.SPOILED
        session.add(
            ChipUsage(
                chip_serial=card.serial,
                state=ChipState.SPOILED,
                batch_id=batch_id,
                stock_card_id=card.id,
                reason=f"{INTERRUPTED}: claimed by {card.module_id}, never attempted",
                recorded_at=when,
            )
        )
        recovery.spoiled_cards.append(card.serial)
    session.flush()
    if recovery.rejected_attempts or recovery.requeued_jobs or recovery.spoiled_cards:
        _log(
            session,
            actor,
            "recover_in_flight",
            f"batch:{batch_id}",
            when,
            detail=recovery.as_detail(),
        )
    return recovery


# ---------------------------------------------------------------------------------
# Reading


def open_record(job: CardJob, cipher: FieldCipher) -> bytes:
    """The clear record of ``job`` (for data preparation on the line only)."""
    return cipher.open(job.record_blob, record_aad(job.batch_id, job.seq))


def find_jobs_by_pan(session: Session, cipher: FieldCipher, pan: str) -> list[CardJob]:
    """Every job (any batch) for this PAN, found by its keyed digest."""
    digest = pan_digest(cipher, pan)
    return list(
        session.scalars(select(CardJob).where(CardJob.pan_digest == digest).order_by(CardJob.id))
    )


def remake_chain(session: Session, job_id: int) -> list[Attempt]:
    """A job's attempts in order (each remake links to the attempt before it)."""
    return list(
        session.scalars(
            select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.attempt_no)
        )
    )


@dataclass(frozen=True)
class Progress:
    """Counts for one batch."""

    jobs: dict[JobState, int]
    attempts: dict[AttemptOutcome, int]
    chips_good: int
    chips_spoiled: int

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    @property
    def done(self) -> bool:
        return self.total > 0 and self.jobs[JobState.GOOD] == self.total


def progress(session: Session, batch_id: int) -> Progress:
    jobs = {s: 0 for s in JobState}
    for state, n in session.execute(
        select(CardJob.state, func.count())
        .where(CardJob.batch_id == batch_id)
        .group_by(CardJob.state)
    ):
        jobs[JobState(state)] = int(n)
    attempts = {o: 0 for o in AttemptOutcome}
    for outcome, n in session.execute(
        select(Attempt.outcome, func.count())
        .where(Attempt.batch_id == batch_id)
        .group_by(Attempt.outcome)
    ):
        attempts[AttemptOutcome(outcome)] = int(n)
    chips = {s: 0 for s in ChipState}
    for chip_state, n in session.execute(
        select(ChipUsage.state, func.count())
        .where(ChipUsage.batch_id == batch_id)
        .group_by(ChipUsage.state)
    ):
        chips[ChipState(chip_state)] = int(n)
    return Progress(jobs, attempts, chips[ChipState.USED_GOOD], chips[ChipState.SPOILED])


@dataclass(frozen=True)
class ChipReportRow:
    """One chip the line consumed for a batch (for the data owner's chip report)."""

    chip_serial: str
    state: ChipState
    record_ref: str | None
    seq: int | None
    attempt_no: int | None
    reason: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class UnusedSet:
    """A chip-bound data set that went into no chip (the issuer's list of unused sets)."""

    record_ref: str
    seq: int
    chip_serial: str
    reason: str


def unused_bound_sets(session: Session, batch_id: int) -> list[UnusedSet]:
    """Chip-bound jobs not made: their chip was spoiled, or never in stock."""
    jobs = session.execute(
        select(CardJob.record_ref, CardJob.seq, CardJob.bound_serial)
        .where(
            CardJob.batch_id == batch_id,
            CardJob.bound_serial.is_not(None),
            CardJob.state != JobState.GOOD,
        )
        .order_by(CardJob.seq)
    ).all()
    out: list[UnusedSet] = []
    for ref, seq, serial in jobs:
        assert serial is not None
        usage = session.execute(
            select(ChipUsage.state, ChipUsage.reason).where(ChipUsage.chip_serial == serial)
        ).first()
        if usage is not None and usage.state is ChipState.SPOILED:
            reason = f"chip spoiled: {usage.reason or ''}".strip()
        elif usage is None:
            reason = CHIP_UNAVAILABLE
        else:
            reason = "not made yet"
        out.append(UnusedSet(ref, seq, serial, reason[:200]))
    return out


def chip_report(session: Session, batch_id: int) -> list[ChipReportRow]:
    """Which chip carries which record, and which chips were spoiled (job order)."""
    rows = session.execute(
        select(
            ChipUsage.chip_serial,
            ChipUsage.state,
            CardJob.record_ref,
            CardJob.seq,
            Attempt.attempt_no,
            ChipUsage.reason,
            ChipUsage.recorded_at,
        )
        .outerjoin(CardJob, CardJob.id == ChipUsage.job_id)
        .outerjoin(Attempt, Attempt.id == ChipUsage.attempt_id)
        .where(ChipUsage.batch_id == batch_id)
        .order_by(CardJob.seq, Attempt.attempt_no, ChipUsage.id)
    ).all()
    return [ChipReportRow(*row) for row in rows]
