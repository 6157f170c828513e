"""game day

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('game_day',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scenario', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('environment', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
              comment='automatic | practice (a person runs the steps)'),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False, comment='running | passed | failed'),
    sa.Column('flow_run_id', sa.Uuid(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('inject_seconds', sa.Float(), nullable=True),
    sa.Column('detect_seconds', sa.Float(), nullable=True, comment='fault injected -> alert at Alertmanager'),
    sa.Column('mitigate_seconds', sa.Float(), nullable=True, comment='alert -> runbook steps done'),
    sa.Column('recover_seconds', sa.Float(), nullable=True, comment='steps done -> probe green, alert resolved'),
    sa.Column('mttr_seconds', sa.Float(), nullable=True, comment='fault injected -> recovered'),
    sa.Column('detected_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('steps', postgresql.JSONB(astext_type=sa.Text()), nullable=False,
              comment='each runbook step: command, exit code, seconds'),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_game_day_scenario'), 'game_day', ['scenario'], unique=False)
    op.create_index(op.f('ix_game_day_started_at'), 'game_day', ['started_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_game_day_started_at'), table_name='game_day')
    op.drop_index(op.f('ix_game_day_scenario'), table_name='game_day')
    op.drop_table('game_day')
