"""Tasks that read the textbook: find chapter files, parse and chunk them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.rag.chunking import DEFAULT_MAX_CHARS, DEFAULT_MIN_CHARS, Chunk, chunk_document, doc_page_url
from app.rag.markdown import MalformedDocument, parse_document

DOC_SUFFIXES = {".md", ".mdx"}
I18N_DOCS = Path("docusaurus-plugin-content-docs") / "current"
KNOWN_LOCALES = {"en", "ur"}
DEFAULT_LOCALE = "en"


class SourceNotFound(ValueError):
    """The --source path does not exist or holds no Markdown."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    relative_path: str
    locale: str


@dataclass(frozen=True)
class SkippedFile:
    relative_path: str
    locale: str
    reason: str


@dataclass
class ParsedBatch:
    chunks: list[Chunk] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    accepted: list[tuple[str, str]] = field(default_factory=list)
    chunks_per_file: dict[tuple[str, str], int] = field(default_factory=dict)
    file_hashes: dict[tuple[str, str], str] = field(default_factory=dict)


def _markdown_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in DOC_SUFFIXES and not p.name.startswith("_")
        and "node_modules" not in p.parts and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def is_docusaurus_site(source: Path) -> bool:
    has_config = (source / "docusaurus.config.js").exists() or (source / "i18n").is_dir()
    return (source / "docs").is_dir() and has_config


def source_identity(source: Path) -> str:
    """What the collection holds: the site, or a Markdown tree named by its folder."""
    return f"docusaurus:{source.name}" if is_docusaurus_site(source) else f"markdown:{source.name}"


@task(name="discover-chapters", cache_policy=NO_CACHE)
def discover_chapters(source: Path, locale: str | None = None) -> list[SourceFile]:
    """Find chapter files: a Docusaurus site (docs/ plus i18n/<locale>/...) or any Markdown tree."""
    logger = get_run_logger()
    if not source.exists():
        raise SourceNotFound(f"source {source} does not exist")
    if locale is not None and locale not in KNOWN_LOCALES:
        raise ValueError(f"unknown locale {locale!r}; known: {', '.join(sorted(KNOWN_LOCALES))}")
    roots: list[tuple[str, Path]] = []
    if is_docusaurus_site(source):
        if locale in (None, DEFAULT_LOCALE):
            roots.append((DEFAULT_LOCALE, source / "docs"))
        i18n = source / "i18n"
        for locale_dir in sorted(i18n.iterdir()) if i18n.is_dir() else []:
            if (locale is None or locale == locale_dir.name) and (locale_dir / I18N_DOCS).is_dir():
                roots.append((locale_dir.name, locale_dir / I18N_DOCS))
    else:
        roots.append((locale or DEFAULT_LOCALE, source))
    files = [
        SourceFile(path=p, relative_path=p.relative_to(root).as_posix(), locale=loc)
        for loc, root in roots for p in _markdown_files(root)
    ]
    if not files:
        raise SourceNotFound(f"no .md or .mdx files under {source}")
    unknown = sorted({f.locale for f in files} - KNOWN_LOCALES)
    if unknown:
        logger.warning("files in unknown locales %s will fail validation", unknown)
    logger.info("found %d chapter files in %s (%s)", len(files), source,
                ", ".join(f"{loc}: {sum(f.locale == loc for f in files)}" for loc in sorted({f.locale for f in files})))
    return files


@task(name="parse-and-chunk", cache_policy=NO_CACHE)
def parse_and_chunk(files: list[SourceFile], max_chars: int = DEFAULT_MAX_CHARS,
                    min_chars: int = DEFAULT_MIN_CHARS) -> ParsedBatch:
    """Read each file, parse front matter and MDX, cut heading-aware chunks. Bad files are skipped, not fatal."""
    logger = get_run_logger()
    batch = ParsedBatch()
    for source_file in files:
        key = (source_file.locale, source_file.relative_path)
        try:
            raw = source_file.path.read_bytes()
            batch.file_hashes[key] = hashlib.sha256(raw).hexdigest()
            document = parse_document(raw, fallback_title=source_file.path.stem.replace("-", " "))
            chunks = chunk_document(
                document,
                source_path=source_file.relative_path,
                locale=source_file.locale,
                page_url=doc_page_url(source_file.relative_path, locale=source_file.locale,
                                      front_matter=document.front_matter),
                max_chars=max_chars,
                min_chars=min_chars,
            )
        except (MalformedDocument, OSError) as exc:
            logger.warning("skipping %s (%s): %s", source_file.relative_path, source_file.locale, exc)
            batch.skipped.append(SkippedFile(source_file.relative_path, source_file.locale, str(exc)))
            continue
        if not chunks:
            batch.skipped.append(SkippedFile(source_file.relative_path, source_file.locale, "no text to index"))
            continue
        batch.accepted.append(key)
        batch.chunks_per_file[key] = len(chunks)
        batch.chunks.extend(chunks)
    logger.info("parsed %d files into %d chunks; %d skipped", len(batch.accepted), len(batch.chunks), len(batch.skipped))
    return batch
