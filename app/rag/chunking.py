"""Heading-aware chunking with the anchors and URLs the Docusaurus site serves."""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from app.rag.markdown import FENCE_RE, TABLE_SEPARATOR_RE, MarkdownLine, ParsedDocument, scan_lines, split_sentences
from app.rag.sparse import SPARSE_TOKENIZER_VERSION

CHUNK_ID_NAMESPACE = uuid.UUID("6f1c8f8e-1a4e-4a57-9a53-7d0c3d0f2b11")
# An ATX heading: up to 3 spaces, 1-6 '#', text, an optional closing run of '#' after a space ("## C#" keeps its '#').
HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
# Docusaurus's classic explicit id, matched on the heading's text: anything but '{#' and '}' up to the final '}'.
CUSTOM_ID_RE = re.compile(r"\s*\{#((?:.(?!\{#|\}))*.)\}$")
NUMBER_PREFIX_RE = re.compile(r"^\d+[-_.]")
DEFAULT_MAX_CHARS = 1000
DEFAULT_MIN_CHARS = 200
# Part of every content hash: bump it when the payload gains a field, so the next incremental ingest
# rewrites every chunk of an existing index (2: `chapter`, the filter of /v1/chat and /v1/search).
PAYLOAD_VERSION = 2
DOCS_PATH_RE = re.compile(r"^/(?:[a-z]{2}(?:-[A-Za-z]+)?/)?docs(?:/|$)")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a chapter, with everything a citation needs."""

    id: str
    text: str
    title: str
    heading_path: tuple[str, ...]
    anchor: str
    locale: str
    source_path: str
    page_url: str
    ordinal: int
    content_hash: str = field(default="")

    @property
    def url(self) -> str:
        return f"{self.page_url}#{self.anchor}" if self.anchor else self.page_url

    @property
    def chapter(self) -> str:
        return chapter_of(self.page_url)

    @property
    def heading(self) -> str:
        return self.heading_path[-1] if self.heading_path else self.title

    def embedding_text(self) -> str:
        """Title and heading path give the embedding the context a bare paragraph lacks."""
        context = " > ".join((self.title, *[h for h in self.heading_path if h != self.title]))
        return f"{context}\n{self.text}"

    def payload(self) -> dict[str, object]:
        return {
            "text": self.text,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "heading": self.heading,
            "anchor": self.anchor,
            "locale": self.locale,
            "source_path": self.source_path,
            "page_url": self.page_url,
            "chapter": self.chapter,
            "url": self.url,
            "ordinal": self.ordinal,
            "content_hash": self.content_hash,
        }


def chapter_of(page_url: str) -> str:
    """The chapter of a page: the first path segment below the docs root, whatever the locale.

    `/docs/ros2-fundamentals` and `/ur/docs/ros2-fundamentals#qos` are both `ros2-fundamentals` (the
    Docusaurus doc id of a top-level chapter); the docs root itself has no chapter ("").
    """
    path = page_url.split("#", 1)[0].split("?", 1)[0]
    match = DOCS_PATH_RE.match(path)
    rest = path[match.end():] if match else path.lstrip("/")
    return rest.strip("/").split("/", 1)[0]


CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.S)
INLINE_RULES = [
    (re.compile(r"<!--.*?-->", re.S), ""),                             # HTML comments
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),                  # image -> its alt text
    (re.compile(r"!?\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])"), r"\1"),     # link (inline or reference) -> its text
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),             # autolink -> the address
    (re.compile(r"</?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>"), ""),          # inline HTML / JSX tags (children stay)
    (re.compile(r"(?<![\w\\])(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?!\w)"), r"\2"),  # strong
    (re.compile(r"(?<!\\)\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"\1"),             # strong, intraword
    (re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s\\*])\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(r"(?<![\w\\])_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),        # emphasis with underscores
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),                    # strikethrough (GFM)
    (re.compile(r"\\([!-/:-@\[-`{-~])"), r"\1"),                       # backslash escapes
]


def strip_inline_markdown(text: str) -> str:
    """The text a Markdown parser sees in inline content (mdast's toString): no markup, code spans verbatim."""
    return inline_text(text).strip()


def inline_text(text: str) -> str:
    """`strip_inline_markdown` without the final trim: whitespace next to a removed tag or comment stays,
    as it does in the heading text Docusaurus slugs (`## Foo <br/>` is `foo-`)."""
    out: list[str] = []
    position = 0
    for code in CODE_SPAN_RE.finditer(text):
        out.append(_strip_markup(text[position:code.start()]))
        content = code.group(2)
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]  # CommonMark strips one space on each side of a code span
        out.append(content)
        position = code.end()
    out.append(_strip_markup(text[position:]))
    return "".join(out)


