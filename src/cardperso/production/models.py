"""The production database schema: SQLAlchemy 2 typed declarative models.

One file, one idea: the tables and the two state machines that live in them (the
batch and the card job). Everything else (transactions, claims, the audit chain,
operators) is in the sibling modules and reaches the rows through these classes.

Portability rules, so one schema runs unchanged on SQLite and PostgreSQL and the
Alembic migration can be compared against it:

* states are short strings guarded by CHECK constraints (no native ENUM types);
* times are ``timestamptz`` on PostgreSQL and UTC text on SQLite, always returned
  as aware UTC datetimes (:class:`UtcDateTime`);
* big surrogate keys are BIGINT on PostgreSQL and INTEGER (the rowid) on SQLite;
* "at most one" rules that depend on a state are partial unique indexes, which
  both backends support (``WHERE outcome = 'good'``).

Cardholder data never appears in clear: :attr:`CardJob.record_blob` is sealed by a
:class:`~cardperso.production.crypto_fields.FieldCipher`, the PAN is kept only
masked (first 6 / last 4) and as a keyed digest for duplicate detection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cardperso.errors import CardpersoError

__all__ = [
    "BATCH_TRANSITIONS",
    "JOB_TRANSITIONS",
    "Attempt",
    "AttemptOutcome",
    "AuditHead",
    "AuditLog",
    "Base",
    "Batch",
    "BatchState",
    "CardJob",
    "ChipState",
    "ChipUsage",
    "InvalidTransition",
    "Issuer",
    "JobState",
    "Operator",
    "OperatorRole",
    "Profile",
    "RejectBinEntry",
    "Role",
    "StockCard",
    "StockKind",
    "StockState",
    "UtcDateTime",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SERIAL_LEN = 40
"""Chip serials are upper-case hex; 40 characters leaves room beyond 8-byte serials."""

# ---------------------------------------------------------------------------------
# States


class BatchState(StrEnum):
    IMPORTED = "imported"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class JobState(StrEnum):
    """A card job's state. A rejected card sends its job straight back to PENDING
    (the remake), or to HELD once the batch's attempt limit is reached."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    GOOD = "good"
    HELD = "held"
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    IN_PROGRESS = "in_progress"
    GOOD = "good"
    REJECTED = "rejected"


class ChipState(StrEnum):
    USED_GOOD = "used_good"
    SPOILED = "spoiled"


class StockKind(StrEnum):
    BLANK = "blank"
    PRE_INITIALIZED = "pre_initialized"


class StockState(StrEnum):
    AVAILABLE = "available"
    CLAIMED = "claimed"
    CONSUMED = "consumed"
    SPOILED = "spoiled"


class Role(StrEnum):
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    SECURITY_OFFICER = "security_officer"
    AUDITOR = "auditor"
    INIT_OPERATOR = "init_operator"
    """Runs the initialization room (blank stock in, pre-initialized stock out) and
    nothing else: no batch, so never personalization data (the chapter's separate
    rooms)."""


BATCH_TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.IMPORTED: frozenset({BatchState.RUNNING, BatchState.CANCELLED}),
    # RUNNING -> RUNNING is the resume after a crash (the row still says running).
    BatchState.RUNNING: frozenset(
        {BatchState.RUNNING, BatchState.PAUSED, BatchState.DONE, BatchState.CANCELLED}
    ),
    BatchState.PAUSED: frozenset({BatchState.RUNNING, BatchState.CANCELLED}),
    BatchState.CANCELLED: frozenset(),
    BatchState.DONE: frozenset(),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # pending -> held: a chip-bound job whose chip is not in stock (never made)
    JobState.PENDING: frozenset({JobState.IN_PROGRESS, JobState.CANCELLED, JobState.HELD}),
    # in_progress -> pending is "rejected, remake"; -> held is "rejected, limit reached"
    JobState.IN_PROGRESS: frozenset({JobState.GOOD, JobState.PENDING, JobState.HELD}),
    JobState.HELD: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.GOOD: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(CardpersoError):
    """A state change the state machine does not allow (names the object, never data)."""

    exit_code = 6


