"""The on-topic evaluation set: every question points at a section the index really cites, in its own
locale and chapter; every section of every chapter is asked about in both locales; the split is by chapter;
the set is big and varied enough, with no repeats and nothing taken from the old regression set."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import pytest
import yaml

from bench.eval_sets import (
    ONTOPIC_PATH,
    SPLIT_CHAPTERS,
    STYLES,
    URDU_STYLES,
    load_textbook_ontopic,
    split_of,
    textbook_sections,
)

MIN_PER_LOCALE = {"en": 160, "ur": 80}
MIN_PER_SPLIT_AND_LOCALE = {"en": 80, "ur": 40}
MIN_PER_STYLE_IN_EACH_SPLIT = {"en": 5, "ur": 3}
MIN_URDU_STYLE_IN_EACH_SPLIT = 20
ARABIC_SCRIPT = re.compile(r"[\u0600-\u06FF]")
TABLE_ROW = re.compile(r"^\|.*\|\s*$", re.M)


@pytest.fixture(scope="module")
def questions():
    return load_textbook_ontopic()


@pytest.fixture(scope="module")
def sections():
    return textbook_sections()


def normalized(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def test_every_expected_url_is_a_section_of_its_locale_and_chapter(questions, sections):
    known = {s.url: s for s in sections}
    problems = []
    for q in questions:
        if not q.expected_urls:
            problems.append(f"no expected_urls: {q.question}")
        for url in q.expected_urls:
            section = known.get(url)
            if section is None:
                problems.append(f"not a section URL: {url} ({q.question})")
            elif (section.locale, section.chapter) != (q.locale, q.chapter):
                problems.append(f"{url} is {section.locale}/{section.chapter}, the question says "
                                f"{q.locale}/{q.chapter} ({q.question})")
        if len(set(q.expected_urls)) != len(q.expected_urls):
            problems.append(f"repeated expected URL: {q.question}")
    assert not problems, "\n".join(problems)


def test_sections_are_the_same_in_both_locales(sections):
    """Urdu chapters translate the English ones heading for heading (the set relies on it for coverage)."""
    shape = Counter((s.locale, s.chapter, len(s.heading_path)) for s in sections)
    assert {(c, d, n) for (loc, c, d), n in shape.items() if loc == "en"} == \
        {(c, d, n) for (loc, c, d), n in shape.items() if loc == "ur"}


@pytest.mark.parametrize("split", list(SPLIT_CHAPTERS))
def test_every_section_of_every_chapter_of_a_split_is_asked_about_in_both_locales(questions, sections, split):
    expected = {url for q in questions for url in q.expected_urls}
    chapters = SPLIT_CHAPTERS[split]
    in_split = [s for s in sections if s.chapter in chapters]
    assert {s.chapter for s in in_split} == set(chapters), "every chapter of the split is in the textbook"
    uncovered = [f"{s.url}  ({' > '.join(s.heading_path)})" for s in in_split if s.url not in expected]
    assert not uncovered, "sections no question expects:\n" + "\n".join(uncovered)


@pytest.mark.parametrize("split", list(SPLIT_CHAPTERS))
def test_a_split_is_its_chapters_and_big_and_varied_enough(questions, split):
    half = load_textbook_ontopic(split)
    assert {q.split for q in half} == {split}
    assert {q.chapter for q in half} == set(SPLIT_CHAPTERS[split])
    per_locale = Counter(q.locale for q in half)
    short = {loc: per_locale[loc] for loc, minimum in MIN_PER_SPLIT_AND_LOCALE.items() if per_locale[loc] < minimum}
    assert not short, f"locales under their minimum in {split}: {short}"
    per_style = Counter((q.locale, q.style) for q in half)
    short = {(loc, s): per_style[(loc, s)] for loc, minimum in MIN_PER_STYLE_IN_EACH_SPLIT.items() for s in STYLES
             if per_style[(loc, s)] < minimum}
    short |= {("ur", s): per_style[("ur", s)] for s in URDU_STYLES if per_style[("ur", s)] < MIN_URDU_STYLE_IN_EACH_SPLIT}
    assert not short, f"styles under their minimum in {split}: {short}"
    assert not {s for loc, s in per_style if loc != "ur"} & set(URDU_STYLES)


def test_split_is_derived_from_the_chapter(questions):
    assert {q.style for q in questions} <= {*STYLES, *URDU_STYLES}
    assert {q.locale for q in questions} == set(MIN_PER_LOCALE)
    assert [q.question for q in questions if q.split != split_of(q.chapter)] == []
    assert sum(len(load_textbook_ontopic(split)) for split in SPLIT_CHAPTERS) == len(questions)
    with pytest.raises(ValueError):
        load_textbook_ontopic("training")


def test_whole_set_meets_the_minimums_per_locale(questions):
    per_locale = Counter(q.locale for q in questions)
    assert {loc: n for loc, n in per_locale.items() if n < MIN_PER_LOCALE[loc]} == {}


def test_table_and_code_facts_point_at_a_section_with_a_table_or_code_block(questions, sections):
    text = {s.url: s.text for s in sections}
    has = {"table-fact": lambda body: TABLE_ROW.search(body), "code-fact": lambda body: "```" in body}
    wrong = [q.question for q in questions if q.style in has and not has[q.style](text[q.expected_urls[0]])]
    assert wrong == []


def test_questions_are_written_in_their_locale(questions):
    assert [q.question for q in questions if q.locale == "ur" and not ARABIC_SCRIPT.search(q.question)] == []
    assert [q.question for q in questions if q.locale == "en" and ARABIC_SCRIPT.search(q.question)] == []


def test_no_question_is_repeated_or_taken_from_the_regression_set(questions):
    seen = Counter(normalized(q.question) for q in questions)
    assert [text for text, n in seen.items() if n > 1] == []
    old = {normalized(entry["question"]) for path in sorted(ONTOPIC_PATH.parent.glob("questions-part*.yaml"))
           for entry in yaml.safe_load(path.read_text(encoding="utf-8"))}
    assert old, "the regression set is where the old questions live"
    assert sorted(set(seen) & old) == []
