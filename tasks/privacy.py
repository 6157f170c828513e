"""Retention of readers' data: clear or delete what is older than its retention, a batch per transaction.

Each batch picks its rows with FOR UPDATE SKIP LOCKED and commits: a row the service is writing is left for the
next run, and no lock is held longer than one batch (bench/purge_personal_data.py measures how long that is).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.settings import Settings
from tasks.databases import connect

CLEAR_QUESTION_TEXT_SQL = """
UPDATE query_log q SET question = NULL
FROM (SELECT id FROM query_log WHERE question IS NOT NULL AND created_at < %(cutoff)s
      ORDER BY created_at LIMIT %(rows)s FOR UPDATE SKIP LOCKED) batch
WHERE q.id = batch.id
"""
DELETE_IDLE_SESSIONS_SQL = """
DELETE FROM chat_session s
USING (SELECT id FROM chat_session WHERE last_active_at < %(cutoff)s
       ORDER BY last_active_at LIMIT %(rows)s FOR UPDATE SKIP LOCKED) batch
WHERE s.id = batch.id
"""
CLEAR_FEEDBACK_COMMENTS_SQL = """
UPDATE feedback f SET comment = NULL
FROM (SELECT id FROM feedback WHERE comment IS NOT NULL AND created_at < %(cutoff)s
      LIMIT %(rows)s FOR UPDATE SKIP LOCKED) batch
WHERE f.id = batch.id
"""
LOCK_TIMEOUT = "5s"  # a batch that cannot get its table lock in time fails (and is retried) instead of queueing


@dataclass
class PurgeStep:
    """What one kind of purge did: rows touched, in how many transactions, and the longest one."""

    name: str
    cutoff: datetime
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    batch_seconds: list[float] = field(default_factory=list)

    @property
    def longest_batch_s(self) -> float:
        return max(self.batch_seconds, default=0.0)


def purge_in_batches(settings: Settings, name: str, statement: str, cutoff: datetime) -> PurgeStep:
    """Run `statement` (one batch of at most PURGE_BATCH_ROWS rows) in its own transaction until a batch comes
    back short. Re-running after a failure continues where it stopped: every statement skips what it already did."""
    step = PurgeStep(name=name, cutoff=cutoff)
    batch_rows = settings.purge_batch_rows
    started = time.perf_counter()
    with connect(settings.resolved_database_url, autocommit=True) as conn:
        while True:
            batch_started = time.perf_counter()
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                touched = conn.execute(statement, {"cutoff": cutoff, "rows": batch_rows}).rowcount
            step.batch_seconds.append(time.perf_counter() - batch_started)
            step.batches += 1
            step.rows += touched
            if touched < batch_rows:
                break
    step.seconds = time.perf_counter() - started
    return step


PURGES: dict[str, tuple[str, str]] = {
    # kind: (what the report calls it, one batch of it)
    "question-text": ("question text in query_log", CLEAR_QUESTION_TEXT_SQL),
    "idle-sessions": ("idle conversations", DELETE_IDLE_SESSIONS_SQL),
    "feedback-comments": ("feedback comments", CLEAR_FEEDBACK_COMMENTS_SQL),
}


@task(name="purge-expired", task_run_name="purge-{kind}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[10, 60], timeout_seconds=3600)
def purge_expired(settings: Settings, kind: str, cutoff: datetime) -> PurgeStep:
    """One kind of readers' data older than `cutoff`: `question-text` (query_log keeps its numbers, the text goes),
    `idle-sessions` (conversations last active before it, their messages with them by ON DELETE CASCADE) or
    `feedback-comments` (ratings stay, the free text goes)."""
    name, statement = PURGES[kind]
    step = purge_in_batches(settings, name, statement, cutoff)
    get_run_logger().info("%s older than %s: %d rows in %d batches", name, cutoff, step.rows, step.batches)
    return step
