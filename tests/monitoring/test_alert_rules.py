"""The monitoring configuration checked with the real tools: promtool and amtool (Debian packages)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.settings import PROJECT_ROOT

PROMETHEUS_DIR = PROJECT_ROOT / "deployments" / "prometheus"
ALERTMANAGER_CONFIG = PROJECT_ROOT / "deployments" / "alertmanager" / "alertmanager.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run devenv/install-system-packages.sh (Debian's prometheus packages)")
    return path


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def alerting_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_prometheus_config_and_its_rule_files():
    output = run(tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert f"{len(RULE_FILES)} rule files found" in output


def test_promtool_accepts_every_rule_file():
    run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))


def test_promtool_unit_tests_pass():
    run(tool("promtool"), "test", "rules", *map(str, TEST_FILES))


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names, "no alerting rules found"
    assert names - fires == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they stay quiet"


def test_every_alert_has_severity_summary_description_and_runbook():
    for rule in alerting_rules():
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule.get("annotations", {})
        missing = {"summary", "description", "runbook_url"} - set(annotations)
        assert not missing, f"{rule['alert']} lacks {missing}"


def test_the_seed_thresholds_are_the_shipped_ones():
    rules = {rule["alert"]: rule for rule in alerting_rules()}
    assert rules["HighErrorRate"]["expr"].strip().endswith("> 0.01") and rules["HighErrorRate"]["for"] == "5m"
    assert rules["HighLatencyP95"]["expr"].strip().endswith("> 8")
    assert rules["HighCpuUsage"]["expr"].strip().endswith("> 0.80")
    assert rules["HighMemoryUsage"]["expr"].strip().endswith("> 0.85")
    assert rules["DatabasePoolSaturated"]["expr"].strip().endswith("> 0.90")
    assert rules["DiskAlmostFull"]["expr"].strip().endswith("> 0.90")
    assert rules["UptimeBelowSlo"]["expr"].strip().endswith("< 0.995")
    for slo, budget in {"Availability": 0.005, "LatencyE2e": 0.05, "LatencyRetrieval": 0.05,
                        "LatencyGeneration": 0.05}.items():
        for tier, (long, short, factor) in {"Fast": ("1h", "5m", 14.4), "Medium": ("6h", "30m", 6),
                                            "Slow": ("3d", "6h", 1)}.items():
            expr = " ".join(rules[f"Slo{slo}BurnRate{tier}"]["expr"].split())
            assert f"ratio_rate{long} > ({factor} * {budget}) and" in expr
            assert expr.endswith(f"ratio_rate{short} > ({factor} * {budget})")


def test_amtool_accepts_the_alertmanager_config():
    run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))


@pytest.mark.parametrize(("labels", "receivers"), [
    (["severity=critical", "alertname=HighErrorRate"], "email,pagerduty"),
    (["severity=warning", "alertname=HighCpuUsage"], "email,slack"),
    (["severity=info", "alertname=Anything"], "email"),
])
def test_alertmanager_routes_by_severity(labels: list[str], receivers: str):
    output = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert output.strip() == receivers


def test_critical_alerts_page_through_pagerduty_events_v2():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    pagerduty = next(r for r in config["receivers"] if r["name"] == "pagerduty")["pagerduty_configs"][0]
    assert "routing_key" in pagerduty and "service_key" not in pagerduty  # routing_key = Events API v2
    assert config["global"]["pagerduty_url"].endswith("/v2/enqueue")
    down = [r for r in config["inhibit_rules"] if 'alertname="ServiceDown"' in r["source_matchers"]]
    assert down and "HighErrorRate" in down[0]["target_matchers"][0]


def test_prometheus_scrapes_the_service_and_the_pushgateway_with_honor_labels():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["textbook-api"]["metrics_path"] == "/metrics"
    assert jobs["pushgateway"]["honor_labels"] is True


def rule_files_for_test(path: Path) -> list[Path]:
    return [(path.parent / name).resolve() for name in yaml.safe_load(path.read_text())["rule_files"]]


def test_unit_tests_check_the_shipped_rule_files():
    used = {p for path in TEST_FILES for p in rule_files_for_test(path)}
    assert used == {p.resolve() for p in RULE_FILES}


def test_the_probe_runs_every_5_minutes_and_reports_daily():
    deployments = {d["name"]: d for d in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]}
    assert deployments["synthetic-probe"]["schedules"] == [{"cron": "*/5 * * * *", "timezone": "UTC"}]
    assert deployments["probe-availability-report"]["schedules"] == [{"cron": "0 7 * * *", "timezone": "UTC"}]
