"""merge the feature branches 0005-0008 into one head

Revision ID: 0009
Revises: 0005, 0006, 0007, 0008
Create Date: 2026-11-28 16:00:00.000000

0005-0008 were written in parallel, each revising 0004. `alembic upgrade head` refuses more than one
head, so this revision joins them; it changes no schema. New revisions revise the newest one in a line.
"""

from collections.abc import Sequence

revision: str = '0009'
down_revision: str | Sequence[str] | None = ('0005', '0006', '0007', '0008')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
