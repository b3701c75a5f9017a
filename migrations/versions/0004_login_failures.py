"""Failed logins in the database

Wrong passwords were counted in each worker process; kept here, every worker and replica counts
the same ones (app/auth/throttle.py). Rows older than the failed-login window are deleted as new
ones come.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("failed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_pair", "login_failures", ["client", "username", "failed_at"])
    op.create_index(op.f("ix_login_failures_failed_at"), "login_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_table("login_failures")
