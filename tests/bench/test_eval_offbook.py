"""The evaluation sets beside the books: near-topic questions the textbook does not answer (their absence
proved by grepping both locales) and paraphrased Rust-book questions (their files present in the corpus),
each split so that nothing leaks from calibration to held-out."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.eval_absence import main as check_absence
from bench.eval_absence import normalise
from bench.eval_offbook import (
    EVAL_DIR,
    SPLITS,
    load_rust_paraphrased,
    load_textbook_neartopic,
    rust_split_for,
)

NEAR = load_textbook_neartopic()
RUST = load_rust_paraphrased()
URDU_SCRIPT_RE = re.compile(r"[\u0600-\u06FF]")
LATIN_RE = re.compile(r"[A-Za-z]")
CATEGORIES = {"tool", "product", "person", "organisation", "standard", "topic", "overlap"}
NEAR_STYLES = {"short", "acronym", "misspelled", "how-do-i", "conceptual", "loanword"}
RUST_STYLES = {"short", "how-do-i", "error-message", "code-fact", "conceptual"}


def question_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).casefold()).split())


# ---- near-topic questions -------------------------------------------------------------------------------

def test_no_absent_term_occurs_in_either_locale_of_the_textbook(capsys):
    assert check_absence([]) == 0, capsys.readouterr().out
    assert "all absent" in capsys.readouterr().out


def test_the_absence_check_fails_listing_a_term_the_book_uses(tmp_path, capsys):
    questions = tmp_path / "set.yaml"
    questions.write_text(yaml.safe_dump([
        {"question": "How does a Kalman filter fuse odometry?", "locale": "en", "category": "overlap", "topic": "t",
         "style": "how-do-i", "absent_terms": ["Kalman", "Nav2"], "split": "calibration"},
        # Arabic letter forms (ك, ي) of the Urdu chapters' words must still be found
        {"question": "كالمن فلٹر؟", "locale": "ur", "category": "overlap", "topic": "t", "style": "short",
         "absent_terms": ["كالمن"], "split": "calibration"},
    ], allow_unicode=True))
    assert check_absence(["--set", str(questions)]) == 1
    out = capsys.readouterr().out
    assert "FOUND 'Kalman'" in out and "FOUND 'كالمن'" in out and "'Nav2'" not in out
    assert "docs/perception-and-sensor-fusion.md" in out and "i18n/ur/" in out


def test_terms_match_where_a_word_starts_not_inside_one(tmp_path, capsys):
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "page.md").write_text("A rapid controller drives the drones.\n")
    questions = tmp_path / "set.yaml"
    questions.write_text(yaml.safe_dump([
        {"question": "q", "locale": "en", "category": "overlap", "topic": "t", "style": "short",
         "absent_terms": ["PID", "drone"], "split": "calibration"}]))
    assert check_absence(["--set", str(questions), "--site", str(site)]) == 1
    out = capsys.readouterr().out
    assert "FOUND 'drone'" in out and "'PID'" not in out


def test_near_topic_entries_are_well_formed_and_not_from_the_off_topic_set():
    off_topic = {question_key(e["question"]) for e in yaml.safe_load((EVAL_DIR / "off_topic.yaml").read_text())}
    keys = Counter(question_key(q.question) for q in NEAR)
    assert [k for k, n in keys.items() if n > 1] == []
    assert off_topic.isdisjoint(keys)
    for q in NEAR:
        assert q.locale in {"en", "ur"} and q.category in CATEGORIES and q.style in NEAR_STYLES, q
        assert q.split in SPLITS and q.topic and q.absent_terms, q
        if q.locale == "ur":
            assert URDU_SCRIPT_RE.search(q.question), q.question
            # the Urdu chapters may spell a name in either script
            assert any(URDU_SCRIPT_RE.search(t) for t in q.absent_terms), q
            assert any(LATIN_RE.search(t) for t in q.absent_terms), q
        else:
            assert not URDU_SCRIPT_RE.search(q.question), q.question


def test_near_topic_halves_split_by_topic_and_share_no_term():
    topic_splits = {}
    for q in NEAR:
        assert topic_splits.setdefault(q.topic, q.split) == q.split, f"topic {q.topic} is in both halves"
    term_splits: dict[str, set[str]] = {}
    for q in NEAR:
        for term in q.absent_terms:
            term_splits.setdefault(normalise(term), set()).add(q.split)
    assert {t: s for t, s in term_splits.items() if len(s) > 1} == {}


def test_the_near_topic_set_is_large_and_a_third_urdu():
    assert len(NEAR) >= 120
    assert sum(q.locale == "ur" for q in NEAR) >= max(40, len(NEAR) // 3)


@pytest.mark.parametrize("split", SPLITS)
def test_each_near_topic_half_has_both_locales_and_every_category(split):
    half = load_textbook_neartopic(split)
    assert sum(q.locale == "en" for q in half) >= 40
    assert sum(q.locale == "ur" for q in half) >= 20
    assert {q.category for q in half} == CATEGORIES
    assert {q.style for q in half} == NEAR_STYLES


# ---- paraphrased Rust-book questions --------------------------------------------------------------------

def test_every_rust_question_names_files_of_the_corpus(shared_dir: Path):
    corpus = shared_dir / "corpora" / "rust-book"
    missing = sorted({f for q in RUST for f in q.accepted_files if not (corpus / f).is_file()})
    assert missing == [], f"not in {corpus}: {missing}"


def test_rust_questions_name_the_pages_the_index_gives_those_files(shared_dir: Path):
    from app.rag.chunking import doc_page_url
    from app.rag.markdown import parse_document

    corpus = shared_dir / "corpora" / "rust-book"
    for name in sorted({f for q in RUST for f in q.accepted_files}):
        document = parse_document((corpus / name).read_bytes(), fallback_title=name)
        indexed = doc_page_url(name, locale="en", front_matter=document.front_matter)
        assert indexed == f"/docs/{Path(name).stem}"
    assert RUST[0].accepted_page_urls[0] == f"/docs/{Path(RUST[0].expected_file).stem}"


def test_rust_questions_split_by_chapter_number():
    assert rust_split_for("ch04-01-what-is-ownership.md") == "calibration"
    assert rust_split_for("ch13-02-iterators.md") == "held-out"
    assert rust_split_for("appendix-03-derivable-traits.md") == "held-out"
    for q in RUST:
        assert {rust_split_for(f) for f in q.accepted_files} == {q.split}, q


def test_rust_entries_are_well_formed_and_unique():
    keys = Counter(question_key(q.question) for q in RUST)
    assert [k for k, n in keys.items() if n > 1] == []
    for q in RUST:
        assert q.style in RUST_STYLES and q.expected_file not in q.also_ok, q
    with pytest.raises(ValueError, match="unknown split"):
        load_rust_paraphrased("test")


def test_the_rust_set_is_large_and_spread_over_the_book():
    assert len(RUST) >= 100
    assert len({q.expected_file for q in RUST}) >= 40


@pytest.mark.parametrize("split", SPLITS)
def test_each_rust_half_is_large_enough_and_mixes_styles(split):
    half = load_rust_paraphrased(split)
    assert len(half) >= 45
    assert {q.style for q in half} == RUST_STYLES
