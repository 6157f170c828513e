"""Prefect artifacts: what an operator reads in the UI after a run."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.postgres import IngestSummary


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


@task(name="publish-rotation-report", cache_policy=NO_CACHE)
def rotation_report(name: str, backend: str, old: str | None, new: str | None, outcome: str) -> None:
    """The `secret-rotation` artifact: version ids and the outcome, never a value."""
    create_markdown_artifact(
        key="secret-rotation",
        markdown=(f"# Rotation of `{name}` ({backend}): {outcome}\n\n| previous version | new version |\n|---|---|\n"
                  f"| {old or '-'} | {new or '-'} |\n\nRunbook: runbooks/secret-rotation.md\n"),
        description="secret rotation (version ids only)",
    )
