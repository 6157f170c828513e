"""Game days end to end: each scenario breaks a real process of a `make up`-style stack (embedded Postgres, the API
started by devenv, the Qdrant Edge index), a real Prometheus evaluates the project's rules and a real Alertmanager
holds the alert that the flow reads from its API; the runbook's own commands fix it.

Only the timings differ from what ships (as in test_alerting_end_to_end.py): 1 s scrape and evaluation, `for:` 2 s,
and every range window divided by 30 (5m -> 10s), so an error ratio clears seconds after the fault instead of
minutes. One stack serves every scenario of the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import GameDay
from app.settings import PROJECT_ROOT, Settings, get_settings
from devenv.monitoring import MonitoringStack
from tests.conftest import free_port
from tests.monitoring.test_alerting_end_to_end import WebhookReceiver, alertmanager_config_for

pytestmark = pytest.mark.slow
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def quick_rule(rule: dict) -> dict:
    """`for:` 2 s, and every range window 30 times shorter (at least 10 s: ten scrapes)."""
    def shorter(match: re.Match) -> str:
        return f"[{max(10, int(match.group(1)) * UNITS[match.group(2)] // 30)}s]"

    rule = {**rule, "expr": re.sub(r"\[(\d+)([smhd])\]", shorter, rule["expr"])}
    if "for" in rule:
        rule["for"] = "2s"
    return rule


@pytest.fixture(scope="module")
def stack_env() -> Iterator[dict[str, str]]:
    """The environment of a `make up` stack on free ports; the module's flows and runbook commands read it."""
    root = Path(tempfile.mkdtemp(prefix="textbook-ops-game-day-"))
    root.chmod(0o755)  # the postgres user must reach the cluster's folder (pytest's tmp_path is 0700)
    env = {"DATA_DIR": str(root / "data"), "EMBEDDED_PG_PORT": str(free_port()), "API_HOST": "127.0.0.1",
           "API_PORT": str(free_port()), "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "GAME_DAY_POLL_S": "0.5",
           "GAME_DAY_DETECT_TIMEOUT_S": "90", "GAME_DAY_RECOVER_TIMEOUT_S": "120", "TASK_RETRY_DELAY_S": "0"}
    saved = dict(os.environ)
    for name in ("DATABASE_URL", "MAINTENANCE_DATABASE_URL", "BACKUP_DIR", "INDEX_DIR"):
        os.environ.pop(name, None)
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    webhook = WebhookReceiver()
    yield webhook
    webhook.stop()


@pytest.fixture(scope="module")
def monitoring(stack_env, receiver, tmp_path_factory) -> Iterator[MonitoringStack]:
    """Prometheus with quick rules scraping the stack's API, Alertmanager routing to `receiver`, and the
    Pushgateway the module's flows push to (PUSHGATEWAY_URL, ALERTMANAGER_URL in the environment)."""
    stack = MonitoringStack(
        root=tmp_path_factory.mktemp("monitoring"), api_target=f"127.0.0.1:{stack_env['API_PORT']}",
        prometheus_port=free_port(), alertmanager_port=free_port(), pushgateway_port=free_port(),
        scrape_interval="1s", evaluation_interval="1s", rule_transform=quick_rule,
        alertmanager_config=alertmanager_config_for(receiver),
    )
    try:
        stack.start()
        os.environ.update(PUSHGATEWAY_URL=stack.url("pushgateway"), ALERTMANAGER_URL=stack.url("alertmanager"))
        get_settings.cache_clear()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def game_day_stack(stack_env, prefect_harness, monitoring, tmp_path_factory) -> Iterator[Settings]:
    """Postgres and the API started as `make up` starts them, one chapter ingested, monitoring with quick rules."""
    from devenv.__main__ import api_pid_file, cluster_for, migrate, start_api, start_postgres
    from devenv.processes import stop_process
    from flows.backup_database import backup_database
    from flows.ingest_textbook import ingest_textbook

    settings = get_settings()
    chapter = tmp_path_factory.mktemp("chapters") / "textbook"
    chapter.mkdir()
    shutil.copy(PROJECT_ROOT / "website" / "docs" / "kinematics-and-locomotion.md", chapter)
    try:
        start_postgres(settings)
        migrate(settings)
        assert ingest_textbook(source=str(chapter), collection="textbook")["status"] == "completed"
        start_api(settings)
        backup_database()  # backup-broken damages the newest backup
        yield settings
    finally:
        stop_process(api_pid_file(settings), signals=1)
        cluster_for(settings).stop(mode="immediate")
        log = settings.data_dir / "logs" / "api.log"
        if log.exists():
            print(f"--- api.log\n{log.read_text()[-3000:]}")


def game_day_rows(settings: Settings, scenario: str) -> list[GameDay]:
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = list(db.exec(select(GameDay).where(GameDay.scenario == scenario).order_by(GameDay.id)).all())
    engine.dispose()
    return rows


