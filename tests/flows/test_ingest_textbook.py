"""The ingest flow on real parts: Prefect's harness, the local model, Qdrant Edge, Postgres."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import IngestRun
from app.rag.embeddings import create_embedder
from app.rag.sparse import query_vector
from app.rag.vector_index import IndexConflict, SearchRequest, open_index_writer, open_vector_index
from app.settings import PROJECT_ROOT
from flows.ingest_textbook import ingest_textbook, main
from tasks.quality import ChunkValidationFailed
from tests.support.artifacts import latest_artifact

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHAPTERS = {
    "balance.md": "---\ntitle: Balance\n---\n\n## Support polygon\n\nThe support polygon is the convex hull of the feet "
                  "touching the ground. A robot standing still is stable while its centre of mass projects inside it.\n\n"
                  "## Ankle strategy\n\nSmall pushes are absorbed by torque at the ankles, like a person swaying.\n",
    "sensors.md": "---\ntitle: Sensors\n---\n\n## Inertial measurement\n\nAn IMU combines an accelerometer and a "
                  "gyroscope to estimate orientation and angular velocity of the torso.\n\n## Encoders\n\nJoint encoders "
                  "report the angle of every joint so the controller knows the posture.\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "mini-book"
    root.mkdir()
    for name, text in CHAPTERS.items():
        (root / name).write_text(text)
    return root


def run(tree: Path, collection: str, **kwargs) -> dict:
    return ingest_textbook(source=str(tree), collection=collection, **kwargs)


def test_first_ingest_then_rerun_is_a_no_op(settings, tree):
    first = run(tree, "noop")
    assert first["status"] == "completed"
    assert first["files_seen"] == 2 and first["chunks_added"] == first["embeddings_computed"] == 4
    second = run(tree, "noop")
    assert second["status"] == "unchanged"
    assert second["embeddings_computed"] == 0 and second["generation"] == first["generation"]


def test_run_publishes_a_summary_and_a_file_table_artifact(settings, tree):
    (tree / "broken.md").write_bytes(b"---\ntitle: [oops\n---\nbody")
    run(tree, "artifacts")
    summary = latest_artifact("ingest-summary")
    assert "| files seen |" in summary.data and "## Skipped files" in summary.data and "broken.md" in summary.data
    table = latest_artifact("ingest-files")
    rows = table.data if isinstance(table.data, list) else __import__("json").loads(table.data)
    assert {r["file"]: r["status"] for r in rows} == {"balance.md": "changed", "sensors.md": "changed",
                                                      "broken.md": "skipped"}


def test_editing_one_file_re_embeds_only_its_changed_chunks(settings, tree):
    run(tree, "edit")
    text = (tree / "sensors.md").read_text().replace("every joint", "every single joint")
    (tree / "sensors.md").write_text(text)
    result = run(tree, "edit")
    assert result["status"] == "completed"
    assert (result["chunks_updated"], result["chunks_added"], result["chunks_deleted"]) == (1, 0, 0)
    assert result["embeddings_computed"] == 1 and result["files_changed"] == 1


def test_deleting_a_file_removes_its_chunks(settings, tree):
    run(tree, "delete")
    (tree / "balance.md").unlink()
    result = run(tree, "delete")
    assert result["chunks_deleted"] == 2 and result["embeddings_computed"] == 0
    records = open_index_writer(settings, "delete").state().records
    assert {r.source_path for r in records.values()} == {"sensors.md"}


def test_malformed_files_are_skipped_and_reported_without_losing_their_chunks(settings, tree):
    run(tree, "malformed")
    (tree / "balance.md").write_bytes(b"---\ntitle: [broken\n---\n\n## x\n\ntext")
    (tree / "binary.md").write_bytes(b"## Title\n\n\xff\xfe\xfa not utf-8")
    result = run(tree, "malformed")
    assert result["status"] == "unchanged" and result["files_skipped"] == 2
    assert result["chunks_deleted"] == 0  # the last good version of balance.md stays searchable
    engine = create_db_engine(settings)
    with Session(engine) as db:
        row = db.exec(select(IngestRun).where(IngestRun.collection == settings.collection_name("malformed"))
                      .order_by(IngestRun.id.desc())).first()
    engine.dispose()
    reasons = {f["path"]: f.get("reason", "") for f in row.details["files"] if f["status"] == "skipped"}
    assert "front matter" in reasons["balance.md"] and "UTF-8" in reasons["binary.md"]


def test_failed_validation_writes_nothing(settings, tree):
    run(tree, "invalid")
    before = open_index_writer(settings, "invalid").state()
    (tree / "bad-slug.md").write_text("---\ntitle: Bad\nslug: has spaces in it\n---\n\n## A\n\nSome text here.\n")
    (tree / "sensors.md").write_text(CHAPTERS["sensors.md"] + "\n## New section\n\nMore text about sensors.\n")
    with pytest.raises(ChunkValidationFailed, match="url"):
        run(tree, "invalid")
    after = open_index_writer(settings, "invalid").state()
    assert after.generation == before.generation and after.records == before.records
    engine = create_db_engine(settings)
    with Session(engine) as db:
        row = db.exec(select(IngestRun).where(IngestRun.collection == settings.collection_name("invalid"))
                      .order_by(IngestRun.id.desc())).first()
    engine.dispose()
    assert row.status == "failed" and "ChunkValidationFailed" in row.error


def test_another_tree_cannot_overwrite_a_collection_by_accident(settings, tree, tmp_path):
    run(tree, "guarded")
    other = tmp_path / "other-book"
    shutil.copytree(tree, other)
    with pytest.raises(IndexConflict, match="--collection"):
        run(other, "guarded")


def test_full_rebuild_writes_a_new_generation_and_keeps_the_previous(settings, tree):
    first = run(tree, "rebuild")
    second = run(tree, "rebuild", full_rebuild=True)
    assert second["embeddings_computed"] == 4 and second["generation"] != first["generation"]
    assert open_index_writer(settings, "rebuild").generations() == [first["generation"], second["generation"]]


def test_the_site_is_ingested_in_both_locales_and_urdu_questions_find_urdu_pages(settings, ingested_textbook):
    assert ingested_textbook["files_seen"] >= 12 and ingested_textbook["files_skipped"] == 0
    index = open_vector_index(settings)
    embedder = create_embedder(settings)
    question = "کالمن فلٹر کیسے کام کرتا ہے؟"
    hits = index.search(SearchRequest(dense=embedder.embed([question]).vectors[0], sparse=query_vector(question),
                                      limit=3, locale="ur"))
    index.close()
    assert hits and all(h.payload["url"].startswith("/ur/docs/") for h in hits)
    assert hits[0].payload["page_url"] == "/ur/docs/perception-and-sensor-fusion"


def test_cli_has_help_and_works_on_the_rust_book(settings, shared_dir, capsys, tmp_path):
    with pytest.raises(SystemExit) as help_exit:
        main(["--help"])
    assert help_exit.value.code == 0 and "--full-rebuild" in capsys.readouterr().out
    # A slice of the external book keeps this test fast; the benchmark ingests all of it.
    subset = tmp_path / "rust-book"
    subset.mkdir()
    for path in sorted((shared_dir / "corpora" / "rust-book").glob("ch09-*.md")):
        shutil.copy(path, subset / path.name)
    assert main(["--source", str(subset)]) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "rust-book--all-minilm-l6-v2" in out


def test_site_source_defaults_to_the_service_collection():
    from flows.ingest_textbook import default_collection

    assert default_collection(PROJECT_ROOT / "website") is None
    assert default_collection(Path("/x/rust-book")) == "rust-book"