def _check_in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


# ---------------------------------------------------------------------------------
# Portable column types

_E = TypeVar("_E", bound=StrEnum)


class EnumText(TypeDecorator[_E]):
    """A :class:`StrEnum` stored as its string value in a VARCHAR (CHECK-guarded)."""

    impl = String
    cache_ok = True

    def __init__(self, enum_cls: type[_E], length: int = 20) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_cls(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> _E | None:
        return None if value is None else self.enum_cls(value)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware datetimes")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer(), "sqlite")
"""BIGINT surrogate keys; INTEGER on SQLite so the key is the rowid (autoincrement)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# ---------------------------------------------------------------------------------
# Reference data


class Issuer(Base):
    __tablename__ = "issuers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Profile(Base):
    """One version of a card product profile, kept verbatim (YAML) with its digest."""

    __tablename__ = "profiles"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    yaml_text: Mapped[str] = mapped_column(Text)
    yaml_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Operator(Base):
    """A person allowed near the line. The password is kept only as an scrypt hash."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    scrypt_n: Mapped[int] = mapped_column(Integer)
    scrypt_r: Mapped[int] = mapped_column(Integer)
    scrypt_p: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    roles: Mapped[list[OperatorRole]] = relationship(
        back_populates="operator", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)

    def __repr__(self) -> str:
        return f"Operator(id={self.id!r}, name={self.name!r})"


class OperatorRole(Base):
    __tablename__ = "operator_roles"
    __table_args__ = (CheckConstraint(_check_in("role", Role), name="role"),)

    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[Role] = mapped_column(EnumText(Role), primary_key=True)

    operator: Mapped[Operator] = relationship(back_populates="roles")


# ---------------------------------------------------------------------------------
# Batches and card jobs


class Batch(Base):
    """One issuer file: accepted whole (all its jobs) or not at all."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("issuer_id", "reference"),
        CheckConstraint(_check_in("state", BatchState), name="state"),
        CheckConstraint("max_attempts >= 1", name="max_attempts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("issuers.id"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"))
    reference: Mapped[str] = mapped_column(String(100))
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[BatchState] = mapped_column(EnumText(BatchState))
    record_count: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    issuer: Mapped[Issuer] = relationship()
    profile: Mapped[Profile] = relationship()

    def move_to(self, new: BatchState) -> None:
        if new not in BATCH_TRANSITIONS[self.state]:
            raise InvalidTransition(f"batch {self.id}: {self.state.value} -> {new.value}")
        self.state = new

    def __repr__(self) -> str:
        return f"Batch(id={self.id!r}, reference={self.reference!r}, state={self.state!r})"


class CardJob(Base):
    """One issuer record, to be bound to exactly one good chip."""

    __tablename__ = "card_jobs"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq"),
        UniqueConstraint("batch_id", "pan_digest"),
        CheckConstraint(_check_in("state", JobState), name="state"),
        Index(None, "batch_id", "state", "seq"),
        Index(None, "pan_digest"),
        Index(None, "bound_serial"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    seq: Mapped[int] = mapped_column(Integer)
    """Production order within the batch (postal presort order)."""
    record_ref: Mapped[str] = mapped_column(String(64))
    """The issuer's record reference (record number or id); never cardholder data."""
    state: Mapped[JobState] = mapped_column(EnumText(JobState))
    record_blob: Mapped[bytes] = mapped_column(LargeBinary)
    """The cardholder record, sealed (AEAD) by a FieldCipher; AAD names batch and seq."""
    pan_masked: Mapped[str] = mapped_column(String(19))
    pan_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    """Keyed digest of the PAN (duplicate detection without the clear PAN)."""
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    module_id: Mapped[str | None] = mapped_column(String(32))
    """The module that holds the job while it is in progress."""
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    bound_serial: Mapped[str | None] = mapped_column(String(SERIAL_LEN))
    """A chip-bound data set: the only chip this record may go into (None: any)."""

    batch: Mapped[Batch] = relationship()
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="job", order_by="Attempt.attempt_no", foreign_keys="Attempt.job_id"
    )

    def move_to(self, new: JobState) -> None:
        if new not in JOB_TRANSITIONS[self.state]:
            raise InvalidTransition(f"card job {self.id}: {self.state.value} -> {new.value}")
        self.state = new

    def __repr__(self) -> str:
        return f"CardJob(id={self.id!r}, seq={self.seq!r}, state={self.state!r})"


