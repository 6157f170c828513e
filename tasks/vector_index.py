"""Tasks on the vector index: read the live generation, write and publish the next one."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.rag.vector_index import IndexedChunk, IndexState, check_same_source, open_index_writer
from app.settings import Settings


class IndexVerificationFailed(RuntimeError):
    """The written generation does not hold what the plan says it should; it was not published."""


@dataclass(frozen=True)
class PublishedGeneration:
    name: str
    points: int


@task(name="read-index-state", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def read_index_state(settings: Settings, collection: str) -> IndexState:
    """What the live generation holds: chunk ids with their content hashes."""
    state = open_index_writer(settings, collection).state()
    get_run_logger().info("live generation of %s: %s (%d chunks)", settings.collection_name(collection),
                          state.generation or "none", len(state.records))
    return state


@task(name="write-index-generation", cache_policy=NO_CACHE, timeout_seconds=1800)
def write_index_generation(
    settings: Settings,
    collection: str,
    *,
    upserts: list[IndexedChunk],
    deletes: list[str],
    expected_ids: set[str],
    full_rebuild: bool,
    source_identity: str,
) -> PublishedGeneration:
    """Write the next generation, check it holds exactly the expected chunks, then publish it.

    Any failure before publishing discards the new generation: readers keep the previous one.
    """
    logger = get_run_logger()
    writer = open_index_writer(settings, collection)
    state = writer.state()
    check_same_source(state, source_identity=source_identity, embedding_model=settings.resolved_embedding_model,
                      full_rebuild=full_rebuild)
    generation = writer.begin(full_rebuild=full_rebuild, source_identity=source_identity,
                              embedding_model=settings.resolved_embedding_model)
    try:
        for start in range(0, len(upserts), 512):
            generation.upsert(upserts[start : start + 512])
        generation.delete(deletes)
        stored = generation.records()
        missing = expected_ids - set(stored)
        extra = set(stored) - expected_ids
        if missing or extra:
            raise IndexVerificationFailed(
                f"generation {generation.name} holds {len(stored)} chunks: {len(missing)} missing, "
                f"{len(extra)} unexpected; not published"
            )
        generation.publish()
    except BaseException:
        generation.discard()
        raise
    logger.info("published generation %s of %s with %d chunks", generation.name,
                settings.collection_name(collection), len(stored))
    return PublishedGeneration(name=generation.name, points=len(stored))
