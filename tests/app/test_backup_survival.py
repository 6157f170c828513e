"""How long an erased question can survive in a backup with the default retention (the README's Privacy section)."""

from datetime import UTC, datetime, timedelta

from app.ops.backups import CatalogEntry, retention_plan
from app.settings import Settings

README_BOUND_DAYS = 153  # keep in step with README.md, "Privacy"


def longest_kept_age_days(*, daily: int, weekly: int, monthly: int, days: int = 800) -> int:
    """Run the nightly backup and its retention for `days` days; the oldest backup ever still kept, in days."""
    start = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    catalog: list[CatalogEntry] = []
    oldest = 0
    for day in range(days):
        now = start + timedelta(days=day)
        catalog.append(CatalogEntry(f"b{day:04d}", "verified", now))
        plan = retention_plan(catalog, now=now, daily=daily, weekly=weekly, monthly=monthly)
        catalog = [e for e in catalog if e.backup_id in plan.keep]
        oldest = max(oldest, max((now - e.finished_at).days for e in catalog))  # type: ignore[operator]
    return oldest


def test_with_the_default_retention_an_erased_question_survives_in_backups_at_most_153_days():
    defaults = Settings(_env_file=None)
    longest = longest_kept_age_days(daily=defaults.backup_keep_daily, weekly=defaults.backup_keep_weekly,
                                    monthly=defaults.backup_keep_monthly)
    assert longest <= README_BOUND_DAYS
    assert longest == README_BOUND_DAYS  # the bound is tight: a month-end backup kept as the 6th monthly


def test_fewer_monthly_backups_shorten_the_bound():
    assert longest_kept_age_days(daily=30, weekly=8, monthly=0) <= 7 * 8
    assert longest_kept_age_days(daily=30, weekly=0, monthly=0) <= 30