class StockCard(Base):
    """A physical card in the feeder stock, identified by its unique chip serial."""

    __tablename__ = "stock_cards"
    __table_args__ = (
        CheckConstraint(_check_in("kind", StockKind), name="kind"),
        CheckConstraint(_check_in("state", StockState), name="state"),
        Index(None, "state", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    serial: Mapped[str] = mapped_column(String(SERIAL_LEN), unique=True)
    kind: Mapped[StockKind] = mapped_column(EnumText(StockKind))
    product: Mapped[str | None] = mapped_column(String(32))
    """For pre-initialized stock: the product (profile code) it was initialized for."""
    profile_version: Mapped[int | None] = mapped_column(Integer)
    """For stock initialized in the initialization room: the profile version."""
    lot: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[StockState] = mapped_column(EnumText(StockState))
    module_id: Mapped[str | None] = mapped_column(String(32))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def __repr__(self) -> str:
        return f"StockCard(id={self.id!r}, serial={self.serial!r}, state={self.state!r})"


class Attempt(Base):
    """One physical card tried for a job."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt_no"),
        CheckConstraint(_check_in("outcome", AttemptOutcome), name="outcome"),
        Index(None, "batch_id", "outcome"),
        Index(
            "uq_attempts_one_good_per_job",
            "job_id",
            unique=True,
            sqlite_where=text("outcome = 'good'"),
            postgresql_where=text("outcome = 'good'"),
        ),
        Index(
            "uq_attempts_one_open_per_job",
            "job_id",
            unique=True,
            sqlite_where=text("outcome = 'in_progress'"),
            postgresql_where=text("outcome = 'in_progress'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("card_jobs.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    stock_card_id: Mapped[int] = mapped_column(ForeignKey("stock_cards.id"), unique=True)
    chip_serial: Mapped[str] = mapped_column(String(SERIAL_LEN), unique=True)
    module_id: Mapped[str] = mapped_column(String(32))
    remake_of_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"), unique=True)
    """The rejected attempt this one remakes (None for a job's first attempt)."""
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    station_results: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outcome: Mapped[AttemptOutcome] = mapped_column(EnumText(AttemptOutcome))

    job: Mapped[CardJob] = relationship(back_populates="attempts", foreign_keys=[job_id])
    stock_card: Mapped[StockCard] = relationship()
    remake_of: Mapped[Attempt | None] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return (
            f"Attempt(id={self.id!r}, job_id={self.job_id!r}, no={self.attempt_no!r}, "
            f"chip={self.chip_serial!r}, outcome={self.outcome!r})"
        )


class RejectBinEntry(Base):
    """A card set aside: which attempt, at which station, why."""

    __tablename__ = "reject_bin"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    station: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200))
    binned_at: Mapped[datetime] = mapped_column(UtcDateTime())

    attempt: Mapped[Attempt] = relationship()


class ChipUsage(Base):
    """The chip report: every chip serial the line consumed, good or spoiled, once."""

    __tablename__ = "chip_usage"
    __table_args__ = (CheckConstraint(_check_in("state", ChipState), name="state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chip_serial: Mapped[str] = mapped_column(String(SERIAL_LEN), unique=True)
    state: Mapped[ChipState] = mapped_column(EnumText(ChipState))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("card_jobs.id"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"), unique=True)
    stock_card_id: Mapped[int | None] = mapped_column(ForeignKey("stock_cards.id"), unique=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


# ---------------------------------------------------------------------------------
# Audit


class AuditLog(Base):
    """Append-only, hash-chained audit record (see :mod:`cardperso.production.audit`).

    ``ts`` and ``detail`` are stored as the exact text that was hashed, so the chain
    verifies byte for byte on every backend.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The single row naming the chain's last record; locked to serialize appends."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