def pushed(settings: Settings, name: str, scenario: str) -> float | None:
    text = httpx.get(f"{settings.pushgateway_url}/metrics", timeout=5).text
    match = re.search(rf'^{name}{{[^}}]*scenario="{scenario}"[^}}]*}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def assert_passed(settings: Settings, scenario: str, result: dict, detected_by: set[str]) -> GameDay:
    from flows.game_day import SCENARIOS

    assert result["status"] == "passed", result
    row = game_day_rows(settings, scenario)[-1]
    assert row.status == "passed" and row.failure_reason is None
    assert row.detected_by in detected_by
    assert 0 < row.detect_seconds < 90 and row.mitigate_seconds > 0 and row.recover_seconds >= 0
    assert row.mttr_seconds == pytest.approx(row.detect_seconds + row.mitigate_seconds + row.recover_seconds, abs=0.5)
    assert [s["exit_code"] for s in row.steps] == [0] * len(row.steps) and row.steps
    assert pushed(settings, "game_day_success", scenario) == 1.0
    assert pushed(settings, "game_day_mttr_seconds", scenario) == pytest.approx(row.mttr_seconds)
    assert pushed(settings, "game_day_last_success_timestamp_seconds", scenario) == pytest.approx(
        row.finished_at.timestamp(), abs=1)
    assert httpx.get(f"{settings.resolved_probe_base_url}/ready", timeout=5).status_code == 200
    assert SCENARIOS[scenario].alerts == () or row.detected_by in SCENARIOS[scenario].alerts
    return row


def test_service_down_is_detected_by_servicedown_and_fixed_by_the_runbook(game_day_stack, receiver):
    from flows.game_day import game_day

    result = game_day(scenario="service-down")
    assert_passed(game_day_stack, "service-down", result, {"ServiceDown"})
    assert {"email", "pagerduty"} <= receiver.received("ServiceDown")  # routed as in production


def test_database_down_is_detected_by_the_error_alerts_and_fixed_by_the_runbook(game_day_stack):
    from flows.game_day import game_day

    result = game_day(scenario="database-down")
    assert_passed(game_day_stack, "database-down", result, {"HighErrorRate", "SloAvailabilityBurnRateFast", "ServiceDown"})


def test_error_burst_from_a_missing_index_generation_is_rolled_back_by_the_runbook(game_day_stack):
    from flows.game_day import game_day

    result = game_day(scenario="error-burst")
    assert_passed(game_day_stack, "error-burst", result, {"HighErrorRate", "SloAvailabilityBurnRateFast"})


def test_backup_broken_fails_the_drill_fires_restoredrillfailed_and_a_new_backup_passes(game_day_stack):
    from app.core.models import BackupCatalog
    from flows.game_day import game_day

    result = game_day(scenario="backup-broken")
    assert_passed(game_day_stack, "backup-broken", result, {"RestoreDrillFailed"})
    from tasks.storage import backup_storage_for, dump_name

    engine = create_db_engine(game_day_stack)
    with Session(engine) as db:
        backups = list(db.exec(select(BackupCatalog).order_by(BackupCatalog.started_at)).all())
    engine.dispose()
    assert [b.status for b in backups][-2:] == ["failed", "verified"]  # the damaged one failed its drill; the new one passed
    # The finally put the damaged dump back as it was, and left every other backup alone.
    store = backup_storage_for(game_day_stack)
    assert [store.sha256(dump_name(b.backup_id))[0] for b in backups] == [b.sha256 for b in backups]


def test_secret_leaked_old_key_refused_new_key_works_other_clients_unharmed(game_day_stack):
    from flows.game_day import game_day

    result = game_day(scenario="secret-leaked")
    row = assert_passed(game_day_stack, "secret-leaked", result, {"declared (no alert covers it)"})
    assert [s["command"].split()[2] for s in row.steps] == ["flows.rotate_api_key", "app"]


def test_latency_from_a_lock_on_query_log_is_found_and_terminated_by_the_runbook(game_day_stack):
    from flows.game_day import game_day

    result = game_day(scenario="latency")
    row = assert_passed(game_day_stack, "latency", result, {"HighLatencyP95", "SloLatencyE2eBurnRateFast"})
    assert [s["command"].split()[3] for s in row.steps[:2]] == ["sql", "sql"] and "curl" in row.steps[2]["command"]
    assert query_log_lockers(game_day_stack) == 0
    assert httpx.post(f"{game_day_stack.resolved_probe_base_url}/v1/chat", json={"question": "What is a gait?"},
                      timeout=30).status_code == 200


def query_log_lockers(settings: Settings) -> int:
    """Sessions holding query_log in ACCESS EXCLUSIVE mode."""
    from sqlalchemy import text

    engine = create_db_engine(settings)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE relation = 'query_log'::regclass AND mode = 'AccessExclusiveLock'"
            )).scalar_one()
    finally:
        engine.dispose()


def index_pointer_restored(settings: Settings) -> bool:
    from tasks.faults import MISSING_GENERATION

    return MISSING_GENERATION not in (settings.resolved_index_dir / settings.collection_name() / "CURRENT").read_text()


