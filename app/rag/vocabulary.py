"""The words the whole book uses, to find a question's terms it never uses (coverage evidence).

A question about Nav2, MoveIt 2, Docker or Asimov names something the book never mentions, however well
its other words (robot, navigation, laws) match. Terms the book never uses are the question's own
evidence against coverage; a misspelling of a word the book uses ("kalmen", "whats") is not one of them.

The same pass mines the book's own acronyms ("Vision-Language-Action (VLA)"): a question that uses only the
short form ("What does VLA stand for?") is searched with the long form as well.

The vocabulary is read from the live index (every chunk's text and heading path, all locales: an Urdu
question may name a tool in Latin script) and read again when the index's generation changes.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

from app.rag.sparse import ENGLISH_STOPWORDS, URDU_STOPWORDS, normalize, tokenize
from app.rag.vector_index import SearchRequest

# Words of a reader's question that the book need not use to be about it.
QUESTION_WORDS = frozenset(
    """explain tell describe meaning mean means define definition difference between example examples work works
    happen happens need needs want know book chapter chapters please show compare thing things way ways whats vs""".split()
)
MAX_CHUNKS = 100_000
MIN_FUZZY_CHARS = 5  # shorter terms must match exactly (ZMP is not IMU)
# "Long Form (LF)": up to eight words before an acronym in parentheses.
ACRONYM_RE = re.compile(r"((?:[A-Za-z][\w]*[\s\-\u2010-\u2015/]+){1,8})\(([A-Z][A-Za-z0-9]{1,7}?)s?\)")
LATIN_WORD_RE = re.compile(r"[A-Za-z][\w'’\-]*")
WORD_SPLIT_RE = re.compile(r"[\s\-\u2010-\u2015/]+")


# "URDF: the Unified Robot Description Format" (a heading's usual form): the long form after the colon.
# The long form is read in a lookahead, so "Robots: URDF and SDF URDF: the ..." (a heading path) finds the second.
COLON_ACRONYM_RE = re.compile(r"(?<![\w-])([A-Z][A-Za-z0-9]{1,7}?)s?:(?=[ \t]+(?:(?:the|an?)[ \t]+)?"
                              r"((?:[A-Za-z][\w]*[ \t\-\u2010-\u2015/]+){0,7}[A-Za-z][\w]*))")


def _spells(short: str, words: list[str]) -> bool:
    """The words' initials spell the acronym (its capitals and digits), two letters at least."""
    letters = [ch.lower() for ch in short if ch.isupper() or ch.isdigit()]
    return len(letters) >= 2 and [w[0].lower() for w in words] == letters


def acronyms_in(text: str) -> dict[str, str]:
    """{"vla": "Vision-Language-Action"} for each "Vision-Language-Action (VLA)" whose initials spell the acronym,
    and each "URDF: the Unified Robot Description Format"."""
    found: dict[str, str] = {}
    for match in ACRONYM_RE.finditer(text):
        short, words = match.group(2), _words(match.group(1))
        candidate = words[-_letter_count(short):]  # the long form ends just before the parenthesis
        if _spells(short, candidate):
            found.setdefault(short.lower(), " ".join(candidate))
    for match in COLON_ACRONYM_RE.finditer(text):
        short, words = match.group(1), _words(match.group(2))
        candidate = words[:_letter_count(short)]  # the long form starts just after the colon
        if _spells(short, candidate):
            found.setdefault(short.lower(), " ".join(candidate))
    return found


