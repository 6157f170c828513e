"""probe result

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 07:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('probe_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Uuid(), nullable=False, comment='the checks of one probe run share it'),
    sa.Column('flow_run_id', sa.Uuid(), nullable=True),
    sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('check_name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False, comment='health | ready | canary'),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_probe_result_checked_at'), 'probe_result', ['checked_at'], unique=False)
    op.create_index(op.f('ix_probe_result_round_id'), 'probe_result', ['round_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_probe_result_round_id'), table_name='probe_result')
    op.drop_index(op.f('ix_probe_result_checked_at'), table_name='probe_result')
    op.drop_table('probe_result')
