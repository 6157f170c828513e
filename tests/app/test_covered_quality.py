"""Honest "not covered" through the real service: off-topic questions are not covered and cite nothing,
on-topic ones are covered; precision and recall of `covered` >= 0.95 in both answering backends."""

from __future__ import annotations

import pytest

from bench.covered_quality import load_coverage_set, score, service_answer
from tests.app.test_openai_backends import fake_openai, openai_client  # noqa: F401 - fixtures

QUESTIONS = load_coverage_set()


def test_the_evaluation_sets_are_large_enough_and_bilingual():
    on = [q for q in QUESTIONS if q.on_topic]
    off = [q for q in QUESTIONS if not q.on_topic]
    assert len(on) >= 30 and len(off) >= 30
    assert sum(q.locale == "ur" for q in on) >= 10 and sum(q.locale == "ur" for q in off) >= 10


@pytest.mark.parametrize("backend", ["extractive", "openai"])
def test_covered_precision_and_recall_meet_the_target(backend, request):
    client = request.getfixturevalue("client" if backend == "extractive" else "openai_client")
    result = score(QUESTIONS, service_answer(client))
    assert result.uncovered_with_sources == 0
    assert result.precision >= 0.95 and result.recall >= 0.95, result.misses


@pytest.mark.parametrize(
    ("question", "locale", "covered"),
    [
        ("ZMP کیا ہے؟", "ur", True),
        ("کالمن فلٹر کیا ہے؟", "ur", True),
        ("URDF joint limits", "en", True),
        ("What is a ROS 2 action?", "en", True),
        ("What is the best recipe for chocolate cake?", "en", False),
        ("کرکٹ کا پہلا میچ کب کھیلا گیا تھا؟", "ur", False),
        pytest.param("کرکٹ کا ورلڈ کپ کب ہوگا؟", "ur", False, marks=pytest.mark.xfail(strict=True, reason=(
            "known limit: without a dense signal for Urdu, 4 of its 5 terms (world, cup, when, will be) occur in "
            "the book; see bench/RESULTS.md"))),
    ],
)
def test_short_questions_outside_the_evaluation_set_are_judged_too(client, question, locale, covered):
    body = client.post("/v1/chat", json={"question": question, "locale": locale}).json()
    assert body["covered"] is covered and bool(body["sources"]) is covered
