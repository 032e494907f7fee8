"""The initialization room: the ``init_operator`` role and the profile version of
initialized stock.

* ``operator_roles.role`` may now be ``init_operator`` (the CHECK constraint is
  replaced; SQLite rebuilds the small table in batch mode);
* ``stock_cards.profile_version``: the profile version a card was initialized for
  in the initialization room (NULL for stock booked as delivered).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_ROLES = ("supervisor", "operator", "security_officer", "auditor")
_NEW_ROLES = (*_OLD_ROLES, "init_operator")


def _roles(values: tuple[str, ...]) -> str:
    return f"role IN ({', '.join(repr(v) for v in values)})"


def _replace_role_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("operator_roles", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_operator_roles_role"), type_="check")
        batch.create_check_constraint(op.f("ck_operator_roles_role"), _roles(values))


def upgrade() -> None:
    _replace_role_check(_NEW_ROLES)
    with op.batch_alter_table("stock_cards") as batch:
        batch.add_column(sa.Column("profile_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stock_cards") as batch:
        batch.drop_column("profile_version")
    op.execute("DELETE FROM operator_roles WHERE role = 'init_operator'")
    _replace_role_check(_OLD_ROLES)
