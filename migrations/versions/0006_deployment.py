"""deployment records (deploy-backend flow)

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-27 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'deployment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('flow_run_id', sa.Uuid(), nullable=True),
        sa.Column('service_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('commit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('image_url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column('render_deploy_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('previous_deploy_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True,
                  comment='the deploy that was live before'),
        sa.Column('rollback_deploy_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                  comment='started | live | failed | rolled_back | rollback_failed | refused'),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('backup_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('gates', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('release_notes', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_deployment_flow_run_id'), 'deployment', ['flow_run_id'], unique=False)
    op.create_index(op.f('ix_deployment_status'), 'deployment', ['status'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deployment_status'), table_name='deployment')
    op.drop_index(op.f('ix_deployment_flow_run_id'), table_name='deployment')
    op.drop_table('deployment')
