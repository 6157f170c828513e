"""Backup freshness check: exits 1 when the newest verified backup is older than --max-age-hours (or none exists).

When it runs: hourly from GitHub Actions (.github/workflows/backup-freshness.yml), or by hand. Not a flow: it
reads the backup catalog (DATABASE_URL) directly, so it alarms even when Prefect itself is down.
A backup counts from the moment it was taken (finished_at), and only once a restore drill verified it.

When it fails: runbooks/backup-and-restore.md (is the nightly backup or the drill failing?).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from app.settings import SettingsError, get_settings
from flows.cli import flow_parser, run_cli
from tasks.catalog import newest_verified_backup

DEFAULT_MAX_AGE_HOURS = 26.0  # the nightly backup and its drill, plus two hours of slack


def backup_age_hours(backup: dict, now: datetime | None = None) -> float:
    finished = datetime.fromisoformat(backup["finished_at"])
    return ((now or datetime.now(UTC)) - finished).total_seconds() / 3600


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.check_backup_freshness", __doc__, on_the_server=False)
    parser.add_argument("--max-age-hours", type=float, default=DEFAULT_MAX_AGE_HOURS,
                        help=f"oldest acceptable verified backup (default {DEFAULT_MAX_AGE_HOURS:g})")
    args = parser.parse_args(argv)
    try:
        backup = newest_verified_backup(get_settings())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if backup is None:
        print("STALE: there is no verified backup at all", file=sys.stderr)
        return 1
    age = backup_age_hours(backup)
    if age > args.max_age_hours:
        print(f"STALE: the newest verified backup {backup['backup_id']} is {age:.1f} h old "
              f"(limit {args.max_age_hours:g} h)", file=sys.stderr)
        return 1
    print(f"fresh: verified backup {backup['backup_id']} is {age:.1f} h old (limit {args.max_age_hours:g} h)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, needs_server=False))
