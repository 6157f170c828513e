"""ingest-textbook: chapters (Markdown / MDX, every locale) -> chunks -> embeddings -> vector index.

When it runs: on demand (`make up`, the Prefect UI, or `python -m flows.ingest_textbook`), and after
every docs deploy. It is incremental by content hash: an unchanged tree embeds nothing and does not
even load the model. It is safe to re-run: a failed or invalid run publishes nothing, and the service
keeps answering from the previous index generation.

When it fails: read the `ingest-summary` artifact and runbooks/ingest-textbook.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from app.rag.index_plan import plan_index_changes
from app.rag.vector_index import check_same_source
from app.settings import PROJECT_ROOT, get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import CollectionName, Locale
from tasks.embeddings import embed_chunks
from tasks.quality import validate_chunks
from tasks.run_records import IngestSummary, current_flow_run_id, record_ingest_run
from tasks.textbook import KNOWN_LOCALES, discover_chapters, parse_and_chunk, source_identity
from tasks.vector_index import read_index_state, write_index_generation

DEFAULT_SOURCE = PROJECT_ROOT / "website"


def default_collection(source: Path) -> str | None:
    """The site goes to the service's collection; any other tree to a collection named after its folder."""
    if source.resolve() == DEFAULT_SOURCE.resolve():
        return None
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in source.resolve().name.lower()).strip("-_")
    return name or "markdown"


@flow(name="ingest-textbook", log_prints=True)
def ingest_textbook(
    source: str = str(DEFAULT_SOURCE),
    locale: Locale | None = None,
    collection: CollectionName | None = None,
    full_rebuild: bool = False,
) -> dict:
    """Ingest a Docusaurus site (both locales) or any Markdown tree into the vector index."""
    logger = get_run_logger()
    settings = get_settings()
    started = time.perf_counter()
    source_path = Path(source).expanduser().resolve()
    collection = collection or default_collection(source_path)
    summary = IngestSummary(source=str(source_path), collection=settings.collection_name(collection),
                            full_rebuild=full_rebuild)
    try:
        # 1. Read the chapters.
        files = discover_chapters(source_path, locale)
        batch = parse_and_chunk(files)
        summary.files_seen = len(files)
        summary.files_skipped = len(batch.skipped)
        summary.chunks_total = len(batch.chunks)

        # 2. Compare with what the live index holds.
        state = read_index_state(settings, collection)
        check_same_source(state, source_identity=source_identity(source_path),
                          embedding_model=settings.resolved_embedding_model, full_rebuild=full_rebuild)
        plan = plan_index_changes(
            batch.chunks, state.records,
            locales_in_scope={f.locale for f in files},
            protected_files={(s.locale, s.relative_path) for s in batch.skipped},
            full_rebuild=full_rebuild,
        )
        summary.chunks_added, summary.chunks_updated = len(plan.added), len(plan.updated)
        summary.chunks_deleted = len(plan.deleted)
        summary.files_changed = len(plan.changed_files)
        summary.files = _file_rows(files, batch, plan)
        logger.info("plan: %d to embed (%d new, %d changed), %d to delete, %d unchanged", len(plan.to_embed),
                    len(plan.added), len(plan.updated), len(plan.deleted), plan.unchanged)

        if plan.is_empty and state.generation is not None:
            summary.status = "unchanged"
            summary.generation = state.generation
        else:
            # 3. Validate the whole batch before anything is written.
            validate_chunks(batch.chunks, [f"{loc}:{path}" for loc, path in batch.accepted], KNOWN_LOCALES)
            # 4. Embed only new or changed chunks.
            upserts, tokens = embed_chunks(plan.to_embed, settings)
            summary.embeddings_computed, summary.embedding_tokens = len(upserts), tokens
            # 5. Write the next generation, verify it, publish it.
            kept_ids = {i for i in state.records if i not in set(plan.deleted)} if not full_rebuild else set()
            published = write_index_generation(
                settings, collection, upserts=upserts, deletes=plan.deleted,
                expected_ids=kept_ids | {c.id for c in batch.chunks},
                full_rebuild=full_rebuild, source_identity=source_identity(source_path),
            )
            summary.generation = published.name
            summary.status = "completed"
    except Exception as exc:
        summary.status = "failed"
        summary.error = f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        _record(settings, summary)
    return {k: getattr(summary, k) for k in (
        "status", "collection", "generation", "files_seen", "files_changed", "files_skipped", "chunks_added",
        "chunks_updated", "chunks_deleted", "chunks_total", "embeddings_computed", "seconds")}


