"""Chip-bound data sets: ``card_jobs.bound_serial`` names the only chip a record may
go into (issue file field with meaning ``chip_serial``); NULL for any chip.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("card_jobs") as batch:
        batch.add_column(sa.Column("bound_serial", sa.String(40), nullable=True))
        batch.create_index(op.f("ix_card_jobs_bound_serial"), ["bound_serial"])


def downgrade() -> None:
    with op.batch_alter_table("card_jobs") as batch:
        batch.drop_index(op.f("ix_card_jobs_bound_serial"))
        batch.drop_column("bound_serial")
