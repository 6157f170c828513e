"""purge-personal-data on a real Postgres: what is past its retention goes, the numbers stay, costs do not move."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app.core.db import migrate
from flows.cost_report import cost_report
from flows.purge_personal_data import purge_personal_data
from tests.conftest import APP_PASSWORD, database_url
from tests.flows.test_synthetic_probe import pushed, pushgateway  # noqa: F401  (fixture)
from tests.support.artifacts import latest_artifact

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime(2024, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def readers_db(pg_cluster, settings_env):
    pg_cluster.drop_database("readers")
    pg_cluster.ensure_database(dbname="readers", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "readers")
    migrate(url)
    settings_env({"DATABASE_URL": url, "PURGE_BATCH_ROWS": "100"})
    yield url.replace("+psycopg", "")


def add_turn(conn, *, at: datetime, session_id: uuid.UUID | None, question: str, comment: str | None = None,
             model: str = "gpt-4o-mini", tokens: tuple[int, int, int] = (1200, 300, 20)) -> uuid.UUID:
    request_id = uuid.uuid4()
    if session_id is not None:
        conn.execute("INSERT INTO chat_session (id, locale, created_at, last_active_at, title) VALUES (%s, 'en', %s, %s, "
                     "%s) ON CONFLICT (id) DO UPDATE SET last_active_at = excluded.last_active_at",
                     (session_id, at, at, question[:60]))
        for role, content in (("user", question), ("assistant", "an answer [1]")):
            conn.execute("INSERT INTO message (session_id, request_id, role, content, sources, created_at) "
                         "VALUES (%s, %s, %s, %s, '[]', %s)", (session_id, request_id, role, content, at))
    prompt, completion, embedding = tokens
    conn.execute(
        "INSERT INTO query_log (request_id, session_id, endpoint, locale, prompt_tokens, completion_tokens, "
        "embedding_tokens, model, embedding_model, cost_usd, status, question, created_at) "
        "VALUES (%s, %s, 'chat', 'en', %s, %s, %s, %s, 'text-embedding-3-small', 0, 'ok', %s, %s)",
        (request_id, session_id, prompt, completion, embedding, model, question, at))
    if comment is not None:
        conn.execute("INSERT INTO feedback (request_id, rating, comment, created_at) VALUES (%s, -1, %s, %s)",
                     (request_id, comment, at))
    return request_id


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            "query_log": conn.execute("SELECT count(*) FROM query_log").fetchone()[0],
            "questions": conn.execute("SELECT count(*) FROM query_log WHERE question IS NOT NULL").fetchone()[0],
            "sessions": conn.execute("SELECT count(*) FROM chat_session").fetchone()[0],
            "messages": conn.execute("SELECT count(*) FROM message").fetchone()[0],
            "feedback": conn.execute("SELECT count(*) FROM feedback").fetchone()[0],
            "comments": conn.execute("SELECT count(*) FROM feedback WHERE comment IS NOT NULL").fetchone()[0],
        }


def test_each_kind_goes_at_its_own_retention_and_nothing_younger(readers_db):
    old_session, kept_session, recent_session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(readers_db) as conn:
        # 250 search-like rows 31 days old: three batches of at most 100.
        for i in range(250):
            add_turn(conn, at=NOW - timedelta(days=31, minutes=i), session_id=None, question=f"old query {i}")
        add_turn(conn, at=NOW - timedelta(days=29), session_id=None, question="a question 29 days old")
        add_turn(conn, at=NOW - timedelta(days=91), session_id=old_session, question="idle 91 days", comment="old note")
        add_turn(conn, at=NOW - timedelta(days=89), session_id=kept_session, question="idle 89 days", comment="kept?")
        add_turn(conn, at=NOW - timedelta(days=1), session_id=recent_session, question="yesterday", comment="fresh")
    before = counts(readers_db)

    result = purge_personal_data(as_of=NOW.isoformat())

    assert (result["questions_cleared"], result["sessions_deleted"], result["comments_cleared"]) == (252, 1, 1)
    after = counts(readers_db)
    assert after == {**before, "questions": 2, "sessions": 2, "messages": 4, "comments": 2}
    with psycopg.connect(readers_db) as conn:
        kept = {q for (q,) in conn.execute("SELECT question FROM query_log WHERE question IS NOT NULL")}
        comments = {c for (c,) in conn.execute("SELECT comment FROM feedback WHERE comment IS NOT NULL")}
        sessions = {s for (s,) in conn.execute("SELECT id FROM chat_session")}
    assert kept == {"a question 29 days old", "yesterday"}
    assert comments == {"kept?", "fresh"} and sessions == {kept_session, recent_session}
    assert result["batches"] == 3 + 1 + 1
    report = latest_artifact("purge-personal-data").data
    assert "| question text in query_log | 2024-10-16T12:00:00+00:00 | 252 | 3 |" in report
    assert "| idle conversations | 2024-08-17T12:00:00+00:00 | 1 | 1 |" in report


def test_a_second_run_finds_nothing_to_do(readers_db):
    with psycopg.connect(readers_db) as conn:
        add_turn(conn, at=NOW - timedelta(days=100), session_id=uuid.uuid4(), question="old", comment="old")
    first = purge_personal_data(as_of=NOW.isoformat())
    state = counts(readers_db)
    second = purge_personal_data(as_of=NOW.isoformat())
    assert (first["questions_cleared"], first["sessions_deleted"], first["comments_cleared"]) == (1, 1, 1)
    assert (second["questions_cleared"], second["sessions_deleted"], second["comments_cleared"]) == (0, 0, 0)
    assert counts(readers_db) == state


def test_cost_report_over_a_purged_month_gives_the_same_totals(readers_db):
    sessions = [uuid.uuid4() for _ in range(5)]
    with psycopg.connect(readers_db) as conn:
        for day in range(1, 32):
            for n, session in enumerate(sessions):
                add_turn(conn, at=datetime(2024, 10, day, 8 + n, tzinfo=UTC), session_id=session if n % 2 else None,
                         question=f"question {day}-{n}", comment="why?" if n == 3 else None,
                         model=("gpt-4o", "gpt-4o-mini", "extractive")[n % 3],
                         tokens=(1000 + 17 * day * n, 200 + n, 15 + day))
    before = cost_report(as_of="2024-10-31")
    with psycopg.connect(readers_db) as conn:
        daily_before = conn.execute("SELECT * FROM cost_daily ORDER BY day").fetchall()

    purged = purge_personal_data(as_of="2025-03-01T00:00:00+00:00")
    assert purged["questions_cleared"] == 31 * 5 and purged["sessions_deleted"] == 2
    assert purged["comments_cleared"] == 31
    after = cost_report(as_of="2024-10-31")

    with psycopg.connect(readers_db) as conn:
        daily_after = conn.execute("SELECT * FROM cost_daily ORDER BY day").fetchall()
    assert before["queries"] == after["queries"] == 155
    assert {k: v for k, v in after.items()} == before
    # computed_at (last column) is when the row was written; every figure is the same.
    assert [row[:-1] for row in daily_after] == [row[:-1] for row in daily_before]


def test_counts_and_timing_reach_the_pushgateway(readers_db, pushgateway):  # noqa: F811
    with psycopg.connect(readers_db) as conn:
        add_turn(conn, at=NOW - timedelta(days=40), session_id=None, question="old")
    purge_personal_data(as_of=NOW.isoformat())
    metrics = pushed(pushgateway)
    job = frozenset({("job", "purge_personal_data"), ("instance", "")})
    assert metrics[("personal_data_purge_rows", job)] == 1.0
    assert metrics[("personal_data_purge_last_success_timestamp_seconds", job)] > NOW.timestamp()
