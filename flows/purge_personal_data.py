"""purge-personal-data: readers' questions, conversations and comments are kept only as long as the README says.

When it runs: daily at 04:30 UTC (prefect.yaml), after the nightly backup and the restore drill; or on demand.
What it does, in order: clear the question text of query_log rows older than QUERY_TEXT_RETENTION_DAYS (the rows
and their numbers stay, so costs and aggregates do not change) -> delete conversations idle for more than
SESSION_RETENTION_DAYS (their messages go with them) -> clear feedback comments older than the same (ratings
stay) -> an artifact `purge-personal-data` with the counts -> metrics to the Pushgateway when configured.
Every step works in batches of PURGE_BATCH_ROWS rows, one short transaction each; re-running is harmless.

When it fails: a step that could not take its locks in time is retried; a run that still fails has left every
finished batch done, and the next run continues. runbooks/readers-data.md.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import IsoDateTimeText
from tasks.notify import push_metrics
from tasks.privacy import PurgeStep, purge_expired


@flow(name="purge-personal-data", log_prints=True)
def purge_personal_data(as_of: IsoDateTimeText | None = None) -> dict:
    """Apply the retention of readers' data as of `as_of` (ISO date-time, default now UTC)."""
    settings = get_settings()
    now = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    question_cutoff = now - timedelta(days=settings.query_text_retention_days)
    session_cutoff = now - timedelta(days=settings.session_retention_days)

    steps = [
        purge_expired(settings, "question-text", question_cutoff),
        purge_expired(settings, "idle-sessions", session_cutoff),
        purge_expired(settings, "feedback-comments", session_cutoff),
    ]
    publish_purge_report(now, steps)
    push_metrics(settings, "purge_personal_data", {
        "personal_data_purge_last_success_timestamp_seconds": time.time(),
        "personal_data_purge_rows": float(sum(s.rows for s in steps)),
        "personal_data_purge_longest_batch_seconds": max(s.longest_batch_s for s in steps),
    })
    get_run_logger().info("purge as of %s: %s", now.isoformat(), ", ".join(f"{s.name} {s.rows}" for s in steps))
    questions, sessions, comments = steps
    return {"as_of": now.isoformat(), "questions_cleared": questions.rows, "sessions_deleted": sessions.rows,
            "comments_cleared": comments.rows, "batches": sum(s.batches for s in steps),
            "longest_batch_s": max(s.longest_batch_s for s in steps)}


@task(name="publish-purge-report", cache_policy=NO_CACHE)
def publish_purge_report(now: datetime, steps: list[PurgeStep]) -> None:
    lines = [f"# Readers' data purged as of {now.isoformat(timespec='seconds')}", "",
             "| what | older than | rows | batches | longest batch (s) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {s.name} | {s.cutoff.isoformat(timespec='seconds')} | {s.rows} | {s.batches} | "
              f"{s.longest_batch_s:.3f} |" for s in steps]
    lines += ["", "query_log rows keep their tokens, costs and status; backups keep older copies until they expire "
              "(README, Privacy). Runbook: runbooks/readers-data.md"]
    create_markdown_artifact(key="purge-personal-data", markdown="\n".join(lines),
                             description="question text, conversations and comments past their retention")


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.purge_personal_data", __doc__)
    parser.add_argument("--as-of", help="ISO date-time the retention is counted from (default: now, UTC)")
    args = parser.parse_args(argv)
    result = purge_personal_data(as_of=args.as_of)
    print(f"{result['questions_cleared']} questions cleared, {result['sessions_deleted']} conversations deleted, "
          f"{result['comments_cleared']} comments cleared in {result['batches']} batches "
          f"(longest {result['longest_batch_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
