"""Heading-aware chunking with the anchors and URLs the Docusaurus site serves."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from app.rag.markdown import FENCE_RE, ParsedDocument

CHUNK_ID_NAMESPACE = uuid.UUID("6f1c8f8e-1a4e-4a57-9a53-7d0c3d0f2b11")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
CUSTOM_ID_RE = re.compile(r"\s*\{#([\w-]+)\}\s*$")
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


def strip_inline_markdown(text: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return text.strip()


class Slugger:
    """github-slugger, as Docusaurus uses it: lower-case, drop punctuation, spaces to '-', dedupe."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    @staticmethod
    def slug(text: str) -> str:
        text = strip_inline_markdown(text).lower()
        kept = [
            ch for ch in text
            if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
        ]
        return "".join(kept).replace(" ", "-")

    def unique(self, text: str) -> str:
        base = self.slug(text)
        result = base
        while result in self._seen:
            self._seen[base] += 1
            result = f"{base}-{self._seen[base]}"
        self._seen.setdefault(result, 0)
        return result


def page_url_for(relative_path: str, *, locale: str, default_locale: str = "en", front_matter_slug: str | None = None) -> str:
    """The URL Docusaurus serves for a doc: number prefixes and extensions dropped, index -> folder."""
    prefix = "/docs" if locale == default_locale else f"/{locale}/docs"
    path = PurePosixPath(relative_path)
    parts = [NUMBER_PREFIX_RE.sub("", part) for part in path.parent.parts]
    stem = NUMBER_PREFIX_RE.sub("", path.stem)
    if front_matter_slug:
        slug = str(front_matter_slug)
        joined = slug.strip("/") if slug.startswith("/") else "/".join([*parts, slug.strip("/")])
        return f"{prefix}/{joined}".rstrip("/") or prefix
    if stem.lower() in {"index", "readme"} or (parts and stem == parts[-1]):
        return "/".join([prefix, *parts]).rstrip("/") or prefix
    return "/".join([prefix, *parts, stem])


def _blocks(lines: list[str]) -> list[str]:
    """Paragraphs, tables and whole code fences, in order."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in lines:
        match = FENCE_RE.match(line)
        if fence is not None:
            current.append(line)
            if match and match.group(2)[0] == fence[0] and not match.group(3).strip():
                fence = None
                blocks.append("\n".join(current))
                current = []
            continue
        if match:
            if current:
                blocks.append("\n".join(current))
            current, fence = [line], match.group(2)
            continue
        if not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return [b.strip("\n") for b in blocks if b.strip()]


def _split_oversized(block: str, max_chars: int) -> list[str]:
    if len(block) <= max_chars:
        return [block]
    is_code = block.lstrip().startswith(("```", "~~~")) or block.lstrip().startswith("|")
    units = block.split("\n") if is_code else re.split(r"(?<=[.!?۔؟])\s+", block)
    joiner = "\n" if is_code else " "
    pieces: list[str] = []
    current = ""
    for unit in units:
        while len(unit) > max_chars:  # one enormous line or sentence
            if current:
                pieces.append(current)
                current = ""
            pieces.append(unit[:max_chars])
            unit = unit[max_chars:]
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) > max_chars and current:
            pieces.append(current)
            current = unit
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _pack(blocks: list[str], max_chars: int, min_chars: int) -> list[str]:
    pieces = [p for b in blocks for p in _split_oversized(b, max_chars)]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) > max_chars and len(current) >= min_chars:
            chunks.append(current)
            current = piece
        elif len(candidate) > max_chars and current:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        if chunks and len(current) < min_chars // 2 and len(chunks[-1]) + len(current) <= max_chars * 1.25:
            chunks[-1] = f"{chunks[-1]}\n\n{current}"
        else:
            chunks.append(current)
    return chunks


def content_hash(chunk: Chunk) -> str:
    material = json.dumps(
        [chunk.embedding_text(), chunk.anchor, chunk.page_url, chunk.locale, chunk.source_path, chunk.ordinal,
         PAYLOAD_VERSION],
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


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
    slugger = Slugger()
    sections: list[tuple[tuple[str, ...], str, list[str]]] = []
    stack: list[tuple[int, str]] = []
    anchor = ""
    lines: list[str] = []
    fence: str | None = None

    def close_section() -> None:
        if any(line.strip() for line in lines):
            sections.append((tuple(h for _, h in stack), anchor, list(lines)))

    for line in doc.body.split("\n"):
        fence_match = FENCE_RE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(2)[0] == fence[0] and not fence_match.group(3).strip():
                fence = None
            lines.append(line)
            continue
        if fence_match:
            fence = fence_match.group(2)
            lines.append(line)
            continue
        heading = HEADING_RE.match(line)
        if not heading:
            lines.append(line)
            continue
        close_section()
        lines = []
        level, raw_text = len(heading.group(1)), heading.group(2)
        custom = CUSTOM_ID_RE.search(raw_text)
        text = strip_inline_markdown(CUSTOM_ID_RE.sub("", raw_text))
        if level == 1:
            stack, anchor = [(1, text)], ""
            continue
        anchor = custom.group(1) if custom else slugger.unique(CUSTOM_ID_RE.sub("", raw_text))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
    close_section()

    chunks: list[Chunk] = []
    for heading_path, section_anchor, section_lines in sections:
        path = tuple(h for h in heading_path if h != doc.title) or (doc.title,)
        for ordinal, text in enumerate(_pack(_blocks(section_lines), max_chars, min_chars)):
            key = f"{locale}|{source_path}|{section_anchor}|{ordinal}"
            chunk = Chunk(
                id=str(uuid.uuid5(CHUNK_ID_NAMESPACE, key)),
                text=text,
                title=doc.title,
                heading_path=path,
                anchor=section_anchor,
                locale=locale,
                source_path=source_path,
                page_url=page_url,
                ordinal=ordinal,
            )
            chunks.append(_with_hash(chunk))
    return chunks


def _with_hash(chunk: Chunk) -> Chunk:
    return replace(chunk, content_hash=content_hash(chunk))
