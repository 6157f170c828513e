"""Data quality gates, with Great Expectations. GX is imported only when a check runs (it is slow)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

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


def _validate_frame(frame: Any, suite_name: str, expectations: list[Any]) -> Any:
    """Run expectations over a DataFrame in an ephemeral GX context (no files, no progress bars)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (context.data_sources.add_pandas(suite_name).add_dataframe_asset("frame")
                        .add_batch_definition_whole_dataframe("batch"))
    suite = gx.ExpectationSuite(name=suite_name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    return batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)


def run_chunk_expectations(chunks: list[Chunk], accepted_files: list[str], known_locales: set[str]) -> list[ExpectationOutcome]:
    import great_expectations.expectations as gxe
    import pandas as pd

    frame = pd.DataFrame({
        "id": [c.id for c in chunks],
        "text_length": [len(c.text.strip()) for c in chunks],
        "locale": [c.locale for c in chunks],
        "url": [c.url for c in chunks],
        "file": [f"{c.locale}:{c.source_path}" for c in chunks],
    })
    result = _validate_frame(frame, "textbook-chunks", [
        gxe.ExpectColumnValuesToBeBetween(column="text_length", min_value=1, max_value=MAX_CHUNK_CHARS),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="locale", value_set=sorted(known_locales)),
        gxe.ExpectColumnValuesToMatchRegex(column="url", regex=URL_PATTERN),
        gxe.ExpectColumnDistinctValuesToContainSet(column="file", value_set=sorted(accepted_files)),
    ])
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


class RestoreValidationFailed(ValueError):
    """The restored database is not the database the manifest describes."""

    outcomes: list[ExpectationOutcome] = []


@task(name="validate-restore", cache_policy=NO_CACHE)
def validate_restore(manifest: dict, facts: Any, key_tables: list[str]) -> list[ExpectationOutcome]:
    """Great Expectations over the restored tables against the manifest: every table present, exact row
    counts equal, primary-key constraints present, key tables not empty; plus the schema fingerprint."""
    logger = get_run_logger()
    outcomes = run_restore_expectations(manifest, facts, key_tables)
    for outcome in outcomes:
        logger.info("%s %s(%s) %s", "PASS" if outcome.success else "FAIL", outcome.expectation, outcome.column,
                    outcome.details)
    failed = [o for o in outcomes if not o.success]
    if failed:
        error = RestoreValidationFailed("; ".join(f"{o.expectation}({o.column}): {o.details}" for o in failed))
        error.outcomes = outcomes  # the drill's artifact shows every check, the failed ones too
        raise error
    return outcomes


def run_restore_expectations(manifest: dict, facts: Any, key_tables: list[str]) -> list[ExpectationOutcome]:
    import great_expectations.expectations as gxe
    import pandas as pd

    expected: dict[str, int] = manifest["row_counts"]
    tables = sorted(set(expected) | set(facts.row_counts))
    frame = pd.DataFrame({
        "table": tables,
        "present": [t in facts.row_counts for t in tables],
        "expected_rows": [expected.get(t, -1) for t in tables],
        "restored_rows": [facts.row_counts.get(t, -1) for t in tables],
        "primary_key_ok": [(t not in manifest["tables_with_primary_key"]) or (t in facts.tables_with_primary_key)
                           for t in tables],
        "is_key_table": [t in key_tables for t in tables],
    })
    result = _validate_frame(frame, "restored-database", [
        gxe.ExpectColumnValuesToBeInSet(column="present", value_set=[True]),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="expected_rows", column_B="restored_rows"),
        gxe.ExpectColumnValuesToBeInSet(column="primary_key_ok", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="restored_rows", min_value=1,
                                          row_condition='is_key_table == True', condition_parser="pandas"),
    ])
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        details = item.result or {}
        column = str(config.kwargs.get("column") or f"{config.kwargs.get('column_A')}={config.kwargs.get('column_B')}")
        if item.success:
            text = "ok"
        else:
            if column == "present":
                bad = frame[~frame["present"]]
            elif column.startswith("expected_rows"):
                bad = frame[frame["expected_rows"] != frame["restored_rows"]]
            elif column == "primary_key_ok":
                bad = frame[~frame["primary_key_ok"]]
            else:
                bad = frame[frame["is_key_table"] & (frame["restored_rows"] < 1)]
            text = f"{details.get('unexpected_count', len(bad))} table(s): " + ", ".join(
                f"{r.table} (expected {r.expected_rows}, restored {r.restored_rows})" for r in bad.head(5).itertuples())
        outcomes.append(ExpectationOutcome(config.type, column, bool(item.success), text))
    fingerprint_ok = manifest["schema_fingerprint"] == facts.schema_fingerprint
    outcomes.append(ExpectationOutcome("schema_fingerprint_equal", "schema", fingerprint_ok,
                                       "ok" if fingerprint_ok else "the restored schema differs from the manifest's"))
    return outcomes
