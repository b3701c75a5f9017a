"""md5 and blake2b-256 of a file are optional

Packhouse verifies and publishes SHA-256. md5 and blake2b-256 are computed only to verify a
form that did not send a sha256_digest ahead of the file (see app/services/form.py), so files
uploaded with a SHA-256, and files imported from a folder, have none.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.alter_column("md5", existing_type=sa.String(length=32), nullable=True)
        batch.alter_column("blake2_256", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # Rows without them get empty strings: the columns were NOT NULL before.
    op.execute("UPDATE files SET md5 = '' WHERE md5 IS NULL")
    op.execute("UPDATE files SET blake2_256 = '' WHERE blake2_256 IS NULL")
    with op.batch_alter_table("files") as batch:
        batch.alter_column("md5", existing_type=sa.String(length=32), nullable=False)
        batch.alter_column("blake2_256", existing_type=sa.String(length=64), nullable=False)
