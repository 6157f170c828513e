"""What an ingest must change in the index: compare fresh chunks with what the live generation holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.rag.chunking import Chunk
from app.rag.vector_index import IndexedRecord


@dataclass
class IndexPlan:
    to_embed: list[Chunk] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    changed_files: set[tuple[str, str]] = field(default_factory=set)
    removed_files: set[tuple[str, str]] = field(default_factory=set)

    @property
    def is_empty(self) -> bool:
        return not (self.to_embed or self.deleted)


def plan_index_changes(
    chunks: Iterable[Chunk],
    records: dict[str, IndexedRecord],
    *,
    locales_in_scope: set[str],
    protected_files: set[tuple[str, str]],
    full_rebuild: bool,
) -> IndexPlan:
    """New ids are added, changed hashes updated, ids no longer produced deleted.

    Deletions are limited to the locales this run read, and never touch the chunks of a file that
    was skipped as malformed this time: a broken edit must not wipe a chapter from the index.
    """
    plan = IndexPlan()
    fresh_ids: set[str] = set()
    for chunk in chunks:
        fresh_ids.add(chunk.id)
        known = None if full_rebuild else records.get(chunk.id)
        if known is None:
            plan.to_embed.append(chunk)
            plan.added.append(chunk.id)
            plan.changed_files.add((chunk.locale, chunk.source_path))
        elif known.content_hash != chunk.content_hash:
            plan.to_embed.append(chunk)
            plan.updated.append(chunk.id)
            plan.changed_files.add((chunk.locale, chunk.source_path))
        else:
            plan.unchanged += 1
    if full_rebuild:
        return plan
    fresh_files = {(c.locale, c.source_path) for c in plan.to_embed}
    produced_files = fresh_files | {(r.locale, r.source_path) for i, r in records.items() if i in fresh_ids}
    for chunk_id, record in records.items():
        key = (record.locale, record.source_path)
        if chunk_id in fresh_ids or record.locale not in locales_in_scope or key in protected_files:
            continue
        plan.deleted.append(chunk_id)
        plan.changed_files.add(key)
        if key not in produced_files:
            plan.removed_files.add(key)
    return plan
