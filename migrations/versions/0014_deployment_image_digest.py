"""deployment: the image digest deployed, and the one a rollback redeploys

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('deployment', sa.Column('image_digest', sqlmodel.sql.sqltypes.AutoString(length=71), nullable=True,
                                          comment='sha256:... of the image deployed'))
    op.add_column('deployment', sa.Column('previous_image_digest', sqlmodel.sql.sqltypes.AutoString(length=71),
                                          nullable=True, comment='the digest a rollback redeploys'))
    op.create_index(op.f('ix_deployment_image_digest'), 'deployment', ['image_digest'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deployment_image_digest'), table_name='deployment')
    op.drop_column('deployment', 'previous_image_digest')
    op.drop_column('deployment', 'image_digest')
