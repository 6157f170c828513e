"""What an answer carries: the question's language without a locale, one source per section with its anchor,
the table row or code line that holds the fact, and an honest "not covered" when the model finds no answer."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from app.rag.answering import NOT_IN_SOURCES, ExtractiveAnswerer, evidence_units
from app.rag.coverage import CoveragePolicy
from app.rag.language import locale_of
from app.rag.retrieval import Retrieval, RetrievedChunk, best_chunk_per_section

URDU_LETTER = re.compile("[\u0600-\u06ff]")


def chat(client, question: str, **extra) -> dict:
    response = client.post("/v1/chat", json={"question": question, **extra})
    assert response.status_code == 200, response.text
    return response.json()


# -- language from the question ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("ZMP کیا ہے؟", "ur"),
        ("ROS 2 میں topic اور service میں کیا فرق ہے؟", "ur"),  # English terms in a Urdu question
        ("ما هو الروبوت؟", "ur"),  # Arabic script: the site's Arabic-script locale
        ("What is the Zero Moment Point?", "en"),
        ("What does the word روبوٹ mean in the Urdu chapters?", "en"),
        ("42?", "en"),
    ],
)
def test_the_script_of_the_question_decides_its_locale(text, locale):
    assert locale_of(text) == locale


def test_an_urdu_question_without_a_locale_is_searched_and_answered_in_urdu(client):
    body = chat(client, "کالمن فلٹر کیا ہے؟")
    assert body["covered"] is True
    assert body["sources"] and all(s["url"].startswith("/ur/docs/") for s in body["sources"])
    assert URDU_LETTER.search(body["answer"])


def test_an_english_question_without_a_locale_stays_english(client):
    body = chat(client, "What is a Kalman filter?")
    assert body["covered"] is True and all(s["url"].startswith("/docs/") for s in body["sources"])


def test_an_acronym_spelled_out_in_urdu_letters_finds_its_section(client):
    """"یو آر ڈی ایف" is how a reader types URDF in Urdu; it was answered not covered."""
    body = chat(client, "یو آر ڈی ایف فائل میں کیا ہوتا ہے؟")
    assert body["covered"] is True
    assert "urdf" in body["sources"][0]["url"].lower()
    # With nothing but the acronym, the answer's sentences are picked by it too (they were not: not covered).
    body = chat(client, "ڈی ڈی ایس کیا ہے؟")
    assert body["covered"] is True and "DDS" in body["answer"]
    assert "dds" in body["sources"][0]["url"].lower()


def test_an_english_term_written_in_urdu_letters_finds_the_section_that_keeps_it_in_latin(client):
    """The Urdu chapter writes "launch فائل"; a reader writes لانچ فائل, which ranked the launch section nowhere.
    The sound-alike is searched, not counted as a word of the question the book uses (so not as coverage)."""
    results = client.post("/v1/search", json={"query": "لانچ فائل کیا کرتی ہے؟", "k": 3, "locale": "ur"}).json()["results"]
    assert results[0]["url"].startswith("/ur/docs/ros2-fundamentals#launch")


def test_a_rare_name_beside_an_urdu_word_the_book_never_uses_does_not_make_the_question_covered(client):
    """GPS (spelled جی پی ایس) is in one table of the book; Android, an app and a phone (in Urdu letters) are not."""
    body = chat(client, "اینڈرائیڈ ایپ بنا کر فون کے جائروسکوپ اور جی پی ایس کا ڈیٹا کیسے ریکارڈ کریں؟")
    assert body["covered"] is False and body["sources"] == []


def test_an_explicit_locale_wins_over_the_script(client):
    body = chat(client, "کالمن فلٹر کیا ہے؟", locale="en")
    assert all(s["url"].startswith("/docs/") for s in body["sources"])
    assert not URDU_LETTER.search(re.sub(r"\[\d+\]", "", body["answer"]))


# -- one source per section -------------------------------------------------------------------------------------
def test_best_chunk_per_section_keeps_the_first_of_each_url_in_rank_order():
    hits = [SimpleNamespace(id=str(i), payload={"url": url}) for i, url in
            enumerate(["/docs/a#x", "/docs/a#y", "/docs/a#x", "/docs/b", "/docs/a#y"])]
    assert [h.id for h in best_chunk_per_section(hits)] == ["0", "1", "3"]


@pytest.mark.parametrize("question", [
    "How do I create a publisher node with a timer in rclpy?",
    "What QoS settings should sensor data use?",
    "How does a Kalman filter fuse IMU and wheel odometry?",
    "ROS 2 میں سروس اور ایکشن میں کیا فرق ہے؟",
])
def test_sources_are_unique_by_url_and_carry_the_section_anchor(client, question):
    body = chat(client, question, k=8)
    urls = [s["url"] for s in body["sources"]]
    assert urls and len(urls) == len(set(urls)), urls
    assert all("#" in url for url in urls), urls
    search = client.post("/v1/search", json={"query": question, "k": 10}).json()["results"]
    assert len({r["url"] for r in search}) == len(search)


# -- the fact as it stands in a table or a code block -----------------------------------------------------------
def test_evidence_units_read_table_rows_as_column_value_pairs_and_code_lines_in_backticks():
    text = ("QoS profiles differ in depth.\n\n| Profile | History (depth) |\n| --- | --- |\n"
            "| Sensor data | Keep last (5) |\n\n```bash\nros2 topic echo /chatter\n```\nThat prints each message.")
    units = [(u.kind, u.text) for u in evidence_units(text)]
    assert units == [
        ("prose", "QoS profiles differ in depth."),
        ("table", "Profile: Sensor data; History (depth): Keep last (5)"),
        ("code", "`ros2 topic echo /chatter`"),
        ("prose", "That prints each message."),
    ]


def test_a_sentence_that_introduces_a_block_is_quoted_with_a_short_one_and_dropped_before_a_long_one():
    """"... fixes this by solving a regularized problem:" was quoted alone, and the next quoted sentence read as
    its continuation."""
    short = ("Damped least squares solves a regularized problem:\n\n```text\ndq = J^T (J J^T + l^2 I)^-1 e\n```\n"
             "The damping factor trades accuracy for stability.")
    assert [(u.kind, u.text) for u in evidence_units(short)] == [
        ("prose", "Damped least squares solves a regularized problem: `dq = J^T (J J^T + l^2 I)^-1 e`"),
        ("prose", "The damping factor trades accuracy for stability."),
    ]
    long = ("A minimal publisher node looks like this:\n\n```python\nimport rclpy\nfrom rclpy.node import Node\n"
            "rclpy.init(args=None)\n```\nThe sensor rates are summarised below:\n\n| Sensor | Rate |\n| --- | --- |\n"
            "| IMU gyroscope | 200-1000 Hz |")
    assert [(u.kind, u.text) for u in evidence_units(long)] == [
        ("code", "`import rclpy`"), ("code", "`from rclpy.node import Node`"), ("code", "`rclpy.init(args=None)`"),
        ("table", "Sensor: IMU gyroscope; Rate: 200-1000 Hz"),
    ]


def test_code_lines_are_quoted_as_commands_not_as_comments_labels_or_a_matrix_drawn_in_text():
    text = ("```bash\n# Services and parameters\nros2 service list\n```\n\n```text\nIn matrix form, with homogeneous "
            "coordinates:\n    [u]       [fx   0  cx] [X]\n  Z [v]   =   [ 0  fy  cy] [Y]        K = intrinsic matrix\n```\n"
            "```bash\nros2 pkg create my_pkg \\\n    --build-type ament_python\n```")
    units = evidence_units(text)
    assert [(u.kind, u.text, u.terms_text) for u in units] == [
        ("code", "`ros2 service list`", "# Services and parameters ros2 service list"),
        ("code", "`ros2 pkg create my_pkg --build-type ament_python`", "ros2 pkg create my_pkg --build-type ament_python"),
    ]


def test_a_sentence_that_introduces_a_list_is_quoted_with_the_list_first_item():
    text = ("The intrinsic parameters in K describe the camera itself:\n\n"
            "- fx and fy are the focal lengths in pixels.\n- cx and cy form the principal point.\n\n"
            "With a depth camera, each pixel maps to a point in camera coordinates.")
    chunks = [RetrievedChunk(id="a", rank=0, score=1.0, payload={"text": text})]
    retrieval = Retrieval(chunks=chunks, locale="en", top_dense_score=0.6, query_terms_found=3, embedding_tokens=0,
                          embed_ms=0.0, search_ms=0.0, top_sparse_score=25.0, query_terms=3)
    answerer = ExtractiveAnswerer(coverage=CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0,
                                                          min_query_terms_matched=0.75))
    answer = answerer.answer("what are the camera intrinsic parameters", retrieval, [], "en")
    assert answer.text.startswith("The intrinsic parameters in K describe the camera itself: fx and fy are the focal "
                                  "lengths in pixels [1]."), answer.text
    assert answer.text.count("focal lengths") == 1


def test_a_piece_is_judged_with_its_section_heading():
    """"write a subscriber in python" found the section "A subscriber" first, but its code never says "subscriber",
    and the answer quoted a simulator's "Python API for scripting" instead."""
    subscriber = ("```python\nself.sub = self.create_subscription(String, 'chatter', self.on_message, 10)\n"
                  "self.get_logger().info(msg.data)\n```")
    simulator = "Isaac Sim has a Python API for scripting scenes and writes annotated images."
    chunks = [RetrievedChunk(id="a", rank=0, score=1.0, payload={"text": subscriber, "heading_path": [
                  "ROS 2 Fundamentals", "Writing Nodes with rclpy", "A subscriber"]}),
              RetrievedChunk(id="b", rank=1, score=0.9, payload={"text": simulator, "heading_path": ["Isaac Sim"]})]
    retrieval = Retrieval(chunks=chunks, locale="en", top_dense_score=0.5, query_terms_found=3, embedding_tokens=0,
                          embed_ms=0.0, search_ms=0.0, top_sparse_score=7.0, query_terms=3)
    answerer = ExtractiveAnswerer(coverage=CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0,
                                                          min_query_terms_matched=0.75))
    answer = answerer.answer("write a subscriber in python", retrieval, [], "en")
    assert answer.text.startswith("`self.sub = self.create_subscription("), answer.text
    assert answer.source_order[0] == 0


