"""PEP 792 project status markers

A project's status (archived, quarantined, deprecated; none is active) and its optional reason,
set by ``packhouse status`` or ``PUT /api/projects/<project>/status``. Both columns are nullable,
so existing projects stay active.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("status_reason")
        batch.drop_column("status")
