"""The language of a question from its script, for requests that do not say which locale they are in."""

from __future__ import annotations

import unicodedata

DEFAULT_LOCALE = "en"


def locale_of(text: str) -> str:
    """`ur` when most of the text's letters are in the Arabic script (Urdu, as the site's second locale), else `en`.

    Counting letters, not characters, keeps a Urdu question with an English term in it ("ROS 2 میں topic کیا ہے؟")
    in Urdu and an English question that quotes one Urdu word in English.
    """
    arabic = latin = 0
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith("ARABIC"):
            arabic += 1
        elif name.startswith("LATIN"):
            latin += 1
    return "ur" if arabic > latin else DEFAULT_LOCALE
