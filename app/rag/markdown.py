"""Parse a Markdown / MDX chapter into clean text the chunker can cut.

Keeps prose, headings, tables, admonitions (as text) and code fences. Drops front matter (parsed
separately), MDX import/export lines, JSX component tags (their children stay), HTML comments and tags,
and mdBook directives such as `{{#include ...}}` that cannot be resolved without the book's build.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


class MalformedDocument(ValueError):
    """A file that cannot be read as a chapter (bad UTF-8, broken front matter)."""


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    description: str | None
    body: str
    front_matter: dict[str, Any] = field(default_factory=dict)


FENCE_RE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})(.*)$")
TABLE_SEPARATOR_RE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
# What ends a sentence in the book's languages: Latin and Urdu (full stop "۔", question mark "؟").
SENTENCE_END_CHARS = ".!?۔؟"
SENTENCE_BOUNDARY_RE = re.compile(rf"(?<=[{SENTENCE_END_CHARS}])\s+")
MDX_IMPORT_RE = re.compile(r"^\s*(import\s.+\sfrom\s+['\"].+['\"];?|import\s+['\"].+['\"];?|export\s+.+)\s*$")
JSX_TAG_LINE_RE = re.compile(r"^\s*</?[A-Z][\w.]*(\s[^<>]*)?/?>\s*$")
MDBOOK_DIRECTIVE_RE = re.compile(r"\{\{#[a-z_]+[^}]*\}\}")
HTML_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
MDX_COMMENT_RE = re.compile(r"\{/\*.*?\*/\}", re.DOTALL)
HTML_TAG_RE = re.compile(r"</?[a-zA-Z][\w-]*(\s[^<>]*)?/?>")
ADMONITION_OPEN_RE = re.compile(r"^\s*:::\s*(note|tip|info|warning|danger|caution|important)\b\s*(.*)$", re.I)
ADMONITION_CLOSE_RE = re.compile(r"^\s*:::\s*$")
H1_RE = re.compile(r"^#\s+(.+?)\s*#*\s*$")
# Docusaurus's MDX comment syntax for explicit heading ids: `## Text {/* #id */}` (in .mdx). In CommonMark
# files it does not read `<!-- #id -->` as an id: the comment just disappears from the heading's text.
HEADING_COMMENT_ID_RE = re.compile(r"^( {0,3}#{1,6}[ \t].*?)[ \t]*\{/\*\s*#([^\s*]+).*?\*/\}[ \t]*$", re.M)
ATX_HEADING_RE = re.compile(r"^ {0,3}#{1,6}[ \t]")
CODE_SPAN_RE = re.compile(r"(`+).+?\1")


LineKind = Literal["text", "fence-open", "code", "fence-close"]


@dataclass(frozen=True)
class MarkdownLine:
    """One line of a Markdown text, with where it stands relative to code fences."""

    text: str
    kind: LineKind

    @property
    def is_code(self) -> bool:
        """A fence line or a line inside a fence: quoted verbatim, never read as prose or a heading."""
        return self.kind != "text"


def scan_lines(lines: Iterable[str]) -> Iterator[MarkdownLine]:
    """Classify lines as text or code, by CommonMark's fence rules.

    A fence opens with three or more backticks or tildes (indented up to three spaces) and closes only with
    a run of the same character, at least as long, and nothing after it: "```" inside "````", or "~~~" inside
    "```", is code. A fence that never closes runs to the end of the text.
    """
    fence: str | None = None
    for line in lines:
        match = FENCE_RE.match(line)
        if fence is None:
            if match:
                fence = match.group(2)
                yield MarkdownLine(line, "fence-open")
            else:
                yield MarkdownLine(line, "text")
        elif match and _closes(fence, run=match.group(2), rest=match.group(3)):
            fence = None
            yield MarkdownLine(line, "fence-close")
        else:
            yield MarkdownLine(line, "code")


def _closes(fence: str, *, run: str, rest: str) -> bool:
    return run[0] == fence[0] and len(run) >= len(fence) and not rest.strip()


# Words the book writes with a period that does not end its sentence ("e.g. Gazebo", "Smith et al. (2017)").
ABBREVIATIONS = frozenset("e.g i.e approx cf vs fig figs eq eqs al resp incl sec ch vol no nos dr mr mrs ms prof".split())


def split_sentences(text: str) -> list[str]:
    """The text cut after each sentence end (the whitespace between sentences dropped, nothing else). A period
    followed by a lowercase word ("approx. height") or after an abbreviation ("e.g. Gazebo") is not an end: a table
    row quoted as "Approx. height: ~1.7 m" was cut in two there, and its first half dropped as an uncited claim."""
    pieces: list[str] = []
    start = 0
    for boundary in SENTENCE_BOUNDARY_RE.finditer(text):
        before = text[start:boundary.start()]
        if before.endswith(".") and (text[boundary.end():boundary.end() + 1].islower() or _abbreviation_ends(before)):
            continue
        pieces.append(before)
        start = boundary.end()
    pieces.append(text[start:])
    return pieces


def _abbreviation_ends(text: str) -> bool:
    words = text[:-1].rsplit(None, 1)
    return bool(words) and words[-1].lstrip("([*_").lower() in ABBREVIATIONS


def decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDocument(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        return {}, text
    end = re.search(r"^---\s*$", text[4:], re.M)
    if end is None:
        raise MalformedDocument("front matter starts with '---' but never ends")
    raw = text[4 : 4 + end.start()]
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise MalformedDocument(f"broken front matter{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise MalformedDocument("front matter must be a mapping of keys to values")
    return data, text[4 + end.end() :].lstrip("\n")


def clean_body(body: str) -> str:
    """Remove MDX / mdBook / HTML noise outside code fences; keep code fences verbatim."""
    body = HEADING_COMMENT_ID_RE.sub(lambda m: f"{m.group(1)} {{#{m.group(2)}}}", body)
    body = HTML_COMMENT_RE.sub(_comment_unless_in_heading, body)
    body = MDX_COMMENT_RE.sub("", body)
    out: list[str] = []
    for scanned in scan_lines(body.split("\n")):
        line = scanned.text
        if scanned.is_code:
            out.append(line)
            continue
        if MDX_IMPORT_RE.match(line) or JSX_TAG_LINE_RE.match(line):
            continue
        line = MDBOOK_DIRECTIVE_RE.sub("", line)
        admonition = ADMONITION_OPEN_RE.match(line)
        if admonition:
            kind, title = admonition.group(1).capitalize(), admonition.group(2).strip()
            out.append(f"**{kind}{': ' + title if title else ''}**")
            continue
        if ADMONITION_CLOSE_RE.match(line):
            continue
        # A heading keeps its inline HTML: the chunker derives the anchor from the text around it.
        out.append(line.rstrip() if ATX_HEADING_RE.match(line) else _without_html_tags(line).rstrip())
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _comment_unless_in_heading(match: re.Match[str]) -> str:
    body = match.string
    line_start = body.rfind("\n", 0, match.start()) + 1
    one_line = "\n" not in match.group(0)
    return match.group(0) if one_line and ATX_HEADING_RE.match(body[line_start:match.start()]) else ""


def _without_html_tags(line: str) -> str:
    """Drop HTML / JSX tags, but not inside code spans: `Vec<T>` is code, not a tag."""
    pieces, position = [], 0
    for code in CODE_SPAN_RE.finditer(line):
        pieces += [HTML_TAG_RE.sub("", line[position:code.start()]), code.group(0)]
        position = code.end()
    return "".join([*pieces, HTML_TAG_RE.sub("", line[position:])])


def parse_document(raw: bytes, *, fallback_title: str) -> ParsedDocument:
    text = decode_utf8(raw)
    front_matter, body = split_front_matter(text)
    body = clean_body(body)
    title = front_matter.get("title")
    if not title:
        for line in body.split("\n"):
            h1 = H1_RE.match(line)
            if h1:
                title = h1.group(1)
                break
    description = front_matter.get("description")
    return ParsedDocument(
        title=str(title or fallback_title).strip(),
        description=str(description).strip() if description else None,
        body=body,
        front_matter=front_matter,
    )
