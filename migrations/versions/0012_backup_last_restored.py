"""backup_catalog.last_restored_at: retention never prunes a backup a restore used recently

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 16:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('backup_catalog', sa.Column('last_restored_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('backup_catalog', 'last_restored_at')