def cited_source(body: dict, quoted: str) -> dict:
    """The source of the first citation after `quoted` (a quoted row is cited at its end)."""
    match = re.search(re.escape(quoted) + r"[^\[]*\[(\d+)\]", body["answer"])
    assert match, body["answer"]
    return body["sources"][int(match.group(1)) - 1]


def test_a_fact_from_a_table_row_is_quoted_as_column_value_pairs_with_its_citation(client):
    body = chat(client, "What history depth does the sensor data QoS profile keep?")
    source = cited_source(body, "History (depth): Keep last (5)")
    assert source["url"].startswith("/docs/ros2-fundamentals#")


def test_a_table_row_is_quoted_whole_although_its_header_abbreviates():
    """"Approx. height" once cut the row in two at "Approx." and the first half was dropped as an uncited claim; and
    "tell me about" matched "Geometry tells the robot ...", which the answer then quoted."""
    table = ("| Platform | Developer | Approx. height | Approx. actuated DoF |\n| --- | --- | --- | --- |\n"
             "| Optimus (Gen 2) | Tesla | ~1.7 m | ~28 in the body, plus hands |")
    chunks = [RetrievedChunk(id="a", rank=0, score=1.0, payload={"text": table}),
              RetrievedChunk(id="b", rank=1, score=0.5, payload={"text": "Geometry tells the robot where surfaces are."})]
    retrieval = Retrieval(chunks=chunks, locale="en", top_dense_score=0.28, query_terms_found=2, embedding_tokens=0,
                          embed_ms=0.0, search_ms=0.0, top_sparse_score=25.0, query_terms=2)
    answerer = ExtractiveAnswerer(coverage=CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0,
                                                          min_query_terms_matched=0.75, lexical_cover_sparse_score=20.0))
    answer = answerer.answer("tell me about Tesla Optimus", retrieval, [], "en")
    assert answer.text == ("Platform: Optimus (Gen 2); Developer: Tesla; Approx. height: ~1.7 m; Approx. actuated DoF: "
                           "~28 in the body, plus hands [1].")
    assert answer.source_order == [0]


