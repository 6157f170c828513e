"""Before a deploy: what the deployed commit's migrations would do to the database, and what changed since the
live deploy (release notes), both read from the git checkout (DEPLOY_REPO_DIR, default this one)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

# Statements that lose data or break the version still running during a rollout (and a rollback to it).
DESTRUCTIVE_PATTERNS = {
    "DROP TABLE": r"\bDROP\s+TABLE\b",
    "DROP COLUMN": r"\bDROP\s+COLUMN\b",
    "DROP SCHEMA": r"\bDROP\s+SCHEMA\b",
    "DROP DATABASE": r"\bDROP\s+DATABASE\b",
    "TRUNCATE": r"\bTRUNCATE\b",
    "DELETE": r"\bDELETE\s+FROM\b",
    "ALTER COLUMN TYPE": r"\bALTER\s+(?:COLUMN\s+)?\S+\s+(?:SET\s+DATA\s+)?TYPE\b",
    "RENAME": r"\bRENAME\s+(?:COLUMN\s+|CONSTRAINT\s+)?\S*\s*TO\b",
}


class DestructiveMigration(RuntimeError):
    """A pending migration drops, truncates, deletes, retypes or renames, and the deploy did not allow it."""


def git(repo: Path, *args: str, binary: bool = False) -> Any:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=not binary, timeout=60)
    if result.returncode != 0:
        err = result.stderr.decode() if binary else result.stderr
        raise RuntimeError(f"git {' '.join(args)}: {err.strip()[:300]}")
    return result.stdout


def has_commit(repo: Path, commit: str) -> bool:
    try:
        git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    except (RuntimeError, OSError):
        return False
    return True


def export_migrations(repo: Path, commit: str | None, target: Path) -> Path:
    """The `migrations/` folder as of `commit` (git archive), or the checkout's own when there is no commit."""
    if commit is None or not has_commit(repo, commit):
        return repo / "migrations"
    archive = git(repo, "archive", "--format=tar", commit, "migrations", binary=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "migrations"


def destructive_statements(sql: str) -> list[dict[str, str]]:
    """Every statement of an offline (`alembic upgrade --sql`) script matching a destructive pattern."""
    found = []
    text = re.sub(r"--[^\n]*", "", sql)
    for statement in (s.strip() for s in text.split(";")):
        if not statement or "alembic_version" in statement:
            continue
        for label, pattern in DESTRUCTIVE_PATTERNS.items():
            if re.search(pattern, statement, re.IGNORECASE):
                found.append({"kind": label, "statement": re.sub(r"\s+", " ", statement)[:300]})
                break
    return found


def _alembic_config(migrations_dir: Path, database_url: str, buffer: io.StringIO) -> Config:
    config = Config(str(migrations_dir / "alembic.ini"), output_buffer=buffer)
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def applied_revisions(database_url: str) -> set[str]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def pending_offline_sql(migrations_dir: Path, database_url: str) -> tuple[dict[str, str], list[str]]:
    """({revision: its offline SQL, `alembic upgrade <down>:<rev> --sql`} for every revision of `migrations_dir`
    the database lacks, oldest first; the applied revisions `migrations_dir` does not know).

    A merge revision (0009 joins 0005-0008) gets "": it carries no DDL of its own, and its offline SQL from one
    parent would repeat the other parents' statements under the merge's name."""
    buffer = io.StringIO()
    config = _alembic_config(migrations_dir, database_url, buffer)
    script = ScriptDirectory.from_config(config)
    heads = applied_revisions(database_url)
    known = {r.revision for r in script.walk_revisions()}
    applied: set[str] = set()
    for head in heads & known:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    pending: dict[str, str] = {}
    for revision in reversed(list(script.walk_revisions())):
        if revision.revision in applied:
            continue
        if revision.is_merge_point:
            pending[revision.revision] = ""
            continue
        buffer.seek(0)
        buffer.truncate()
        command.upgrade(config, f"{revision.down_revision or 'base'}:{revision.revision}", sql=True)
        pending[revision.revision] = buffer.getvalue()
    return pending, sorted(heads - known)


@task(name="inspect-pending-migrations", cache_policy=NO_CACHE)
def inspect_pending_migrations(database_url: str, repo: Path, commit: str | None) -> dict[str, Any]:
    """The offline SQL of every revision of `commit` the database lacks, and the destructive statements in it."""
    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="deploy-migrations-") as tmp:
        pending, unknown = pending_offline_sql(export_migrations(repo, commit, Path(tmp)), database_url)
    if unknown:
        logger.warning("the database has revisions %s that %s does not know (a newer schema)", unknown,
                       commit or "this checkout")
    report: dict[str, Any] = {"pending": list(pending), "unknown_applied": unknown, "destructive": [
        {"revision": revision, **item} for revision, sql in pending.items() for item in destructive_statements(sql)]}
    logger.info("pending migrations %s; destructive statements: %d", report["pending"] or "none",
                len(report["destructive"]))
    return report


@task(name="release-notes", cache_policy=NO_CACHE)
def release_notes(repo: Path, previous_commit: str | None, new_commit: str | None, limit: int = 200) -> str:
    """`git log previous..new`: the commits this deploy brings, or why they are unknown."""
    if not new_commit:
        return "no commit (an image deploy or the branch head): commits unknown"
    if not previous_commit:
        return f"no previous live deploy with a commit: deploying {new_commit}"
    for commit in (previous_commit, new_commit):
        if not has_commit(repo, commit):
            return f"commit {commit} is not in {repo}: fetch it to see the release notes"
    log = git(repo, "log", "--no-merges", f"--max-count={limit}", "--date=short", "--format=- %h %s (%an, %ad)",
              f"{previous_commit}..{new_commit}")
    if not log.strip():
        behind = git(repo, "rev-list", "--count", f"{new_commit}..{previous_commit}").strip()
        return f"no new commits ({new_commit} is {behind} commits behind the live {previous_commit})"
    return log.strip()
