"""Initial schema: issuers, profiles, operators, batches, card jobs, stock, attempts,
reject bin, chip usage and the hash-chained audit log.

Kept in step with ``cardperso.production.models``; tests/production/test_schema.py
checks that a migrated database and the models show no difference on both backends.

The audit log is append-only in the database as well: triggers refuse UPDATE and
DELETE (and TRUNCATE on PostgreSQL). The hash chain still catches a change made by
someone who bypasses them.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
GENESIS = "0" * 64


def _state(length: int = 20) -> sa.String:
    return sa.String(length=length)


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=200), nullable=False),
        sa.Column("result", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("row_hash", name=op.f("uq_audit_log_row_hash")),
    )
    op.create_table(
        "issuers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issuers")),
        sa.UniqueConstraint("code", name=op.f("uq_issuers_code")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.LargeBinary(length=64), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scrypt_n", sa.Integer(), nullable=False),
        sa.Column("scrypt_r", sa.Integer(), nullable=False),
        sa.Column("scrypt_p", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.create_table(
        "profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("yaml_text", sa.Text(), nullable=False),
        sa.Column("yaml_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_profiles_code_version")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=True),
        sa.Column("state", _state(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('imported', 'running', 'paused', 'cancelled', 'done')",
            name=op.f("ck_batches_state"),
        ),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_batches_max_attempts")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_batches_created_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["issuers.id"], name=op.f("fk_batches_issuer_id_issuers")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_batches_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("issuer_id", "reference", name=op.f("uq_batches_issuer_id_reference")),
    )
    op.create_table(
        "operator_roles",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("role", _state(), nullable=False),
        sa.CheckConstraint(
            "role IN ('supervisor', 'operator', 'security_officer', 'auditor')",
            name=op.f("ck_operator_roles_role"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_roles_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", "role", name=op.f("pk_operator_roles")),
    )
    op.create_table(
        "card_jobs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("record_ref", sa.String(length=64), nullable=False),
        sa.Column("state", _state(), nullable=False),
        sa.Column("record_blob", sa.LargeBinary(), nullable=False),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("pan_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("module_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'in_progress', 'good', 'held', 'cancelled')",
            name=op.f("ck_card_jobs_state"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_card_jobs_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_jobs")),
        sa.UniqueConstraint(
            "batch_id", "pan_digest", name=op.f("uq_card_jobs_batch_id_pan_digest")
        ),
        sa.UniqueConstraint("batch_id", "seq", name=op.f("uq_card_jobs_batch_id_seq")),
    )
    op.create_index(
        op.f("ix_card_jobs_batch_id_state_seq"), "card_jobs", ["batch_id", "state", "seq"]
    )
    op.create_index(op.f("ix_card_jobs_pan_digest"), "card_jobs", ["pan_digest"])
    op.create_table(
        "stock_cards",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("kind", _state(), nullable=False),
        sa.Column("product", sa.String(length=32), nullable=True),
        sa.Column("lot", sa.String(length=64), nullable=True),
        sa.Column("state", _state(), nullable=False),
        sa.Column("module_id", sa.String(length=32), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('blank', 'pre_initialized')", name=op.f("ck_stock_cards_kind")
        ),
        sa.CheckConstraint(
            "state IN ('available', 'claimed', 'consumed', 'spoiled')",
            name=op.f("ck_stock_cards_state"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_stock_cards_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_cards")),
        sa.UniqueConstraint("serial", name=op.f("uq_stock_cards_serial")),
    )
    op.create_index(op.f("ix_stock_cards_state_kind_id"), "stock_cards", ["state", "kind", "id"])
    op.create_table(
        "attempts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("job_id", BIG_ID, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("stock_card_id", BIG_ID, nullable=False),
        sa.Column("chip_serial", sa.String(length=40), nullable=False),
        sa.Column("module_id", sa.String(length=32), nullable=False),
        sa.Column("remake_of_id", BIG_ID, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("station_results", sa.JSON(), nullable=False),
        sa.Column("outcome", _state(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('in_progress', 'good', 'rejected')", name=op.f("ck_attempts_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_attempts_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["card_jobs.id"], name=op.f("fk_attempts_job_id_card_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["remake_of_id"], ["attempts.id"], name=op.f("fk_attempts_remake_of_id_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["stock_card_id"],
            ["stock_cards.id"],
            name=op.f("fk_attempts_stock_card_id_stock_cards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("chip_serial", name=op.f("uq_attempts_chip_serial")),
        sa.UniqueConstraint("job_id", "attempt_no", name=op.f("uq_attempts_job_id_attempt_no")),
        sa.UniqueConstraint("remake_of_id", name=op.f("uq_attempts_remake_of_id")),
        sa.UniqueConstraint("stock_card_id", name=op.f("uq_attempts_stock_card_id")),
    )
    op.create_index(op.f("ix_attempts_batch_id_outcome"), "attempts", ["batch_id", "outcome"])
    for name, outcome in (
        ("uq_attempts_one_good_per_job", "good"),
        ("uq_attempts_one_open_per_job", "in_progress"),
    ):
        where = sa.text(f"outcome = '{outcome}'")
        op.create_index(
            name, "attempts", ["job_id"], unique=True, sqlite_where=where, postgresql_where=where
        )
    op.create_table(
        "chip_usage",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("chip_serial", sa.String(length=40), nullable=False),
        sa.Column("state", _state(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("job_id", BIG_ID, nullable=True),
        sa.Column("attempt_id", BIG_ID, nullable=True),
        sa.Column("stock_card_id", BIG_ID, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.CheckConstraint("state IN ('used_good', 'spoiled')", name=op.f("ck_chip_usage_state")),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_chip_usage_attempt_id_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_chip_usage_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["card_jobs.id"], name=op.f("fk_chip_usage_job_id_card_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["stock_card_id"],
            ["stock_cards.id"],
            name=op.f("fk_chip_usage_stock_card_id_stock_cards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chip_usage")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_chip_usage_attempt_id")),
        sa.UniqueConstraint("chip_serial", name=op.f("uq_chip_usage_chip_serial")),
        sa.UniqueConstraint("stock_card_id", name=op.f("uq_chip_usage_stock_card_id")),
    )
    op.create_index(op.f("ix_chip_usage_batch_id"), "chip_usage", ["batch_id"])
    op.create_table(
        "reject_bin",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("attempt_id", BIG_ID, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("binned_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_reject_bin_attempt_id_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_reject_bin_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reject_bin")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_reject_bin_attempt_id")),
    )
    op.create_index(op.f("ix_reject_bin_batch_id"), "reject_bin", ["batch_id"])

    op.execute(
        sa.text("INSERT INTO audit_head (id, seq, row_hash) VALUES (1, 0, :genesis)").bindparams(
            genesis=GENESIS
        )
    )
    _create_audit_guards()


def _create_audit_guards() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def _drop_audit_guards() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def downgrade() -> None:
    _drop_audit_guards()
    for table in (
        "reject_bin",
        "chip_usage",
        "attempts",
        "stock_cards",
        "card_jobs",
        "operator_roles",
        "batches",
        "profiles",
        "operators",
        "issuers",
        "audit_log",
        "audit_head",
    ):
        op.drop_table(table)