def _strip_markup(text: str) -> str:
    for pattern, replacement in INLINE_RULES:
        text = pattern.sub(replacement, text)
    return html.unescape(text)


# github-slugger (Docusaurus 3 uses 1.5) keeps letters, marks, decimal and letter numbers, connector
# punctuation, spaces and '-', by its own Unicode 13 table: it also keeps the circled and squared Latin
# letters, and drops what Unicode 14 (Python 3.11's table) added. Checked against it code point by code
# point in tests/website/test_anchors.py.
SLUG_EXTRA_KEPT = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189))
SLUG_UNICODE_14 = (
    (0x0870, 0x0887), (0x0889, 0x088E), (0x0898, 0x089F), (0x08B5, 0x08B5), (0x08C8, 0x08D2), (0x0C3C, 0x0C3C),
    (0x0C5D, 0x0C5D), (0x0CDD, 0x0CDD), (0x170D, 0x170D), (0x1715, 0x171F), (0x180F, 0x180F), (0x1AC1, 0x1ACE),
    (0x1B4C, 0x1B4C), (0x1DFA, 0x1DFA), (0x2C2F, 0x2C2F), (0x2C5F, 0x2C5F), (0x9FFD, 0x9FFF), (0xA7C0, 0xA7C1),
    (0xA7D0, 0xA7F4), (0x10570, 0x105BC), (0x10780, 0x107BA), (0x10F70, 0x10F85), (0x11070, 0x11075),
    (0x110C2, 0x110C2), (0x11740, 0x11746), (0x11AB0, 0x11ABF), (0x12F90, 0x12FF0), (0x16A70, 0x16AC9),
    (0x1AFF0, 0x1AFFE), (0x1B11F, 0x1B122), (0x1CF00, 0x1CF46), (0x1DF00, 0x1DF1E), (0x1E290, 0x1E2AE),
    (0x1E7E0, 0x1E7FE), (0x2A6DE, 0x2A6DF), (0x2B735, 0x2B738),
)


def _kept_in_slug(ch: str) -> bool:
    if ch in " -":
        return True
    code = ord(ch)
    if any(low <= code <= high for low, high in SLUG_EXTRA_KEPT):
        return True
    category = unicodedata.category(ch)
    kept = category[0] in "LM" or category in ("Nd", "Nl", "Pc")
    return kept and (code < 0x0870 or not any(low <= code <= high for low, high in SLUG_UNICODE_14))


class Slugger:
    """github-slugger, as Docusaurus uses it: lower-case, drop punctuation and symbols, spaces to '-', dedupe.

    `slug` takes the heading's plain text (`heading_text`); `unique` remembers every slug of a page, the
    way Docusaurus's one slugger per document does (level-1 headings included, explicit ids not).
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    @staticmethod
    def slug(text: str) -> str:
        return "".join(ch for ch in text.lower() if _kept_in_slug(ch)).replace(" ", "-")

    def unique(self, text: str) -> str:
        base = self.slug(text)
        result = base
        while result in self._seen:
            self._seen[base] += 1
            result = f"{base}-{self._seen[base]}"
        self._seen[result] = 0
        return result


def heading_text(raw: str) -> tuple[str, str | None]:
    """A heading's plain text, as Docusaurus slugs it (untrimmed), and its explicit `{#id}`, if any."""
    text = inline_text(raw)
    custom = CUSTOM_ID_RE.search(text)
    if custom is None:
        return text, None
    return text[: custom.start()], custom.group(1).strip()


