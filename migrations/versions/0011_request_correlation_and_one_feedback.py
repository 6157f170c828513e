"""query_log.correlation_id (the client's X-Request-ID, no longer the key); one feedback per request (the last)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 16:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('query_log', sa.Column('correlation_id', sa.Uuid(), nullable=True,
                                         comment="the client's X-Request-ID, if it sent one"))
    op.create_index(op.f('ix_query_log_correlation_id'), 'query_log', ['correlation_id'], unique=False)
    # Keep the last feedback of each request, then let the database hold it to one.
    op.execute("DELETE FROM feedback f USING feedback newer WHERE newer.request_id = f.request_id AND newer.id > f.id")
    op.drop_index(op.f('ix_feedback_request_id'), table_name='feedback')
    op.create_unique_constraint('feedback_request_id_key', 'feedback', ['request_id'])


def downgrade() -> None:
    op.drop_constraint('feedback_request_id_key', 'feedback', type_='unique')
    op.create_index(op.f('ix_feedback_request_id'), 'feedback', ['request_id'], unique=False)
    op.drop_index(op.f('ix_query_log_correlation_id'), table_name='query_log')
    op.drop_column('query_log', 'correlation_id')
