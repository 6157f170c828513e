"""DELETE /v1/sessions/{id} on the real Postgres: the conversation goes, the numbers stay."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from app.services.privacy import erase_session

QUESTION = "How does a Kalman filter fuse odometry with LiDAR?"


def rows(settings, sql: str, *params) -> list[tuple]:
    with psycopg.connect(settings.resolved_database_url.replace("+psycopg", "")) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def conversation(client) -> dict:
    first = client.post("/v1/chat", json={"question": QUESTION}).json()
    follow_up = {"question": "And what about its noise model?", "session_id": first["session_id"]}
    second = client.post("/v1/chat", json=follow_up).json()
    for body, comment in ((first, "my teacher's name is Ayesha"), (second, None)):
        response = client.post("/v1/feedback", json={"request_id": body["request_id"], "rating": -1, "comment": comment})
        assert response.status_code == 201
    return {"session_id": first["session_id"], "request_ids": [first["request_id"], second["request_id"]]}


def test_the_question_is_logged_with_its_numbers(client, settings, conversation):
    logged = rows(settings, "SELECT question, status FROM query_log WHERE request_id = %s",
                  uuid.UUID(conversation["request_ids"][0]))
    assert logged == [(QUESTION, "ok")]


def test_delete_erases_messages_questions_and_comments_and_keeps_the_numbers(client, settings, conversation):
    session_id, request_ids = conversation["session_id"], [uuid.UUID(r) for r in conversation["request_ids"]]
    numbers_sql = ("SELECT request_id, prompt_tokens, completion_tokens, embedding_tokens, cost_usd, total_ms, status, "
                   "session_id FROM query_log WHERE request_id = ANY(%s) ORDER BY id")
    numbers_before = rows(settings, numbers_sql, request_ids)

    response = client.delete(f"/v1/sessions/{session_id}")

    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/v1/sessions/{session_id}").status_code == 404
    assert rows(settings, "SELECT count(*) FROM message WHERE session_id = %s", uuid.UUID(session_id)) == [(0,)]
    assert rows(settings, "SELECT question FROM query_log WHERE request_id = ANY(%s)", request_ids) == [(None,), (None,)]
    assert rows(settings, numbers_sql, request_ids) == numbers_before
    assert rows(settings, "SELECT rating, comment FROM feedback WHERE request_id = ANY(%s)", request_ids) == [
        (-1, None), (-1, None)]


def test_delete_of_an_unknown_or_already_erased_session_is_404(client, conversation):
    assert client.delete(f"/v1/sessions/{uuid.uuid4()}").status_code == 404
    assert client.delete(f"/v1/sessions/{conversation['session_id']}").status_code == 204
    again = client.delete(f"/v1/sessions/{conversation['session_id']}")
    assert again.status_code == 404 and again.json()["error_code"] == "not_found"


def test_delete_touches_no_other_conversation(client, settings, conversation):
    other = client.post("/v1/chat", json={"question": "What is a ROS 2 action?"}).json()
    client.delete(f"/v1/sessions/{conversation['session_id']}")
    assert client.get(f"/v1/sessions/{other['session_id']}").json()["messages"][0]["content"] == "What is a ROS 2 action?"
    assert rows(settings, "SELECT question FROM query_log WHERE request_id = %s", uuid.UUID(other["request_id"])) == [
        ("What is a ROS 2 action?",)]


def test_a_browser_on_the_site_may_send_delete(client):
    response = client.options(f"/v1/sessions/{uuid.uuid4()}", headers={
        "Origin": "http://127.0.0.1:3000", "Access-Control-Request-Method": "DELETE"})
    assert response.status_code == 200 and "DELETE" in response.headers["access-control-allow-methods"]


def test_erase_session_counts_what_it_erased(client, settings, conversation):
    from sqlmodel import Session

    from app.core.db import create_db_engine

    engine = create_db_engine(settings)
    try:
        with Session(engine) as db:
            erasure = erase_session(db=db, session_id=uuid.UUID(conversation["session_id"]))
    finally:
        engine.dispose()
    assert (erasure.messages_deleted, erasure.questions_cleared, erasure.comments_cleared) == (4, 2, 1)
