"""The Grafana dashboard shows every seed metric, the SLO burn, backups and drills, cost and the probe.
(Its queries run against a live Prometheus in test_alerting_end_to_end.py.)"""

from __future__ import annotations

import json

from app.settings import PROJECT_ROOT

DASHBOARD = json.loads((PROJECT_ROOT / "deployments" / "grafana" / "textbook-ops.json").read_text())


def expressions() -> str:
    return "\n".join(t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", []))


def test_every_seed_metric_and_operations_signal_has_a_panel():
    shown = expressions()
    for metric in ["rag_query_duration_seconds_bucket", "rag_query_errors_total", "rag_tokens_used_total",
                   "rag_vector_search_latency_ms_bucket", "rag_llm_generation_latency_ms_bucket", "rag_active_sessions",
                   "rag_http_requests_total", "service:cpu_usage:ratio_rate5m", "service:memory_usage:ratio",
                   "service:db_pool_usage:ratio", "service:disk_usage:ratio", "service:uptime:ratio_1d",
                   "slo:availability_errors:ratio_rate1h", "slo:latency_e2e_slow:ratio_rate1h",
                   "slo:latency_retrieval_slow:ratio_rate1h", "slo:latency_generation_slow:ratio_rate1h",
                   "backup_last_verified_timestamp_seconds", "restore_drill_success", "cost_usd_projected_month",
                   "cost_usd_monthly_budget", "probe_success", "probe_availability_ratio",
                   "secret_rotation_last_success_timestamp_seconds", "ingest_last_run_success",
                   "game_day_mttr_seconds", "game_day_success", "game_day_last_success_timestamp_seconds"]:
        assert metric in shown, f"no panel shows {metric}"


def test_panels_use_the_datasource_variable_and_do_not_overlap():
    assert DASHBOARD["uid"] == "textbook-ops"
    cells = set()
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
