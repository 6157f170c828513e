"""rate limit counters

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-27 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Unlogged: counters need no WAL (a crash resets them, which only forgives a minute of requests).
    op.create_table('rate_limit_counter',
    sa.Column('bucket', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False, comment='key:<id> | addr:<address>'),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'window_start'),
    prefixes=['UNLOGGED'],
    )


def downgrade() -> None:
    op.drop_table('rate_limit_counter')
