"""A fresh stack whose restore drill passed raises no operations alert, firing or pending.

The stack is the game days' (tests/monitoring/test_game_days.py, started afresh for this module): Postgres and the
API started as `make up` starts them, one chapter ingested, one backup taken, a real Prometheus evaluating the
project's rules (quick timings) and the Pushgateway the flows push to. Until a drill verifies a backup,
BackupNotVerifiedRecently holds (absent() of the verified timestamp); the drill's push must clear it, and every
other rule of the operations group must stay quiet on a stack that never rotated a secret, never ran the probe,
the cost report or a game day: those rules fire on what was pushed, not on what is missing.
"""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest
import yaml

from app.settings import PROJECT_ROOT
from devenv.monitoring import MonitoringStack
from tests.monitoring.test_game_days import game_day_stack, monitoring, receiver, stack_env  # noqa: F401

# The game days' module-scoped stack, started afresh for this module (pytest finds fixtures imported here).
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
OPERATIONS_RULES = PROJECT_ROOT / "deployments" / "prometheus" / "rules" / "operations.yml"


def operations_group(prometheus: str) -> dict:
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return next(g for g in groups if g["name"] == "operations")


def evaluated_at(group: dict) -> datetime:
    """lastEvaluation is RFC 3339 with nanoseconds; Python reads microseconds."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", group["lastEvaluation"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp)


def active_operations_alerts(prometheus: str, names: set[str]) -> list[tuple[str, str]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return sorted((a["labels"]["alertname"], a["state"]) for a in alerts if a["labels"]["alertname"] in names)


def scraped(prometheus: str, query: str) -> bool:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    return bool(result)


def test_a_fresh_stack_with_a_passing_drill_has_no_operations_alert(game_day_stack, monitoring: MonitoringStack):  # noqa: F811
    from flows.restore_drill import restore_drill

    prometheus = monitoring.url("prometheus")
    shipped = {rule["alert"] for group in yaml.safe_load(OPERATIONS_RULES.read_text())["groups"]
               for rule in group["rules"] if "alert" in rule}
    group = operations_group(prometheus)
    assert {rule["name"] for rule in group["rules"]} == shipped, "Prometheus loaded the shipped operations rules"

    # Before any drill the stack is not fine, and Prometheus says so: the check below can see an alert.
    wait_until(lambda: ("BackupNotVerifiedRecently", "firing") in active_operations_alerts(prometheus, shipped),
               timeout_s=60, what="BackupNotVerifiedRecently before the first drill", poll_s=0.25)

    assert restore_drill()["verified"] is True
    pushed = httpx.get(f"{monitoring.url('pushgateway')}/metrics", timeout=5).text
    assert re.search(r'^restore_drill_success\{[^}]*job="restore_drill"[^}]*\} 1$', pushed, re.M), pushed[-2000:]
    assert re.search(r'^backup_last_verified_timestamp_seconds\{[^}]*job="restore_drill"', pushed, re.M)
    assert re.search(r'^backup_last_success_timestamp_seconds\{[^}]*job="backup_database"', pushed, re.M)

    # Prometheus has scraped the drill's push; then one evaluation of the group that started after that.
    wait_until(lambda: scraped(prometheus, 'restore_drill_success{job="restore_drill"} == 1')
               and scraped(prometheus, 'backup_last_verified_timestamp_seconds{job="restore_drill"}'),
               timeout_s=30, what="the drill's push in Prometheus", poll_s=0.25)
    seen_at = evaluated_at(operations_group(prometheus))
    group = wait_until(lambda: (g := operations_group(prometheus)) and evaluated_at(g) > seen_at and g, timeout_s=30,
                       what="an evaluation of the operations group after the push", poll_s=0.25)
    assert all(rule["health"] == "ok" for rule in group["rules"]), [(r["name"], r.get("lastError")) for r in
                                                                     group["rules"]]
    assert active_operations_alerts(prometheus, shipped) == []
