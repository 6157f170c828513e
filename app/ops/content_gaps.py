"""What the book does not answer: group the week's unanswered and disliked questions into topics, sum up traffic.

Pure functions over rows read by tasks/content_gaps.py; the clustering is scikit-learn's agglomerative
clustering on the service's own embeddings (cosine distance, average linkage), imported only when used.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ANSWERED = ("ok", "fallback")
COMPLETED = ("ok", "fallback", "not_covered")
CHAPTER_RE = re.compile(r"^(?:/[a-z]{2})?/docs/([^/#?]+)")
LEXICAL_WEIGHT = 0.5  # share of the words (TF-IDF) against the embedding in a question's features


@dataclass(frozen=True)
class GapQuestion:
    """A question of the week the book did not answer (`not_covered`) or answered to a thumbs-down (`disliked`)."""

    text: str
    locale: str
    reason: str


@dataclass
class Topic:
    count: int
    locales: dict[str, int]
    reasons: dict[str, int]
    examples: list[str]
    representative: str
    nearest_section: dict[str, Any] | None = None


@dataclass
class LocaleTraffic:
    locale: str
    requests: int = 0
    answered: int = 0
    not_covered: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0

    @property
    def answer_rate(self) -> float | None:
        completed = self.answered + self.not_covered
        return self.answered / completed if completed else None

    @property
    def feedback_ratio(self) -> float | None:
        """Share of ratings that are thumbs-up."""
        rated = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / rated if rated else None


@dataclass
class TrafficSummary:
    by_locale: list[LocaleTraffic] = field(default_factory=list)
    top_sections: list[tuple[str, int]] = field(default_factory=list)
    busiest_chapters: list[tuple[str, str, int]] = field(default_factory=list)  # (locale, chapter, answers citing it)

    @property
    def overall(self) -> LocaleTraffic:
        total = LocaleTraffic("all")
        for row in self.by_locale:
            for name in ("requests", "answered", "not_covered", "thumbs_up", "thumbs_down"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
        return total


def gap_questions(requests: list[dict[str, Any]]) -> list[GapQuestion]:
    """From the week's chat requests (status, locale, question, rating): the not-covered and the disliked ones."""
    gaps = []
    for row in requests:
        if not row["question"]:
            continue  # erased, or past its retention
        if row["status"] == "not_covered":
            gaps.append(GapQuestion(row["question"], row["locale"] or "en", "not covered"))
        elif row["rating"] == -1:
            gaps.append(GapQuestion(row["question"], row["locale"] or "en", "thumbs-down"))
    return gaps


def question_features(questions: list[str], vectors: list[list[float]], background: list[str]) -> Any:
    """Each question as its dense embedding and its TF-IDF words side by side, each half of the weight.

    The embedding alone groups by what is asked ("drive a servo", "read a sensor") more than by the subject the
    book lacks ("... with an Arduino"); the words weighted by how rare they are in the whole week's questions
    (`background`) bring the missing subject back. Cosine similarity of the result is the mean of the two."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    dense = np.asarray(vectors, dtype=np.float64)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True) + 1e-12
    words = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(background + questions).transform(questions)
    return np.hstack([dense * np.sqrt(1 - LEXICAL_WEIGHT), words.toarray() * np.sqrt(LEXICAL_WEIGHT)])


def cluster_topics(questions: list[GapQuestion], vectors: list[list[float]], background: list[str], *,
                   max_distance: float, min_questions: int) -> tuple[list[Topic], int]:
    """Topics of at least `min_questions` questions, largest first, and how many questions fell in no topic.

    Average-linkage clusters (scikit-learn) whose members are on average within `max_distance` cosine distance of
    each other in `question_features`; the examples are the three questions nearest the topic's centre."""
    if len(questions) < max(min_questions, 2):
        return [], len(questions)
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    matrix = question_features([q.text for q in questions], vectors, background)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=max_distance, metric="cosine",
                                     linkage="average").fit_predict(matrix)
    topics = []
    unclustered = 0
    for label in set(labels.tolist()):
        members = np.flatnonzero(labels == label)
        if len(members) < min_questions:
            unclustered += len(members)
            continue
        centre = matrix[members].mean(axis=0)
        order = members[np.argsort(-(matrix[members] @ centre))]
        examples = list(dict.fromkeys(questions[i].text for i in order))[:3]
        topics.append(Topic(
            count=len(members), locales=dict(Counter(questions[i].locale for i in members).most_common()),
            reasons=dict(Counter(questions[i].reason for i in members).most_common()),
            examples=examples, representative=questions[int(order[0])].text,
        ))
    topics.sort(key=lambda t: (-t.count, t.representative))
    return topics, unclustered


def chapter_of_url(url: str) -> str | None:
    match = CHAPTER_RE.match(url)
    return match.group(1) if match else None


def summarize_traffic(requests: list[dict[str, Any]], citations: list[dict[str, Any]], *, top: int = 5) -> TrafficSummary:
    """Answer rate and feedback ratio by locale; the most cited sections and the busiest chapters.

    `requests`: the week's chat requests (locale, status, rating); `citations`: one row per source an answer cited
    (locale, url, title, heading)."""
    by_locale: dict[str, LocaleTraffic] = {}
    for row in requests:
        locale = row["locale"] or "en"
        traffic = by_locale.setdefault(locale, LocaleTraffic(locale))
        traffic.requests += 1
        traffic.answered += row["status"] in ANSWERED
        traffic.not_covered += row["status"] == "not_covered"
        traffic.thumbs_up += row["rating"] == 1
        traffic.thumbs_down += row["rating"] == -1
    sections = Counter(f"{c['title']} › {c['heading']} ({c['url']})" if c["heading"] else f"{c['title']} ({c['url']})"
                       for c in citations)
    chapters = Counter((c["locale"] or "en", chapter) for c in citations if (chapter := chapter_of_url(c["url"])))
    return TrafficSummary(
        by_locale=sorted(by_locale.values(), key=lambda t: (-t.requests, t.locale)),
        top_sections=sections.most_common(top),
        busiest_chapters=[(locale, chapter, n) for (locale, chapter), n in chapters.most_common(top)],
    )
