"""app/ops/content_gaps: the TF-IDF of the questions' words and the average-linkage topics, on small made-up data
(the seeded week through the whole flow is tests/flows/test_content_gaps.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.ops.content_gaps import (
    GapQuestion,
    average_linkage_labels,
    cluster_topics,
    content_words,
    question_features,
    tfidf,
)
from tests.support.seeded_week import ANSWERED, ARDUINO, ONE_OFFS, PRINTING_3D


def test_words_are_lower_cased_without_stop_words_or_single_letters():
    assert content_words("How do I wire the Arduino's 5V pin to a servo?") == ["wire", "arduino", "5v", "pin", "servo"]
    assert content_words("Is it the one?") == []


def test_tfidf_weights_rare_words_up_and_repeated_words_sublinearly():
    documents = ["Robot arms, robot arm!", "the gripper", "it is what it is"]
    background = ["a robot", "robot"]
    matrix = tfidf(documents, background)

    # 5 texts (background + documents); robot is in 3 of them, arm, arms and gripper in 1 each
    rare, common = math.log(6 / 2) + 1, math.log(6 / 4) + 1
    first = np.array([rare, rare, 0.0, (1 + math.log(2)) * common])  # columns: arm, arms, gripper, robot
    assert matrix.shape == (3, 4)
    assert matrix[0] == pytest.approx(first / np.linalg.norm(first))
    assert matrix[1] == pytest.approx([0, 0, 1, 0])
    assert not matrix[2].any(), "a question of stop words only has no word features"


def unit(*weights: float) -> list[float]:
    vector = np.zeros(8)
    for axis, weight in enumerate(weights):
        vector[axis] = weight
    return (vector / np.linalg.norm(vector)).tolist()


def test_topics_are_average_linkage_groups_under_the_threshold_largest_first():
    servo = [f"Arduino servo question {i}" for i in range(4)]
    printing = [f"Printing filament question {i}" for i in range(3)]
    loners = ["Pizza dough recipe", "Football results"]
    questions = ([GapQuestion(text, "ur" if i == 0 else "en", "not covered") for i, text in enumerate(servo)]
                 + [GapQuestion(text, "en", "thumbs-down") for text in printing]
                 + [GapQuestion(text, "en", "not covered") for text in loners])
    vectors = ([unit(1, 0.05 * i) for i in range(4)] + [unit(0, 0, 1, 0.05 * i) for i in range(3)]
               + [unit(0, 0, 0, 0, 1), unit(0, 0, 0, 0, 0, 1)])
    background = [q.text for q in questions] + ["How do I install ROS 2?"] * 20

    topics, unclustered = cluster_topics(questions, vectors, background, max_distance=0.6, min_questions=3)

    assert [t.count for t in topics] == [4, 3] and unclustered == 2
    assert topics[0].locales == {"en": 3, "ur": 1} and topics[0].reasons == {"not covered": 4}
    assert topics[1].reasons == {"thumbs-down": 3}
    assert set(topics[0].examples) < set(servo) and len(topics[0].examples) == 3
    assert topics[0].representative in servo and topics[1].representative in printing


def test_the_threshold_decides_how_far_apart_a_topic_may_be():
    questions = [GapQuestion(f"Arduino question {i}", "en", "not covered") for i in range(2)]
    vectors = [unit(1, 0), unit(1, 1)]  # 45 degrees apart
    background = ["What is a ROS 2 node?"] * 10

    assert [t.count for t in cluster_topics(questions, vectors, background, max_distance=0.5, min_questions=2)[0]] == [2]
    assert cluster_topics(questions, vectors, background, max_distance=0.05, min_questions=2) == ([], 2)
    assert cluster_topics(questions[:1], vectors[:1], background, max_distance=0.5, min_questions=2) == ([], 1)


def test_the_same_weights_and_topics_as_scikit_learn_gave_on_the_seeded_week():
    """scikit-learn left the runtime but stays in the dev environment (sentence-transformers needs it): the topics
    of the week are those its TfidfVectorizer and AgglomerativeClustering gave, at several thresholds."""
    sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
    sklearn_cluster = pytest.importorskip("sklearn.cluster")

    texts = ARDUINO + PRINTING_3D + ONE_OFFS
    background = texts + [row[0] for row in ANSWERED] * 4
    vectorizer = sklearn_text.TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(background + texts)
    expected = vectorizer.transform(texts).toarray()
    in_texts = [column for _, column in sorted(vectorizer.vocabulary_.items()) if expected[:, column].any()]
    assert tfidf(texts, background) == pytest.approx(expected[:, in_texts], abs=1e-12)

    rng = np.random.default_rng(17)
    for _ in range(5):
        matrix = question_features(texts, rng.normal(size=(len(texts), 16)).tolist(), background)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        for max_distance in (0.5, 0.6, 0.7, 0.8, 0.875):
            expected_labels = sklearn_cluster.AgglomerativeClustering(
                n_clusters=None, distance_threshold=max_distance, metric="cosine", linkage="average").fit_predict(matrix)
            assert partition(average_linkage_labels(matrix, max_distance)) == partition(expected_labels), max_distance


def partition(labels: np.ndarray) -> list[list[int]]:
    return sorted(np.flatnonzero(labels == label).tolist() for label in set(labels.tolist()))