def test_a_fact_from_a_code_line_is_quoted_in_backticks_with_its_citation(client):
    body = chat(client, "Which command shows the QoS of each endpoint of a topic?")
    source = cited_source(body, "`ros2 topic info /chatter --verbose # shows QoS of each endpoint`")
    assert source["url"].startswith("/docs/ros2-fundamentals#")


# -- the model may say the sources do not hold the answer -------------------------------------------------------
def test_a_model_that_finds_no_answer_in_the_sources_makes_the_answer_not_covered(openai_client, fake_openai):
    fake_openai.reply = NOT_IN_SOURCES
    body = openai_client.post("/v1/chat", json={"question": "What is the Zero Moment Point?"}).json()
    assert body["covered"] is False and body["sources"] == [] and NOT_IN_SOURCES not in body["answer"]
    assert body["answer_backend"] == "openai" and body["usage"]["completion_tokens"] == 1
    assert any(r["path"] == "/v1/chat/completions" for r in fake_openai.requests)


def test_a_streamed_not_in_sources_reply_never_shows_the_marker(openai_client, fake_openai):
    fake_openai.reply = NOT_IN_SOURCES
    with openai_client.stream("POST", "/v1/chat/stream", json={"question": "What is the Zero Moment Point?"}) as response:
        raw = "".join(response.iter_text())
    events = [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", raw)]
    final = events[-1][1]
    assert events[-1][0] == "final" and final["covered"] is False and final["sources"] == []
    deltas = "".join(d["text"] for kind, d in events if kind == "delta")
    assert NOT_IN_SOURCES not in deltas and deltas == final["answer"]


def test_the_scripted_server_says_not_in_sources_when_the_sources_miss_the_question(openai_client, fake_openai):
    """The default (grounded) script of the test server answers from the sources or says NOT_IN_SOURCES."""
    body = openai_client.post("/v1/chat", json={"question": "What is the Zero Moment Point?"}).json()
    assert body["covered"] is True and body["answer_backend"] == "openai"
    from tests.support.openai_server import grounded_reply

    unrelated = [{"role": "user", "content": "Sources:\n[1] Cooking — Bread\nFlour and water.\n\nQuestion: What is ZMP?"}]
    assert grounded_reply(unrelated) == NOT_IN_SOURCES