PRONOUN_I_RE = re.compile(r"I(?:['’](?:m|ve|d|ll))?")
SENTENCE_END_RE = re.compile(r"(?:^|[.!?:;\n])[\s\"'“‘(\[*_]*$")


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` begins the text or a sentence of it (after . ! ? : ; or a line break)."""
    return SENTENCE_END_RE.search(text[:start]) is not None


# English letters as Urdu writes their names: readers spell acronyms out ("یو آر ڈی ایف" for URDF).
URDU_LETTER_NAMES = {normalize(name): letter for name, letter in {
    "اے": "A", "بی": "B", "سی": "C", "ڈی": "D", "ای": "E", "ایف": "F", "جی": "G", "ایچ": "H", "آئی": "I", "جے": "J",
    "کے": "K", "ایل": "L", "ایم": "M", "این": "N", "او": "O", "پی": "P", "کیو": "Q", "آر": "R", "ایس": "S", "ٹی": "T",
    "یو": "U", "وی": "V", "ڈبلیو": "W", "ایکس": "X", "وائی": "Y", "زیڈ": "Z",
}.items()}
GENITIVE_KE = normalize("کے")  # also the letter K; "ROS کے نوڈ" is ROS's nodes, so it never ends or starts a run
TRAILING_PUNCTUATION_RE = re.compile(r"(.*?)([؟?،,۔.!:;)\]\"'”’]*)", re.S)


def spelled_out_acronyms(question: str) -> str:
    """The question with each run of two or more Urdu letter names written as the Latin acronym it spells
    ("یو آر ڈی ایف فائل" -> "URDF فائل"), so that it is searched, and judged known or unknown, as the book writes it."""
    if not ARABIC_LETTER_RE.search(question):
        return question
    pieces: list[str] = []
    run: list[str] = []
    spelled = False

    def end_run() -> None:
        nonlocal spelled
        letters = [normalize(w) for w in run]
        start, stop = 0, len(letters)
        while start < stop and letters[start] == GENITIVE_KE:
            start += 1
        while stop > start and letters[stop - 1] == GENITIVE_KE:
            stop -= 1
        if stop - start >= 2:
            spelled = True
            pieces.extend([*run[:start], "".join(URDU_LETTER_NAMES[w] for w in letters[start:stop]), *run[stop:]])
        else:
            pieces.extend(run)
        run.clear()

    for token in question.split():
        word, punctuation = TRAILING_PUNCTUATION_RE.fullmatch(token).groups()  # type: ignore[union-attr]
        if normalize(word) in URDU_LETTER_NAMES:
            run.append(word)
            if not punctuation:
                continue
            end_run()
            pieces[-1] += punctuation
            continue
        end_run()
        pieces.append(token)
    end_run()
    return " ".join(pieces) if spelled else question


# Words of a greeting or thanks: a sentence made only of them says nothing about what is asked ("Hi! What is a node?").
PLEASANTRIES = frozenset(normalize(w) for w in """hi hello hey thanks thank you please ok okay dear sir madam hiya cheers
    there greetings good morning afternoon evening سلام السلام علیکم اسلام شکریہ ہیلو ہائے مہربانی جزاک اللہ""".split())
SENTENCE_RE = re.compile(r"[^.!?؟۔\n]+[.!?؟۔\n]*")


def without_pleasantries(question: str) -> str:
    """The question without its sentences of greeting or thanks, unless nothing else is left."""
    sentences = SENTENCE_RE.findall(question)
    kept = [s for s in sentences
            if not all(normalize(w) in PLEASANTRIES for w in re.findall(r"[^\W\d_]+", s)) or not s.strip()]
    return "".join(kept).strip() if kept and len(kept) < len(sentences) else question


def _words(text: str) -> list[str]:
    return [w for w in WORD_SPLIT_RE.split(text.strip()) if w]


def _letter_count(short: str) -> int:
    return max(1, sum(ch.isupper() or ch.isdigit() for ch in short))


# Urdu inflection endings (plural, oblique, gender), longest first; a word keeps at least three letters.
URDU_ENDINGS = ("یاں", "ئیں", "ؤں", "وں", "یں", "ئے", "ات", "ں", "ے", "ی", "ا")
ARABIC_LETTER_RE = re.compile("[\u0600-\u06ff]")


def word_family(word: str) -> str:
    """A crude stem of an Urdu word (its inflection ending dropped); other words are their own family."""
    if not ARABIC_LETTER_RE.match(word):
        return word
    for ending in URDU_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word


# "ادراکی سائنس (cognitive science)": the Urdu text glosses its terms with the English ones in parentheses.
GLOSS_RE = re.compile(r"((?:[\u0600-\u06ff]+\s+){0,2}[\u0600-\u06ff]+)\**\s*\(([A-Za-z][A-Za-z0-9 \-]{1,40})\)")


def glosses_in(text: str) -> dict[str, list[str]]:
    """{English term's tokens (joined): the Urdu words before it} for each "اردو الفاظ (English term)"; as many
    Urdu words as the English term has words, at least two (the glossed term may be a word and its qualifier)."""
    found: dict[str, list[str]] = {}
    for match in GLOSS_RE.finditer(text):
        english = tokenize(match.group(2))
        if not english:
            continue
        urdu = match.group(1).split()[-max(2, len(match.group(2).split())):]
        found.setdefault(" ".join(english), [t for t in tokenize(" ".join(urdu))])
    return found


# Readers write the book's English terms in Urdu letters (لانچ, پیتھون, گیزبو for launch, Python, Gazebo). Both
# spellings reduce to a skeleton of consonant classes, vowels and h, w, y dropped: گیزبو and gazebo are both "gzb".
LATIN_DIGRAPHS = (("tion", "Xn"), ("sion", "Xn"), ("sh", "X"), ("ch", "C"), ("ph", "f"), ("th", "t"), ("ck", "k"),
                  ("qu", "k"), ("x", "ks"))
URDU_CONSONANTS = {normalize(letter): skeleton for letters, skeleton in (
    ("ب", "b"), ("پ", "p"), ("تٹط", "t"), ("ثسص", "s"), ("ج", "j"), ("چ", "C"), ("خکق", "k"), ("گغ", "g"), ("دڈ", "d"),
    ("ذزضظژ", "z"), ("رڑ", "r"), ("ش", "X"), ("ف", "f"), ("ل", "l"), ("م", "m"), ("نں", "n"),
) for letter in letters}
MIN_SKELETON_CONSONANTS = 3


def _collapsed(classes: str) -> str:
    return re.sub(r"(.)\1+", r"\1", classes)


def latin_skeleton(word: str) -> str:
    word = word.lower()
    for spelling, skeleton in LATIN_DIGRAPHS:
        word = word.replace(spelling, skeleton)
    word = re.sub(r"c(?=[eiy])", "s", word).replace("c", "k")
    return ("_" if word[:1] in "aeiou" else "") + _collapsed(re.sub(r"[aeiouyhwv]", "", word))


def urdu_skeleton(word: str) -> str:
    return ("_" if word[:1] in "اآع" else "") + _collapsed("".join(URDU_CONSONANTS.get(ch, "") for ch in word))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


class BookVocabulary:
    """`unknown(question)`: the question's terms the book never uses, misspellings of its words excepted."""

    def __init__(self, index: Any, dimensions: int) -> None:
        self._index = index
        self._dimensions = dimensions
        self._lock = threading.Lock()
        self._version: object = None
        self._terms: frozenset[str] = frozenset()
        self._near: dict[str, set[str]] = {}
        self._acronyms: dict[str, str] = {}
        self._families: dict[str, set[str]] = {}
        self._glosses: dict[str, list[str]] = {}
        self._chunk_counts: Counter[str] = Counter()
        self._latin_by_skeleton: dict[str, list[str]] = {}

    def _current_version(self) -> object:
        generation = getattr(self._index, "generation", None)
        return generation if generation is not None else self._index.count()

    def _load(self) -> None:
        version = self._current_version()
        if version == self._version and self._terms:
            return
        with self._lock:
            if version == self._version and self._terms:
                return
            probe = [0.0] * (self._dimensions - 1) + [1.0]
            hits = self._index.search(SearchRequest(dense=probe, sparse=None, limit=MAX_CHUNKS, mode="dense"))
            chunk_counts: Counter[str] = Counter()  # in how many chunks each term occurs; its keys: every term
            acronyms: dict[str, str] = {}
            glosses: dict[str, list[str]] = {}
            latin_in_urdu: set[str] = set()  # the English terms the Urdu text keeps in Latin letters
            for hit in hits:
                text = f"{hit.payload.get('text', '')} {' '.join(hit.payload.get('heading_path', []))}"
                chunk_terms = set(tokenize(text))
                chunk_counts.update(chunk_terms)
                if ARABIC_LETTER_RE.search(text):
                    latin_in_urdu.update(t for t in chunk_terms if t.isascii() and t.isalpha())
                for english, urdu in glosses_in(text).items():
                    glosses.setdefault(english, urdu)
                for short, long in acronyms_in(text).items():
                    acronyms.setdefault(short, long)
            terms = frozenset(chunk_counts)
            near: dict[str, set[str]] = {}
            for word in terms | ENGLISH_STOPWORDS | URDU_STOPWORDS | QUESTION_WORDS:
                if len(word) >= MIN_FUZZY_CHARS - 1:
                    for variant in _deletions(word) | {word}:
                        near.setdefault(variant, set()).add(word)
            families: dict[str, set[str]] = {}
            for word in terms:
                families.setdefault(word_family(word), set()).add(word)
            latin_by_skeleton: dict[str, list[str]] = {}
            for word in sorted(latin_in_urdu):
                skeleton = latin_skeleton(word)
                if len(skeleton.strip("_")) >= MIN_SKELETON_CONSONANTS:
                    latin_by_skeleton.setdefault(skeleton, []).append(word)
            # Read after the search: a reader opens the live generation on its first search.
            self._terms, self._near, self._acronyms, self._families = terms, near, acronyms, families
            self._glosses, self._chunk_counts, self._latin_by_skeleton = glosses, chunk_counts, latin_by_skeleton
            self._version = self._current_version()

    def knows(self, term: str) -> bool:
        """The book uses the term, or the term is one edit (typo, missing or extra letter) from a word it uses."""
        if self.knows_exactly(term):
            return True
        if len(term) < MIN_FUZZY_CHARS:
            return False
        return any(variant in self._near for variant in _deletions(term) | {term})

    def spelling_variants(self, question: str) -> list[str]:
        """The book's words one edit away from a question's term the book never uses ("remaping" -> "remapping",
        "سمیولیشن" -> "سمولیشن"): searched beside the reader's spelling."""
        self._load()
        variants: list[str] = []
        for term in dict.fromkeys(tokenize(question)):
            if len(term) < MIN_FUZZY_CHARS or self.knows_exactly(term):
                continue
            for variant in _deletions(term) | {term}:
                variants.extend(word for word in self._near.get(variant, ()) if word in self._terms)
        return list(dict.fromkeys(variants))

    def inflections(self, question: str) -> list[str]:
        """The book's other forms of the question's Urdu words (ٹانگوں -> ٹانگ, ٹانگیں), which the sparse
        tokenizer does not stem."""
        self._load()
        forms: list[str] = []
        for term in dict.fromkeys(tokenize(question)):
            family = word_family(term)
            if family != term or family in self._families:
                forms.extend(w for w in sorted(self._families.get(family, ())) if w != term)
        return list(dict.fromkeys(forms))

    def urdu_glosses(self, question: str) -> list[str]:
        """For a question in Urdu, the book's Urdu words for the English terms it uses ("ROS graph" ->
        "گراف" where the book writes "... گراف (ROS graph)"): readers type the English term, the book writes Urdu."""
        self._load()
        if not ARABIC_LETTER_RE.search(question):
            return []
        tokens = [t for t in tokenize(question) if t.isascii()]
        words: list[str] = []
        for length in (3, 2, 1):
            for start in range(len(tokens) - length + 1):
                words.extend(self._glosses.get(" ".join(tokens[start:start + length]), ()))
        return list(dict.fromkeys(words))

    def transliterations(self, question: str) -> dict[str, list[str]]:
        """The question's Urdu words the book does not use, each with the English term of the Urdu text that sounds
        the same (لانچ -> launch, پیتھون -> python): searched beside them (a guess, never counted as found)."""
        self._load()
        found: dict[str, list[str]] = {}
        for term in dict.fromkeys(tokenize(question)):
            if not ARABIC_LETTER_RE.match(term) or self.knows_exactly(term) or self._inflects_a_book_word(term):
                continue
            skeleton = urdu_skeleton(term)
            forms = self._latin_by_skeleton.get(skeleton, []) if len(skeleton.strip("_")) >= MIN_SKELETON_CONSONANTS else []
            if len(forms) == 1:  # لائیڈار could be lidar or leader: a guess between two would mislead the search
                found[term] = forms
        return found

    def unknown_urdu_words(self, question: str, transliterated: dict[str, list[str]]) -> list[str]:
        """The question's Urdu-script words the book knows in no form (not a misspelling, an inflection or one of
        the question's `transliterations`): a name written in Urdu letters (اینڈرائیڈ), which `unknown_names`,
        reading Latin letters, cannot tell from a plain word."""
        return [term for term in self.unknown(question) if ARABIC_LETTER_RE.match(term) and term not in transliterated
                and not self._inflects_a_book_word(term)]

    def _inflects_a_book_word(self, term: str) -> bool:
        return word_family(term) in self._families

    def knows_exactly(self, term: str) -> bool:
        return term in self._terms or term in QUESTION_WORDS or term in ENGLISH_STOPWORDS or term in URDU_STOPWORDS

    def unknown(self, question: str) -> list[str]:
        self._load()
        return [term for term in dict.fromkeys(tokenize(question)) if not self.knows(term)]

    def _names(self, question: str) -> list[str]:
        """The question's words written like a name: Nav2, MoveIt, RViz, a capitalised word inside a sentence.
        A sentence's first word ("... Please explain") and the pronoun's contractions (I'm, I've) are not names."""
        names = []
        for match in LATIN_WORD_RE.finditer(question):
            word = match.group()
            if PRONOUN_I_RE.fullmatch(word):
                continue
            if (any(ch.isupper() for ch in word[1:]) or (word[0].isupper() and not _starts_sentence(question, match.start()))
                    or (any(ch.isdigit() for ch in word) and len(word) >= 3)):
                names.append(word)
        return names

    def rare_names(self, question: str, max_chunks: int) -> list[str]:
        """The question's names (their terms) that the book uses, in at most `max_chunks` chunks: Optimus, Tesla,
        Unitree; not ROS or Gazebo, which half a chapter uses."""
        self._load()
        rare = []
        for word in self._names(question):
            for term in tokenize(word):
                if 0 < self._chunk_counts.get(term, 0) <= max_chunks and term not in QUESTION_WORDS:
                    rare.append(term)
        return list(dict.fromkeys(rare))

    def unknown_names(self, question: str) -> list[str]:
        """The question's names the book never uses: written like a name (Nav2, MoveIt, RViz, a capitalised
        word inside the sentence) and unknown to the book. Plain words the book does not happen to use
        ("downhill", "recap") are not evidence: readers word their questions their own way."""
        unknown = set(self.unknown(question))
        if not unknown:
            return []
        return [word for word in self._names(question) if set(tokenize(word)) & unknown]

    def expand(self, question: str) -> str:
        """The question with the long form of each of the book's acronyms it uses, when it lacks it."""
        self._load()
        lowered = question.lower()
        extra = [long for short, long in self._acronyms.items()
                 if re.search(rf"(?<![\w-]){re.escape(short)}s?(?![\w-])", lowered) and long.lower() not in lowered]
        return f"{question} ({'; '.join(extra)})" if extra else question
