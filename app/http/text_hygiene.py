"""Clean reader text before it is searched, stored or sent to a model: Unicode normalisation, no control characters.

NFC composes what can be composed, as the indexed book is; compatibility forms that only copy-paste produces
(Arabic presentation forms from PDFs, full-width Latin) are folded to the letters the index holds (NFKC on those
characters only: `m/s²` stays as written). Control and format characters are removed (NUL, escape sequences,
bidi overrides, lone surrogates), except newline and tab and the zero-width (non-)joiners U+200C/U+200D that
Urdu and other scripts spell with.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

KEPT_FORMAT = {"\u200c", "\u200d", "\n", "\t"}
REMOVED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SPACES = re.compile(r"[^\S\n]+")
_COMPATIBILITY_FORMS = re.compile(r"[\uFB50-\uFDFF\uFE70-\uFEFE\uFF01-\uFFEE]+")


def clean_text(value: str) -> str:
    value = "".join(ch for ch in value if ch in KEPT_FORMAT or unicodedata.category(ch) not in REMOVED_CATEGORIES)
    value = _COMPATIBILITY_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group()), value)
    return _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip()


def _question(value: str) -> str:
    cleaned = clean_text(value)
    if not cleaned:
        raise ValueError("the text is empty once control characters and spaces are removed")
    return cleaned


def _comment(value: str | None) -> str | None:
    return None if value is None else (clean_text(value) or None)


# The schema's length limits apply to what the reader sent; the cleaning runs after them.
CleanText = Annotated[str, AfterValidator(_question)]
CleanComment = Annotated[str | None, AfterValidator(_comment)]
