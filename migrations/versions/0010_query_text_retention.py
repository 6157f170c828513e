"""query text kept for a while: query_log.question, and an index of the rows that still hold it

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 16:10:00.000000

The question (or search query) is stored with its query_log row so the content-gaps report can read the
week's unanswered questions; the purge-personal-data flow clears it after QUERY_TEXT_RETENTION_DAYS, and
DELETE /v1/sessions/{id} clears it at once. The partial index holds only rows whose text is still there,
so the daily purge finds its batches without walking the rows it already cleared.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('query_log', sa.Column('question', sa.Text(), nullable=True,
                                         comment='as asked; cleared after QUERY_TEXT_RETENTION_DAYS or on erasure'))
    op.create_index('ix_query_log_question_kept_created_at', 'query_log', ['created_at'], unique=False,
                    postgresql_where=sa.text('question IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_query_log_question_kept_created_at', table_name='query_log',
                  postgresql_where=sa.text('question IS NOT NULL'))
    op.drop_column('query_log', 'question')
