"""Data quality gates, with Great Expectations. GX is imported only when a check runs (it is slow)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.rag.chunking import Chunk

URL_PATTERN = r"^(?:/[a-z]{2})?/docs(?:/[^\s#]*)?(?:#\S*)?$"
MAX_CHUNK_CHARS = 4000


class ChunkValidationFailed(ValueError):
    """The batch of chunks broke an expectation; nothing was written."""


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    details: str


@task(name="validate-chunks", cache_policy=NO_CACHE)
def validate_chunks(chunks: list[Chunk], accepted_files: list[str], known_locales: set[str]) -> list[ExpectationOutcome]:
    """Great Expectations suite over the batch: raise ChunkValidationFailed when any expectation fails."""
    logger = get_run_logger()
    outcomes = run_chunk_expectations(chunks, accepted_files, known_locales)
    failed = [o for o in outcomes if not o.success]
    for outcome in outcomes:
        logger.info("%s %s(%s) %s", "PASS" if outcome.success else "FAIL", outcome.expectation, outcome.column,
                    outcome.details)
    if failed:
        summary = "; ".join(f"{o.expectation}({o.column}): {o.details}" for o in failed)
        raise ChunkValidationFailed(f"{len(failed)} expectation(s) failed, nothing was written: {summary}")
    return outcomes


def run_chunk_expectations(chunks: list[Chunk], accepted_files: list[str], known_locales: set[str]) -> list[ExpectationOutcome]:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = pd.DataFrame({
        "id": [c.id for c in chunks],
        "text_length": [len(c.text.strip()) for c in chunks],
        "locale": [c.locale for c in chunks],
        "url": [c.url for c in chunks],
        "file": [f"{c.locale}:{c.source_path}" for c in chunks],
    })
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("ingest")
        .add_dataframe_asset("chunks")
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = gx.ExpectationSuite(name="textbook-chunks")
    for expectation in (
        gxe.ExpectColumnValuesToBeBetween(column="text_length", min_value=1, max_value=MAX_CHUNK_CHARS),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="locale", value_set=sorted(known_locales)),
        gxe.ExpectColumnValuesToMatchRegex(column="url", regex=URL_PATTERN),
        gxe.ExpectColumnDistinctValuesToContainSet(column="file", value_set=sorted(accepted_files)),
    ):
        suite.add_expectation(expectation)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        details = item.result or {}
        if "unexpected_count" in details:
            text = f"{details['unexpected_count']} unexpected, e.g. {details.get('partial_unexpected_list', [])[:3]}"
        else:
            observed = details.get("observed_value")
            missing = sorted(set(accepted_files) - set(observed or [])) if config.type.endswith("contain_set") else []
            text = f"files without chunks: {missing[:5]}" if missing else "ok"
        outcomes.append(ExpectationOutcome(config.type, str(config.kwargs.get("column", "")), bool(item.success), text))
    return outcomes