BROKEN_RUNBOOKS = {  # scenario: (page, a command as written, the same command broken, steps that pass before it, restored?)
    "error-burst": ("high-error-rate.md", "w.activate(w.generations()[-1])", "w.activate(w.generations()[-1] + '-typo')",
                    0, index_pointer_restored),
    "latency": ("high-latency.md", "pg_terminate_backend(pid) AS terminated", "pg_terminate_backend_typo(pid) AS terminated",
                1, lambda settings: query_log_lockers(settings) == 0),
}


@pytest.mark.parametrize("scenario", list(BROKEN_RUNBOOKS))
def test_a_broken_runbook_command_fails_the_game_day_and_the_finally_restores_the_fault(game_day_stack, tmp_path,
                                                                                       scenario):
    from flows.game_day import SCENARIOS, game_day
    from tasks.game_day import RunbookStepFailed

    page_name, command, broken, steps_before, restored = BROKEN_RUNBOOKS[scenario]
    runbooks = tmp_path / "runbooks"
    shutil.copytree(PROJECT_ROOT / "runbooks", runbooks)
    page = runbooks / page_name
    assert command in page.read_text()
    page.write_text(page.read_text().replace(command, broken))
    with pytest.raises(RunbookStepFailed, match=page_name):
        game_day(scenario=scenario, runbooks_dir=str(runbooks))
    row = game_day_rows(game_day_stack, scenario)[-1]
    assert row.status == "failed" and "RunbookStepFailed" in row.failure_reason and "typo" in row.failure_reason
    assert row.detected_by in SCENARIOS[scenario].alerts and len(row.steps) == steps_before  # stopped at the broken one
    assert pushed(game_day_stack, "game_day_success", scenario) == 0.0
    # The finally undid the fault although the runbook could not.
    assert restored(game_day_stack)
    assert httpx.get(f"{game_day_stack.resolved_probe_base_url}/ready", timeout=5).status_code == 200


def paused_run(client, runner: threading.Thread, what: str):
    deadline = time.monotonic() + 120
    while True:
        runs = [r for r in client.read_flow_runs() if r.state and r.state.is_paused()]
        if runs:
            return runs[0]
        assert time.monotonic() < deadline and runner.is_alive(), f"never paused before {what}"
        time.sleep(0.5)


def test_practice_mode_pauses_before_each_step_and_measures_the_person(game_day_stack):
    """A person on call runs the runbook's commands by hand while the flow waits in Paused with a form."""
    import subprocess

    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.game_day import game_day
    from tasks.game_day import command_environment, runbook_steps

    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(game_day(scenario="error-burst", practice=True)))
    runner.start()
    steps = runbook_steps("error-burst")
    with get_client(sync_client=True) as client:
        for step in steps:
            run = paused_run(client, runner, f"`{step.command}`")
            done = subprocess.run(["bash", "-c", step.command], cwd=PROJECT_ROOT, env=command_environment({}),
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stderr
            resume_flow_run(run.id, run_input={"done": True, "notes": "by hand"})
            while client.read_flow_run(run.id).state.is_paused():  # resumed: the flow goes on to the next step
                time.sleep(0.2)
    runner.join(timeout=180)
    assert outcome.get("status") == "passed", outcome
    row = game_day_rows(game_day_stack, "error-burst")[-1]
    assert row.mode == "practice" and [s["by"] for s in row.steps] == ["person"] * len(steps)


def test_weekly_runs_the_scenarios_in_sequence_then_reports_mttr_and_success_rate_against_the_targets(
        game_day_stack):
    from prefect.exceptions import ParameterTypeError

    from flows.game_day import GameDaysFailed, game_day_report, game_days_weekly

    with pytest.raises(ParameterTypeError, match="scenarios"):  # the deployment's schema refuses it before a run
        game_days_weekly(scenarios=["no-such-scenario"])
    before = game_day_report(days=90)["secret-leaked"]["runs"]
    with pytest.raises(GameDaysFailed) as failed:  # one failed: the weekly run fails, after running the rest
        game_days_weekly.fn(scenarios=["no-such-scenario", "secret-leaked"])  # past the schema, to fail one
    assert failed.value.outcomes["no-such-scenario"].startswith("failed: ParameterTypeError")
    assert failed.value.outcomes["secret-leaked"] == "passed"
    report = game_day_report(days=90)
    assert report["secret-leaked"]["runs"] == before + 1 and report["secret-leaked"]["result"] == "met"
    assert report["error-burst"]["runs"] == 3 and report["error-burst"]["success rate"] == "67%"  # the broken runbook
    assert report["error-burst"]["result"] == "MISSED"
    assert report["service-down"]["success rate"] == "100%" and report["service-down"]["result"] == "met"
    if os.environ.get("GAME_DAY_BENCH_OUT"):  # bench/game_days.py tabulates the module's runs
        columns = ["scenario", "mode", "status", "detected_by", "inject_seconds", "detect_seconds", "mitigate_seconds",
                   "recover_seconds", "mttr_seconds"]
        runs = [{c: getattr(row, c) for c in columns} for name in report for row in game_day_rows(game_day_stack, name)]
        Path(os.environ["GAME_DAY_BENCH_OUT"]).write_text(json.dumps(runs))