def page_url_for(relative_path: str, *, locale: str, default_locale: str = "en", front_matter_slug: str | None = None,
                 front_matter_id: str | None = None) -> str:
    """The URL Docusaurus serves for a doc (its getSlug): number prefixes and extensions dropped, a category
    index (index, README, or the folder's own name) is the folder, front matter `slug` and `id` win."""
    prefix = "/docs" if locale == default_locale else f"/{locale}/docs"
    path = PurePosixPath(relative_path)
    parts = [NUMBER_PREFIX_RE.sub("", part) for part in path.parent.parts]
    stem = str(front_matter_id).rsplit("/", 1)[-1] if front_matter_id else NUMBER_PREFIX_RE.sub("", path.stem)
    if front_matter_slug:
        slug = str(front_matter_slug)
        joined = slug.strip("/") if slug.startswith("/") else "/".join([*parts, slug.strip("/")])
        return f"{prefix}/{joined}".rstrip("/") or prefix
    raw_folder = path.parent.name.lower()
    if path.stem.lower() in {"index", "readme"} or (raw_folder and path.stem.lower() == raw_folder):
        return "/".join([prefix, *parts]).rstrip("/") or prefix
    return "/".join([prefix, *parts, stem])


def doc_page_url(relative_path: str, *, locale: str, front_matter: dict) -> str:
    """`page_url_for` with what a chapter's front matter says."""
    slug, doc_id = front_matter.get("slug"), front_matter.get("id")
    return page_url_for(relative_path, locale=locale, front_matter_slug=str(slug) if slug else None,
                        front_matter_id=str(doc_id) if doc_id else None)


def _blocks(lines: Iterable[MarkdownLine]) -> list[str]:
    """Paragraphs, tables and whole code fences, in order."""
    blocks: list[str] = []
    current: list[str] = []

    def close_block() -> None:
        if current:
            blocks.append("\n".join(current))
            current.clear()

    for line in lines:
        if line.kind == "fence-open":
            close_block()
        if line.is_code:
            current.append(line.text)
            if line.kind == "fence-close":
                close_block()
        elif not line.text.strip():
            close_block()
        else:
            current.append(line.text)
    close_block()
    return [b.strip("\n") for b in blocks if b.strip()]


def _joined_up_to(units: Iterable[str], joiner: str, max_chars: int) -> list[str]:
    """Consecutive units joined while the result stays within `max_chars` (a unit longer than that stands alone)."""
    joined: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) > max_chars and current:
            joined.append(current)
            current = unit
        else:
            current = candidate
    if current:
        joined.append(current)
    return joined


def _cut(units: list[str], max_chars: int) -> list[str]:
    """One enormous line or sentence is cut every `max_chars` characters."""
    return [unit[i:i + max_chars] for unit in units for i in range(0, max(len(unit), 1), max_chars)]


