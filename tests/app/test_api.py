"""The query service end to end: real Postgres, the ingested textbook in Qdrant Edge, the local model."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlmodel import Session, select

from app.core.models import Feedback, Message, QueryLog


def chat(client, question: str, **extra):
    return client.post("/v1/chat", json={"question": question, **extra})


def query_log(client, request_id: str) -> QueryLog | None:
    with Session(client.app.state.engine) as db:
        return db.exec(select(QueryLog).where(QueryLog.request_id == uuid.UUID(request_id))).first()


def test_health_needs_nothing_and_ready_checks_dependencies(client):
    assert client.get("/health").json() == {"status": "healthy"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"capacity": "ok", "postgres": "ok", "vector_index": "ok"}


@pytest.mark.parametrize(
    ("question", "chapter"),
    [
        ("What is the Zero Moment Point and why does it matter for walking?", "/docs/kinematics-and-locomotion"),
        ("How do I create a publisher node with a timer in rclpy?", "/docs/ros2-fundamentals"),
        ("What does the update step of a Kalman filter do?", "/docs/perception-and-sensor-fusion"),
        ("How is a two-link arm described in URDF?", "/docs/simulation-and-digital-twins"),
    ],
)
def test_chat_answers_with_sources_from_the_right_chapter(client, question, chapter):
    response = chat(client, question)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["covered"] is True and body["answer_backend"] == "extractive"
    assert body["sources"][0]["url"].startswith(chapter + "#") or body["sources"][0]["url"] == chapter
    assert re.search(r"\[\d\]", body["answer"])
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0,
                             "embedding_tokens": body["usage"]["embedding_tokens"], "cost_usd": 0.0}
    assert body["usage"]["embedding_tokens"] > 0
    assert body["latency_ms"]["total"] >= body["latency_ms"]["retrieval"] > 0
    row = query_log(client, body["request_id"])
    assert row.status == "ok" and row.endpoint == "chat" and row.session_id == uuid.UUID(body["session_id"])


def test_urdu_question_gets_urdu_sources(client):
    body = chat(client, "ROS 2 میں سروس اور ایکشن میں کیا فرق ہے؟", locale="ur").json()
    assert body["sources"] and all(s["url"].startswith("/ur/docs/") for s in body["sources"])
    assert body["sources"][0]["url"].startswith("/ur/docs/ros2-fundamentals")
    assert re.search("[\u0600-\u06ff]", body["answer"])


def test_off_topic_question_is_not_covered_and_cites_nothing(client):
    body = chat(client, "What is the best recipe for chocolate cake?").json()
    assert body["covered"] is False and body["sources"] == []
    assert "does not seem to cover" in body["answer"]
    assert query_log(client, body["request_id"]).status == "not_covered"


def test_session_keeps_turns_and_follow_ups_use_them(client):
    first = chat(client, "What is a Kalman filter used for in humanoid robots?").json()
    follow = chat(client, "What about its predict step?", session_id=first["session_id"]).json()
    assert follow["session_id"] == first["session_id"]
    assert follow["sources"][0]["url"].startswith("/docs/perception-and-sensor-fusion")
    session = client.get(f"/v1/sessions/{first['session_id']}").json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant", "user", "assistant"]
    assert session["messages"][1]["sources"] == first["sources"]


def test_search_returns_ranked_chunks_without_an_answer(client):
    response = client.post("/v1/search", json={"query": "domain randomization sim-to-real", "k": 3})
    body = response.json()
    assert response.status_code == 200 and len(body["results"]) == 3 and "answer" not in body
    assert body["results"][0]["url"].startswith("/docs/simulation-and-digital-twins")
    assert body["results"][0]["score"] >= body["results"][-1]["score"]
    assert query_log(client, body["request_id"]).endpoint == "search"


def test_feedback_is_stored_for_a_known_request(client):
    answer = chat(client, "What is a support polygon?").json()
    response = client.post("/v1/feedback", json={"request_id": answer["request_id"], "rating": -1, "comment": "too short"})
    assert response.status_code == 201
    with Session(client.app.state.engine) as db:
        stored = db.exec(select(Feedback).where(Feedback.request_id == uuid.UUID(answer["request_id"]))).one()
    assert stored.rating == -1 and stored.comment == "too short"


def test_stream_sends_deltas_then_a_final_event_with_sources_and_usage(client):
    with client.stream("POST", "/v1/chat/stream", json={"question": "What are DDS QoS reliability settings?"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", raw)]
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "final" and kinds.count("delta") > 3
    final = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "delta") == final["answer"]
    assert final["sources"] and final["usage"]["embedding_tokens"] > 0
    assert query_log(client, final["request_id"]).endpoint == "chat_stream"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"question": ""}, "question"),
        ({"question": "x" * 2001}, "question"),
        ({"question": "hi", "locale": "fr"}, "locale"),
        ({"question": "hi", "k": 0}, "k"),
        ({"question": "hi", "session_id": "not-a-uuid"}, "session_id"),
        ({"question": "hi", "surprise": 1}, "surprise"),
        ({}, "question"),
    ],
)
def test_schema_errors_are_422_with_a_readable_message(client, body, fragment):
    response = client.post("/v1/chat", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert fragment in payload["detail"] and payload["error_code"] == "invalid_request"
    assert "Traceback" not in response.text


def test_malformed_json_is_422_not_500(client):
    response = client.post("/v1/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error_code"] == "invalid_request"


def test_unknown_session_is_404_everywhere_and_logged(client):
    missing = str(uuid.uuid4())
    assert client.get(f"/v1/sessions/{missing}").status_code == 404
    response = chat(client, "What is ROS 2?", session_id=missing)
    assert response.status_code == 404 and response.json()["error_code"] == "not_found"
    row = query_log(client, response.headers["x-request-id"])
    assert row.status == "error" and row.error_code == "not_found"
    assert client.post("/v1/chat/stream", json={"question": "x", "session_id": missing}).status_code == 404


def test_feedback_for_an_unknown_request_is_404_and_bad_rating_422(client):
    assert client.post("/v1/feedback", json={"request_id": str(uuid.uuid4()), "rating": 1}).status_code == 404
    assert client.post("/v1/feedback", json={"request_id": str(uuid.uuid4()), "rating": 5}).status_code == 422


def test_oversized_body_is_413(client):
    response = client.post("/v1/chat", content=b'{"question": "' + b"a" * 200_000 + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_code"] == "payload_too_large"


def test_unknown_route_is_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error_code"] == "not_found"


def metric_value(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_exist_and_move_after_a_query(client):
    before = client.get("/metrics").text
    for name in ("rag_query_duration_seconds", "rag_query_errors_total", "rag_tokens_used_total",
                 "rag_vector_search_latency_ms", "rag_llm_generation_latency_ms", "rag_active_sessions"):
        assert f"# TYPE {name}" in before, name
    chat(client, "How does a complementary filter estimate orientation?")
    client.post("/v1/chat", json={"question": ""})
    after = client.get("/metrics").text
    assert metric_value(after, "rag_query_duration_seconds_count", 'endpoint="chat"') > \
        metric_value(before, "rag_query_duration_seconds_count", 'endpoint="chat"')
    assert metric_value(after, "rag_vector_search_latency_ms_count") > metric_value(before, "rag_vector_search_latency_ms_count")
    assert metric_value(after, "rag_tokens_used_total", 'kind="embedding"') > \
        metric_value(before, "rag_tokens_used_total", 'kind="embedding"')
    assert metric_value(after, "rag_query_errors_total", 'error_code="invalid_request"') > \
        metric_value(before, "rag_query_errors_total", 'error_code="invalid_request"')
    assert "rag_active_sessions " in after  # counted every ACTIVE_SESSIONS_REFRESH_S (test_service_metrics.py)


def test_every_answered_chat_writes_its_messages(client):
    body = chat(client, "What is a digital twin?").json()
    with Session(client.app.state.engine) as db:
        messages = db.exec(select(Message).where(Message.request_id == uuid.UUID(body["request_id"]))).all()
    assert sorted(m.role for m in messages) == ["assistant", "user"]
