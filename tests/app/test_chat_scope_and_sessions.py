"""Selected-text questions, the chapter filter, session titles and consistent citations (extractive backend)."""

from __future__ import annotations

import re

import pytest

from app.rag.chunking import chapter_of
from app.services.chat import session_title

ROS_PAGE = "/docs/ros2-fundamentals"


def cited_numbers(answer: str) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\[(\d+)\]", answer)})


def test_extractive_citations_and_sources_agree(client):
    body = client.post("/v1/chat", json={"question": "How does a Kalman filter fuse odometry with LiDAR?", "k": 8}).json()
    assert body["covered"] is True and body["citations_verified"] is True
    assert cited_numbers(body["answer"]) == list(range(1, len(body["sources"]) + 1))


def test_selection_favours_its_page(client):
    question = "How does this compare to what the other chapters say?"
    selection = {"text": "Quality of Service settings decide whether a subscriber hears a publisher: reliability, "
                         "durability, history depth.", "page_url": f"http://127.0.0.1:3000{ROS_PAGE}#quality-of-service"}
    body = client.post("/v1/chat", json={"question": question, "selection": selection}).json()
    assert body["covered"] is True and body["sources"][0]["url"].startswith(ROS_PAGE)
    stream = client.post("/v1/chat/stream", json={"question": question, "selection": selection})
    assert stream.status_code == 200 and "event: final" in stream.text


def test_a_selection_the_page_does_not_hold_is_not_covered_by_it(client):
    selection = {"text": "Knead the dough for ten minutes, then let it rise overnight.", "page_url": ROS_PAGE}
    body = client.post("/v1/chat", json={"question": "What does this mean?", "selection": selection}).json()
    assert body["covered"] is False and body["sources"] == []


@pytest.mark.parametrize(
    ("selection", "fragment"),
    [
        ({"text": "x" * 4001, "page_url": ROS_PAGE}, "selection.text: String should have at most 4000 characters"),
        ({"text": "   ", "page_url": ROS_PAGE},
         "selection.text: Value error, the text is empty once control characters and spaces are removed"),
        ({"text": "QoS", "page_url": "/blog/post"}, "selection.page_url: Value error, must be a page of the site"),
        ({"text": "QoS", "page_url": "javascript:alert(1)"}, "selection.page_url"),
        ({"text": "QoS", "page_url": "https://evil.example/docs/ros2-fundamentals"}, "evil.example is not the site"),
        ({"text": "QoS"}, "selection.page_url: Field required"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/v1/chat", "/v1/chat/stream"])
def test_bad_selection_is_a_clear_422(client, selection, fragment, endpoint):
    response = client.post(endpoint, json={"question": "What is this?", "selection": selection})
    assert response.status_code == 422 and fragment in response.json()["detail"], response.text


@pytest.mark.parametrize("chapter", ["ros2-fundamentals", ROS_PAGE, "/ur/docs/ros2-fundamentals/"])
def test_chapter_filter_keeps_answers_and_search_in_one_chapter(client, chapter):
    question = "How does a Kalman filter fuse odometry with LiDAR?"  # answered by another chapter
    body = client.post("/v1/chat", json={"question": question, "chapter": chapter, "k": 5}).json()
    assert all(chapter_of(s["url"]) == "ros2-fundamentals" for s in body["sources"])
    posted = client.post("/v1/search", json={"query": "publisher timer", "k": 5, "chapter": chapter}).json()
    got = client.get("/v1/search", params={"query": "publisher timer", "k": 5, "chapter": chapter}).json()
    # the same ranking (RRF ties may come back in either order)
    assert [r["score"] for r in posted["results"]] == [r["score"] for r in got["results"]] and posted["results"]
    assert {chapter_of(r["url"]) for r in got["results"]} == {"ros2-fundamentals"}


def test_urdu_chapter_filter_finds_urdu_chunks_of_that_chapter(client):
    body = client.post("/v1/search", json={"query": "کالمن فلٹر", "locale": "ur", "chapter": "perception-and-sensor-fusion"})
    assert body.status_code == 200 and body.json()["results"]
    assert all(r["url"].startswith("/ur/docs/perception-and-sensor-fusion") for r in body.json()["results"])


@pytest.mark.parametrize("endpoint", ["/v1/chat", "/v1/search"])
def test_unknown_chapter_is_a_422_listing_the_known_ones(client, endpoint):
    key = "question" if endpoint == "/v1/chat" else "query"
    response = client.post(endpoint, json={key: "What is a ROS 2 action?", "chapter": "cooking-for-robots"})
    detail = response.json()["detail"]
    assert response.status_code == 422 and "unknown chapter 'cooking-for-robots'" in detail
    assert "ros2-fundamentals" in detail and "kinematics-and-locomotion" in detail
    bad = client.get("/v1/search", params={"query": "x", "chapter": "../../etc"})
    assert bad.status_code == 422 and "chapter" in bad.json()["detail"]


def test_session_title_comes_from_the_first_question_in_its_language(client):
    english = client.post("/v1/chat", json={"question": "What is a ROS 2 action?"}).json()
    client.post("/v1/chat", json={"question": "And a service?", "session_id": english["session_id"]})
    assert client.get(f"/v1/sessions/{english['session_id']}").json()["title"] == "What is a ROS 2 action?"
    urdu_question = "ROS 2 میں سروس اور ایکشن میں کیا فرق ہے اور مجھے کب کون سا استعمال کرنا چاہیے جب روبوٹ چل رہا ہو؟"
    urdu = client.post("/v1/chat", json={"question": urdu_question, "locale": "ur"}).json()
    title = client.get(f"/v1/sessions/{urdu['session_id']}").json()["title"]
    assert title == session_title(urdu_question) and title.endswith("…") and len(title) <= 61
    assert urdu_question.startswith(title[:-1]) and re.search("[\u0600-\u06ff]", title)


def test_session_title_cuts_at_a_word_boundary():
    assert session_title("  What   is a ROS 2 action? ") == "What is a ROS 2 action?"
    long = "How do I compute the elbow angle of a two-link planar arm from a target position in the plane?"
    assert session_title(long) == "How do I compute the elbow angle of a two-link planar arm…"
    assert session_title("x" * 80) == "x" * 60 + "…"


@pytest.mark.parametrize(
    ("url", "chapter"),
    [("/docs/ros2-fundamentals", "ros2-fundamentals"), ("/ur/docs/ros2-fundamentals#qos", "ros2-fundamentals"),
     ("/docs/guide/part-one", "guide"), ("/docs", ""), ("/docs/", "")],
)
def test_chapter_of_a_page_is_its_first_segment_below_the_docs_root(url, chapter):
    assert chapter_of(url) == chapter


def test_chunk_payload_carries_the_chapter_and_the_payload_version_is_in_the_hash():
    from dataclasses import replace

    from app.rag import chunking

    chunk = chunking.Chunk(id="x", text="text", title="T", heading_path=("H",), anchor="h", locale="ur",
                           source_path="ros2-fundamentals.md", page_url="/ur/docs/ros2-fundamentals", ordinal=0)
    assert chunk.payload()["chapter"] == "ros2-fundamentals"
    before = chunking.content_hash(chunk)
    chunking.PAYLOAD_VERSION += 1
    try:
        assert chunking.content_hash(replace(chunk)) != before  # an older index is rewritten on the next ingest
    finally:
        chunking.PAYLOAD_VERSION -= 1
