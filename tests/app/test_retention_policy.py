from datetime import UTC, datetime, timedelta

from app.ops.backups import CatalogEntry, retention_plan

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def nightly(days: int, status: str = "completed") -> list[CatalogEntry]:
    return [CatalogEntry(f"b{d:03d}", status, NOW - timedelta(days=d, hours=1)) for d in range(days)]


def test_defaults_keep_thirty_days_of_nightly_backups():
    plan = retention_plan(nightly(45), now=NOW, daily=30, weekly=0, monthly=0)
    assert sorted(plan.keep) == [f"b{d:03d}" for d in range(30)]
    assert sorted(plan.prune) == [f"b{d:03d}" for d in range(30, 45)]


def test_weekly_and_monthly_keep_the_newest_of_each_period():
    plan = retention_plan(nightly(120), now=NOW, daily=7, weekly=4, monthly=3)
    weekly = [b for b, why in plan.keep.items() if why == "weekly"]
    monthly = [b for b, why in plan.keep.items() if why == "monthly"]
    # NOW is Friday 2026-11-27: the newest of this week (b000) and of last week (b005, Sunday) are dailies.
    assert [b for b, why in plan.keep.items() if why == "daily"] == [f"b{d:03d}" for d in range(7)]
    assert weekly == ["b012", "b019"]  # Sundays 15 and 8 November
    assert monthly == ["b027", "b058"]  # 31 October and 30 September; November's newest is b000
    assert len(plan.keep) == 11 and len(plan.prune) == 109


def test_the_newest_verified_backup_and_a_drilled_one_are_never_pruned():
    entries = nightly(10) + [CatalogEntry("old-verified", "verified", NOW - timedelta(days=60)),
                             CatalogEntry("being-drilled", "completed", NOW - timedelta(days=50), drill_in_progress=True)]
    plan = retention_plan(entries, now=NOW, daily=3, weekly=0, monthly=0)
    assert plan.keep["old-verified"] == "newest verified" and plan.keep["being-drilled"] == "a drill is reading it"
    assert "old-verified" not in plan.prune and "being-drilled" not in plan.prune


def test_failed_and_in_progress_backups_are_not_retention_candidates():
    entries = [CatalogEntry("failed", "failed", NOW), CatalogEntry("running", "in_progress", None)]
    plan = retention_plan(entries, now=NOW, daily=1, weekly=0, monthly=0)
    assert plan.keep == {} and plan.prune == []


def test_a_backup_a_restore_used_recently_is_kept_and_every_pruned_one_says_why():
    entries = nightly(5) + [CatalogEntry("restored", "completed", NOW - timedelta(days=40),
                                         last_restored_at=NOW - timedelta(days=2)),
                            CatalogEntry("restored-long-ago", "completed", NOW - timedelta(days=41),
                                         last_restored_at=NOW - timedelta(days=20))]
    same_day = CatalogEntry("b000-earlier", "completed", NOW - timedelta(hours=2))
    plan = retention_plan([*entries, same_day], now=NOW, daily=3, weekly=0, monthly=0, keep_restored_days=14)
    assert plan.keep["restored"] == "a restore used it on 2026-11-25 03:00 UTC"
    assert sorted(plan.prune) == ["b000-earlier", "b003", "b004", "restored-long-ago"]
    assert plan.why_pruned["b000-earlier"] == "b000 is the backup kept for 2026-11-27 (daily)"
    assert plan.why_pruned["b003"].startswith("older than the 3 daily backups kept")
