"""BM25-style sparse vectors computed locally, for English, Urdu and code.

Documents get saturated term frequencies (BM25's k1/b); the vector index applies IDF (Qdrant's IDF
modifier), so query . document = BM25. Tokens are hashed into the u32 index space.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

K1 = 1.2
B = 0.75
AVERAGE_DOC_TOKENS = 120.0

# Part of every chunk's content hash (app/rag/chunking.py): bump it when tokenize() changes, so the next
# ingest rewrites every chunk's sparse vector instead of mixing old and new tokens in one index.
SPARSE_TOKENIZER_VERSION = 2

# Arabic-script normalisation, the same at index and query time: diacritics (zer, zabar, pesh, tanween,
# shadda, superscript alef) and tatweel dropped; zero-width joiners dropped; the Arabic letter variants a
# reader's keyboard may type folded into the Urdu letters the book uses (yeh, kaf, heh, teh marbuta, hamza
# seats); Arabic-Indic and Urdu digits read as 0-9. Heh doachashmee (ھ, aspiration) stays apart from heh goal.
URDU_DIACRITICS_RE = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed\u0640\u200b-\u200d\u2060\ufeff]")
URDU_FOLD = str.maketrans({
    "ي": "ی", "ى": "ی", "ې": "ی", "ك": "ک", "ڪ": "ک", "ه": "ہ", "ۀ": "ہ", "ة": "ہ", "ۃ": "ہ",
    "أ": "ا", "إ": "ا", "ٱ": "ا", "ۓ": "ئے",
    **{chr(0x0660 + d): str(d) for d in range(10)}, **{chr(0x06F0 + d): str(d) for d in range(10)},
})

TOKEN_RE = re.compile(
    r"""
    (?P<path>[A-Za-z_]\w*(?:::[A-Za-z_]\w*)+)                 # std::io::Result
  | (?P<generic>[A-Za-z_]\w*<[\w\s,&'<>]{1,40}?>(?!>))        # Vec<T>, Result<T, E>
  | (?P<refmut>&mut\b)                                       # &mut
  | (?P<op>->|=>|::|\.\.=?|\#\[|!=|==)                        # code operators
  | (?P<word>[^\W_](?:[\w'’]*[^\W_])?)                        # words, identifiers, Urdu words
  | (?P<qmark>\?)
    """,
    re.VERBOSE,
)

ENGLISH_STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does did for from had has have how i if in into is it
    its me my of on or our so than that the their them then there these they this to was we were what when
    where which while who why will with would you your about should shall may might also more most such
    use used using one two get""".split()
)
URDU_STOPWORDS = frozenset(
    """کا کی کے ہے ہیں میں اور سے کو پر یہ وہ ایک بھی نہیں تو جو کہ ہو تھا تھی تھے گیا گئی کر کیا کیسے کیوں
    کون کس لیے لئے ان اس جب تک ہی یا اگر ہوتا ہوتی ہوتے جاتا جاتی جاتے رہا رہی رہے والا والی والے
    بہت کچھ سکتا سکتی سکتے ہم آپ مجھے کریں کرتا کرتی کرتے""".split()
)


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = URDU_DIACRITICS_RE.sub("", text).translate(URDU_FOLD)
    return text.lower()


def _english_stem(word: str) -> str:
    if not word.isascii() or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _split_identifier(word: str) -> list[str]:
    parts = [p for p in re.split(r"_+", word) if p]
    return parts if len(parts) > 1 else []


@lru_cache(maxsize=8192)
def terms_of_text(text: str) -> frozenset[str]:
    """The distinct tokens of a text. Chunks and their sentences are read again by every query that finds them,
    so their terms are kept (a few thousand texts: the index's chunks and their evidence units)."""
    return frozenset(tokenize(text))


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: words (stemmed lightly, stop words dropped) plus code tokens kept whole."""
    tokens: list[str] = []
    original = unicodedata.normalize("NFKC", text)
    normalized = normalize(text)
    for match in TOKEN_RE.finditer(normalized):
        kind = match.lastgroup
        value = match.group()
        if kind == "word":
            if value in ENGLISH_STOPWORDS or value in URDU_STOPWORDS:
                continue
            tokens.append(_english_stem(value))
            tokens.extend(_english_stem(p) for p in _split_identifier(value))
        elif kind == "path":
            tokens.append(value)
            tokens.extend(p for p in value.split("::") if p not in ENGLISH_STOPWORDS)
        elif kind == "generic":
            compact = re.sub(r"\s+", "", value)
            tokens.append(compact)
            tokens.append(compact.split("<", 1)[0])
        elif kind == "refmut":
            tokens.extend(["&mut", "mut"])
        elif kind == "op":
            tokens.append(value)
        elif kind == "qmark" and _is_code_question_mark(original, match.start()):
            tokens.append("?")
    return tokens


def _is_code_question_mark(text: str, index: int) -> bool:
    """`?` as Rust's operator (`foo()?;`, `the ? operator`), not the end of a question."""
    before = text[index - 1] if index > 0 else " "
    after = text[index + 1] if index + 1 < len(text) else ""
    if before == ")" or after in {";", ")"}:
        return True
    return before.isspace() and after.isspace()


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


def token_index(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"))


def _to_vector(weights: dict[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector(indices=[i for i, _ in ordered], values=[round(v, 6) for _, v in ordered])


def document_vector(text: str) -> SparseVector:
    tokens = tokenize(text)
    length_norm = 1 - B + B * (len(tokens) / AVERAGE_DOC_TOKENS)
    weights: dict[int, float] = {}
    for token, tf in Counter(tokens).items():
        index = token_index(token)
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + K1 * length_norm)
    return _to_vector(weights)


def query_vector(text: str, *, related: Iterable[str] = (), related_weight: float = 0.5) -> SparseVector:
    """Each of the text's tokens with weight 1; `related` tokens (the book's other spellings and forms of the
    question's words) with `related_weight`, unless the text has them itself."""
    weights: dict[int, float] = {token_index(token): related_weight for token in related}
    for token in set(tokenize(text)):
        weights[token_index(token)] = 1.0
    return _to_vector(weights)
