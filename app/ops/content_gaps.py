"""What the book does not answer: group the week's unanswered and disliked questions into topics, sum up traffic.

Pure functions over rows read by tasks/content_gaps.py; the clustering is SciPy's hierarchical clustering (cosine
distance, average linkage) of the service's own embeddings beside a small TF-IDF of the words, imported only when used.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.ops.english_stop_words import ENGLISH_STOP_WORDS

ANSWERED = ("ok", "fallback")
COMPLETED = ("ok", "fallback", "not_covered")
CHAPTER_RE = re.compile(r"^(?:/[a-z]{2})?/docs/([^/#?]+)")
LEXICAL_WEIGHT = 0.5  # share of the words (TF-IDF) against the embedding in a question's features
WORD_RE = re.compile(r"(?u)\b\w\w+\b")  # words of two or more letters (scikit-learn's default token pattern)


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


def content_words(text: str) -> list[str]:
    """The lower-cased words of `text` that are not English stop words, in order."""
    return [word for word in WORD_RE.findall(text.lower()) if word not in ENGLISH_STOP_WORDS]


def tfidf(documents: list[str], background: list[str]) -> Any:
    """Each document's words weighted by how rare they are in `background + documents`, rows of unit length.

    The weights of scikit-learn's `TfidfVectorizer(stop_words="english", sublinear_tf=True)` fit on the same texts:
    (1 + ln count) * (1 + ln((1 + texts) / (1 + texts with the word))). One column per word of `documents`, in
    alphabetical order (words only in `background` would be columns of zeros); a document of stop words only is a
    row of zeros."""
    import numpy as np

    counts = [Counter(content_words(text)) for text in documents]
    texts = [set(content_words(text)) for text in background] + [set(count) for count in counts]
    in_texts = Counter(word for words in texts for word in words)
    columns = {word: column for column, word in enumerate(sorted({word for count in counts for word in count}))}
    idf = np.log((1 + len(texts)) / (1 + np.array([in_texts[word] for word in columns], dtype=np.float64))) + 1
    matrix = np.zeros((len(documents), len(columns)))
    for row, count in enumerate(counts):
        for word, times in count.items():
            matrix[row, columns[word]] = 1 + np.log(times)
    matrix *= idf
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def question_features(questions: list[str], vectors: list[list[float]], background: list[str]) -> Any:
    """Each question as its dense embedding and its TF-IDF words side by side, each half of the weight.

    The embedding alone groups by what is asked ("drive a servo", "read a sensor") more than by the subject the
    book lacks ("... with an Arduino"); the words weighted by how rare they are in the whole week's questions
    (`background`) bring the missing subject back. Cosine similarity of the result is the mean of the two."""
    import numpy as np

    dense = np.asarray(vectors, dtype=np.float64)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True) + 1e-12
    words = tfidf(questions, background)
    return np.hstack([dense * np.sqrt(1 - LEXICAL_WEIGHT), words * np.sqrt(LEXICAL_WEIGHT)])


def average_linkage_labels(matrix: Any, max_distance: float) -> Any:
    """A cluster label for each row: average-linkage merges (cosine distance) while closer than `max_distance`."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(matrix, method="average", metric="cosine")
    # fcluster keeps merges at most t apart; the threshold is exclusive (as scikit-learn's distance_threshold was).
    return fcluster(tree, t=np.nextafter(max_distance, -np.inf), criterion="distance")


def cluster_topics(questions: list[GapQuestion], vectors: list[list[float]], background: list[str], *,
                   max_distance: float, min_questions: int) -> tuple[list[Topic], int]:
    """Topics of at least `min_questions` questions, largest first, and how many questions fell in no topic.

    Average-linkage clusters whose members are on average closer than `max_distance` in cosine distance to each
    other in `question_features`; the examples are the three questions nearest the topic's centre."""
    if len(questions) < max(min_questions, 2):
        return [], len(questions)
    import numpy as np

    matrix = question_features([q.text for q in questions], vectors, background)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12
    labels = average_linkage_labels(matrix, max_distance)
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