def _record(settings, summary: IngestSummary) -> None:
    """Write the run row and the artifacts; a failure here must not hide the run's own error."""
    logger = get_run_logger()
    try:
        record_ingest_run(settings, summary, current_flow_run_id())
    except Exception as exc:  # noqa: BLE001
        logger.error("could not record the ingest_run row: %s", exc)
    publish_ingest_report(summary)


def ingest_markdown(summary: IngestSummary) -> str:
    skipped = [f for f in summary.files if f["status"] == "skipped"]
    lines = [
        f"# Ingest of `{summary.source}`: {summary.status}",
        "",
        f"Collection `{summary.collection}`, generation `{summary.generation or '-'}`"
        f"{' (full rebuild)' if summary.full_rebuild else ''}.",
        "",
        "| files seen | changed | skipped | chunks added | updated | deleted | total | embeddings | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.files_seen} | {summary.files_changed} | {summary.files_skipped} | {summary.chunks_added} | "
        f"{summary.chunks_updated} | {summary.chunks_deleted} | {summary.chunks_total} | "
        f"{summary.embeddings_computed} | {summary.seconds:.2f} |",
    ]
    if skipped:
        lines += ["", "## Skipped files", ""] + [f"- `{f['locale']}:{f['path']}`: {f['reason']}" for f in skipped]
    if summary.error:
        lines += ["", "## Error", "", f"```\n{summary.error}\n```", "",
                  "See runbooks/ingest-textbook.md for what to do next."]
    return "\n".join(lines)


@task(name="publish-ingest-report", cache_policy=NO_CACHE)
def publish_ingest_report(summary: IngestSummary) -> None:
    create_markdown_artifact(key="ingest-summary", markdown=ingest_markdown(summary),
                             description=f"ingest of {summary.source}")
    rows = [{"locale": f["locale"], "file": f["path"], "status": f["status"], "chunks": f.get("chunks", 0),
             "reason": f.get("reason", "")} for f in summary.files]
    create_table_artifact(key="ingest-files", table=rows or [{"file": "-", "status": "no files"}],
                          description="files seen by the ingest, with what happened to each")


def _file_rows(files, batch, plan) -> list[dict]:
    skipped = {(s.locale, s.relative_path): s.reason for s in batch.skipped}
    rows = []
    for f in files:
        key = (f.locale, f.relative_path)
        if key in skipped:
            rows.append({"locale": f.locale, "path": f.relative_path, "status": "skipped", "reason": skipped[key]})
        else:
            status = "changed" if key in plan.changed_files else "unchanged"
            rows.append({"locale": f.locale, "path": f.relative_path, "status": status,
                         "chunks": batch.chunks_per_file.get(key, 0)})
    for locale, path in sorted(plan.removed_files):
        rows.append({"locale": locale, "path": path, "status": "removed", "reason": "file no longer exists"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.ingest_textbook",
                         "Ingest textbook chapters (Markdown/MDX) into the vector index, incrementally by content hash.")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE),
                        help="a Docusaurus site (docs/ + i18n/) or any folder of Markdown (default: website/)")
    parser.add_argument("--locale", choices=sorted(KNOWN_LOCALES),
                        help="only this locale (for a plain Markdown tree: the locale of its files; default en)")
    parser.add_argument("--collection", help="collection base name (default: the service's for the site, "
                        "else the folder's name); the embedding model is appended")
    parser.add_argument("--full-rebuild", action="store_true",
                        help="re-embed everything into a new generation and switch to it after validation")
    args = parser.parse_args(argv)
    result = ingest_textbook(source=args.source, locale=args.locale, collection=args.collection,
                             full_rebuild=args.full_rebuild)
    print(
        f"{result['status']}: {result['files_seen']} files ({result['files_skipped']} skipped), "
        f"+{result['chunks_added']} ~{result['chunks_updated']} -{result['chunks_deleted']} chunks, "
        f"{result['embeddings_computed']} embedded, {result['seconds']:.1f} s -> {result['collection']} "
        f"generation {result['generation']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
