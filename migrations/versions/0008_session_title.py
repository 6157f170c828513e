"""session title

Revision ID: 0008
Revises: 0004
Create Date: 2026-11-27 07:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('chat_session', sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True,
                                            comment='from the first question'))


def downgrade() -> None:
    op.drop_column('chat_session', 'title')
