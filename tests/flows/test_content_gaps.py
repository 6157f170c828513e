"""content-gaps on a seeded week of traffic (real Postgres, the service's model, its search over HTTP, a real
Pushgateway): the topics the book lacks come out, and the traffic figures add up."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app.core.db import migrate
from flows.content_gaps import content_gaps
from tests.conftest import APP_PASSWORD, database_url
from tests.flows.test_synthetic_probe import pushed, pushgateway, service_url  # noqa: F401  (fixtures)
from tests.support.artifacts import latest_artifact
from tests.support.seeded_week import ANSWERED, ARDUINO, ONE_OFFS, PRINTING_3D
from tests.support.webhook import webhook_receiver

pytestmark = pytest.mark.usefixtures("prefect_harness")
WEEK_END = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday: the week is 16-22 November


def add_request(conn, *, at: datetime, question: str, locale: str, status: str, rating: int | None = None,
                cited: tuple[str, str, str] | None = None) -> None:
    session_id, request_id = uuid.uuid4(), uuid.uuid4()
    conn.execute("INSERT INTO chat_session (id, locale, created_at, last_active_at) VALUES (%s, %s, %s, %s)",
                 (session_id, locale, at, at))
    sources = [{"url": cited[0], "title": cited[1], "heading": cited[2], "snippet": "", "score": 0.5}] if cited else []
    conn.execute("INSERT INTO message (session_id, request_id, role, content, sources, created_at) VALUES "
                 "(%s, %s, 'user', %s, '[]', %s), (%s, %s, 'assistant', 'an answer', %s, %s)",
                 (session_id, request_id, question, at, session_id, request_id, json.dumps(sources), at))
    conn.execute("INSERT INTO query_log (request_id, session_id, endpoint, locale, prompt_tokens, completion_tokens, "
                 "embedding_tokens, cost_usd, status, question, created_at) "
                 "VALUES (%s, %s, 'chat_stream', %s, 0, 0, 12, 0, %s, %s, %s)",
                 (request_id, session_id, locale, status, question, at))
    if rating is not None:
        conn.execute("INSERT INTO feedback (request_id, rating, created_at) VALUES (%s, %s, %s)", (request_id, rating, at))


@pytest.fixture
def seeded_week(pg_cluster, settings_env):
    pg_cluster.drop_database("gaps")
    pg_cluster.ensure_database(dbname="gaps", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "gaps")
    migrate(url)
    start = WEEK_END - timedelta(days=7)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for i, question in enumerate(ARDUINO):  # a sixth of them from readers of the Urdu site, asking in English
            add_request(conn, at=start + timedelta(hours=5 * i), question=question, locale="ur" if i % 6 == 0 else "en",
                        status="not_covered")
        for i, question in enumerate(PRINTING_3D):
            add_request(conn, at=start + timedelta(hours=3 + 11 * i), question=question, locale="en", status="ok",
                        rating=-1, cited=("/docs/kinematics-and-locomotion#joint-control", "Kinematics and Locomotion",
                                          "Joint control"))
        for i, question in enumerate(ONE_OFFS):
            add_request(conn, at=start + timedelta(days=i, hours=7), question=question, locale="en", status="not_covered")
        for repeat in range(4):
            for i, (question, locale, page, title, heading) in enumerate(ANSWERED):
                add_request(conn, at=start + timedelta(days=repeat, hours=i + 1), question=question, locale=locale,
                            status="ok", rating=1 if repeat == 0 else None, cited=(f"{page}#x", title, heading))
        for i in range(10):  # the week before: not this report's
            add_request(conn, at=start - timedelta(days=1, hours=i), question=f"How do I flash MicroPython, try {i}?",
                        locale="en", status="not_covered")
    settings_env({"DATABASE_URL": url})
    yield url


@pytest.fixture
def webhook(settings_env):
    with webhook_receiver() as (url, received):
        settings_env({"CONTENT_GAPS_WEBHOOK_URL": url})
        yield received


def test_the_seeded_week_gives_the_arduino_and_3d_printing_topics(seeded_week, service_url, pushgateway,  # noqa: F811
                                                                  webhook):
    result = content_gaps(week_ending="2026-11-23", service_url=service_url)

    assert result["gap_questions"] == 30 + 10 + 5 and result["unclustered"] == 5
    arduino, printing = result["topics"]
    assert arduino["count"] == 30 and arduino["reasons"] == {"not covered": 30}
    assert arduino["locales"] == {"en": 25, "ur": 5}
    assert len(arduino["examples"]) == 3 and all(e in ARDUINO for e in arduino["examples"])
    assert printing["count"] == 10 and printing["reasons"] == {"thumbs-down": 10}
    assert all(e in PRINTING_3D for e in printing["examples"])
    for topic in result["topics"]:
        assert topic["nearest_section"]["url"].startswith("/docs/") and topic["nearest_section"]["title"]

    answered, not_covered = 10 + 4 * len(ANSWERED), 30 + 5
    assert result["answer_rate"] == pytest.approx(answered / (answered + not_covered))
    report = latest_artifact("content-gaps").data
    assert "## 1. " in report and "(30 questions)" in report and "(10 questions)" in report
    assert "| ur | 9 | 44% | 1 | 0 | 100% |" in report  # 5 Arduino (not covered) + 4 ZMP (answered, one thumbs-up)
    assert "| en | kinematics-and-locomotion | 22 |" in report  # 10 disliked 3D answers + 3 x 4 answers citing it

    metrics = pushed(pushgateway)
    assert metrics[("content_gap_topics", frozenset({("job", "content_gaps"), ("instance", "")}))] == 2
    overall = metrics[("answer_rate", frozenset({("job", "content_gaps"), ("locale", "all"), ("instance", "")}))]
    assert overall == pytest.approx(answered / (answered + not_covered))
    assert webhook[0]["subject"] == "textbook content gaps, week to 2026-11-23"
    assert "2 topics the book does not answer" in webhook[0]["body"] and "(30)" in webhook[0]["body"]


def test_an_erased_or_expired_question_is_not_in_the_report(seeded_week, service_url):  # noqa: F811
    with psycopg.connect(seeded_week.replace("+psycopg", "")) as conn:
        conn.execute("UPDATE query_log SET question = NULL WHERE question LIKE '%%Arduino%%'")
    result = content_gaps(week_ending="2026-11-23", service_url=service_url)
    assert [t["count"] for t in result["topics"]] == [10]
    assert result["gap_questions"] == 15