def _framed_pieces(head: list[str], body: list[str], tail: list[str], max_chars: int) -> list[str]:
    """The body's lines in pieces, each framed by the head and tail lines, so that every piece is a whole code fence
    or a table with its header: a chunk that starts inside a fence would read its code as prose and its closing
    fence as an opening one."""
    frame = sum(len(line) + 1 for line in [*head, *tail])
    room = max(max_chars - frame, max_chars // 2)
    return ["\n".join([*head, piece, *tail]) for piece in _joined_up_to(_cut(body, room), "\n", room)]


def _split_oversized(block: str, max_chars: int) -> list[str]:
    if len(block) <= max_chars:
        return [block]
    lines = block.split("\n")
    fence = FENCE_RE.match(lines[0])
    if fence:
        scanned = list(scan_lines(lines))
        closed = len(lines) > 1 and scanned[-1].kind == "fence-close"
        closing = lines[-1] if closed else f"{fence.group(1)}{fence.group(2)}"
        return _framed_pieces(lines[:1], lines[1:-1] if closed else lines[1:], [closing], max_chars)
    if block.lstrip().startswith("|"):
        header = lines[:2] if len(lines) > 2 and TABLE_SEPARATOR_RE.match(lines[1].strip()) else []
        return _framed_pieces(header, lines[len(header):], [], max_chars)
    return _joined_up_to(_cut(split_sentences(block), max_chars), " ", max_chars)


def _pack(blocks: list[str], max_chars: int, min_chars: int) -> list[str]:
    chunks = _joined_up_to((p for b in blocks for p in _split_oversized(b, max_chars)), "\n\n", max_chars)
    if len(chunks) > 1 and len(chunks[-1]) < min_chars // 2 and len(chunks[-2]) + len(chunks[-1]) <= max_chars * 1.25:
        chunks[-2:] = [f"{chunks[-2]}\n\n{chunks[-1]}"]  # a short tail joins the chunk before it
    return chunks


def content_hash(chunk: Chunk) -> str:
    material = json.dumps(
        [chunk.embedding_text(), chunk.anchor, chunk.page_url, chunk.locale, chunk.source_path, chunk.ordinal,
         PAYLOAD_VERSION, SPARSE_TOKENIZER_VERSION],
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Section:
    """The lines under one heading (up to the next heading of any level), with the anchor the site gives it."""

    heading_path: tuple[str, ...]
    anchor: str  # "" before the first heading below the page's title: the citation is the page itself
    lines: tuple[MarkdownLine, ...]


def sections(body: str) -> list[Section]:
    """Cut a chapter's body at its headings; a `#` line inside a code fence is code, not a heading."""
    slugger = Slugger()
    found: list[Section] = []
    stack: list[tuple[int, str]] = []
    anchor = ""
    lines: list[MarkdownLine] = []

    def close_section() -> None:
        if any(line.text.strip() for line in lines):
            found.append(Section(tuple(h for _, h in stack), anchor, tuple(lines)))

    for line in scan_lines(body.split("\n")):
        heading = None if line.is_code else HEADING_RE.match(line.text)
        if not heading:
            lines.append(line)
            continue
        close_section()
        lines = []
        level = len(heading.group(1))
        plain, custom_id = heading_text(heading.group(2))
        text = plain.strip()
        # Docusaurus gives every heading an id (the page's h1 too): the slugger must count them all.
        heading_id = custom_id or slugger.unique(plain)
        if level == 1:
            stack, anchor = [(1, text)], ""  # the page's own title: cite the page, not its h1
            continue
        anchor = heading_id
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
    close_section()
    return found


def chunk_document(
    doc: ParsedDocument,
    *,
    source_path: str,
    locale: str,
    page_url: str,
    max_chars: int = DEFAULT_MAX_CHARS,
    min_chars: int = DEFAULT_MIN_CHARS,
) -> list[Chunk]:
    """Cut a parsed chapter at its headings, then pack each section's blocks up to `max_chars`."""
    chunks: list[Chunk] = []
    for section in sections(doc.body):
        path = tuple(h for h in section.heading_path if h != doc.title) or (doc.title,)
        for ordinal, text in enumerate(_pack(_blocks(section.lines), max_chars, min_chars)):
            key = f"{locale}|{source_path}|{section.anchor}|{ordinal}"
            chunk = Chunk(
                id=str(uuid.uuid5(CHUNK_ID_NAMESPACE, key)),
                text=text,
                title=doc.title,
                heading_path=path,
                anchor=section.anchor,
                locale=locale,
                source_path=source_path,
                page_url=page_url,
                ordinal=ordinal,
            )
            chunks.append(_with_hash(chunk))
    return chunks


def _with_hash(chunk: Chunk) -> Chunk:
    return replace(chunk, content_hash=content_hash(chunk))
