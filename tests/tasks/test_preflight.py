"""The deploy preflight's offline SQL (tasks/preflight.py) on the project's own migrations: a database at 0004 lacks
the parallel revisions 0005-0008, their merge 0009 and everything after; each statement is rendered once, under
the revision that makes it, and the merge renders nothing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest

from app.core.db import MIGRATIONS_DIR, migrate
from tasks.preflight import pending_offline_sql
from tests.conftest import APP_PASSWORD, database_url

PARALLEL = {"0005", "0006", "0007", "0008"}


@pytest.fixture
def database_at_0004(pg_cluster) -> Iterator[str]:
    pg_cluster.drop_database("preflight_check")
    pg_cluster.ensure_database(dbname="preflight_check", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "preflight_check")
    migrate(url, "0004")
    yield url
    pg_cluster.drop_database("preflight_check")


def schema_statements(sql: str) -> list[str]:
    """The statements of an offline script that change the schema (not alembic's own bookkeeping)."""
    text = re.sub(r"--[^\n]*", "", sql)
    return [re.sub(r"\s+", " ", s).strip() for s in text.split(";")
            if s.strip() and "alembic_version" not in s and s.strip().upper() not in ("BEGIN", "COMMIT")]


def test_the_merge_revision_does_not_repeat_its_parents_ddl(database_at_0004):
    pending, unknown = pending_offline_sql(MIGRATIONS_DIR, database_at_0004)
    order = list(pending)
    assert unknown == []
    after_the_merge = sorted(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("0*.py") if p.name[:4] > "0009")
    assert set(order[:4]) == PARALLEL and order[4] == "0009" and order[5:] == after_the_merge
    assert schema_statements(pending["0009"]) == [], "a merge carries no DDL of its own"
    for revision in PARALLEL:
        assert schema_statements(pending[revision]), f"{revision} renders its own DDL"
    rendered = Counter(s for sql in pending.values() for s in schema_statements(sql))
    assert [s for s, n in rendered.items() if n > 1] == [], "a statement rendered under two revisions"
    assert any("CREATE TABLE deployment" in s for s in schema_statements(pending["0006"]))
