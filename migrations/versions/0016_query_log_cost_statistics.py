"""query_log: extended statistics on the cost report's grouping (session, UTC day, model, embedding model)

The cost report sums the month per (session, UTC day, model, embedding model). Without these statistics the planner
takes every timestamp for its own day, expects a million groups, and aggregates in one process; with them it knows
the month has a few hundred (session-less) groups and aggregates in parallel workers. The day expression must stay
the one tasks/costs.py groups by. Statistics objects have no SQLModel counterpart (nothing to drift).

Revision ID: 0016
Revises: 0014
Create Date: 2026-11-28 22:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE STATISTICS query_log_cost_groups (ndistinct) ON session_id, "
               "(date_bin('1 day', created_at, '2000-01-01 00:00:00+00'::timestamptz)), model, embedding_model "
               "FROM query_log")
    op.execute("ANALYZE query_log")


def downgrade() -> None:
    op.execute("DROP STATISTICS IF EXISTS query_log_cost_groups")
