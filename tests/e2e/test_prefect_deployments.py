"""End to end through a real Prefect server and a process worker: deployments run by name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from prefect.exceptions import PrefectHTTPStatusError
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import BackupCatalog, Deployment, ProbeResult, SecretRotation
from app.rag.vector_index.sparse_copy import copy_index_tree
from app.settings import PROJECT_ROOT
from devenv.prefect_stack import PrefectStack
from tests.browser.conftest import CHROMIUM_ARGS
from tests.conftest import APP_PASSWORD, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_stack(settings, tmp_path_factory):
    """One server and worker for the module's tests (starting them is the slow part)."""
    tmp_path = tmp_path_factory.mktemp("prefect-stack")
    stack = PrefectStack(home=tmp_path / "prefect-home", port=free_port(), log_dir=tmp_path / "logs")
    flow_env = {"DATABASE_URL": settings.database_url, "MAINTENANCE_DATABASE_URL": os.environ["MAINTENANCE_DATABASE_URL"],
                "BACKUP_DIR": str(tmp_path / "backups"), "DATA_DIR": str(tmp_path / "data"), "ENVIRONMENT": "test"}
    try:
        stack.start_server()
        stack.register_deployments()
        stack.start_worker(extra_env=flow_env)
        yield stack
    finally:
        stack.stop()
        for log in (tmp_path / "logs").glob("*.log"):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")


@pytest.fixture
def run_through_worker(prefect_stack, monkeypatch):
    """run_deployment against the module's server: what the UI's Run button and `prefect deployment run` do."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_stack.api_url)

    def run(name: str, **kwargs):
        with temporary_settings({PREFECT_API_URL: prefect_stack.api_url}):
            return run_deployment(name, timeout=240, **kwargs)

    return run


def rows_of(settings, statement) -> list:
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = list(db.exec(statement).all())
    engine.dispose()
    return rows


def test_backup_and_drill_deployments_run_through_the_worker(settings, run_through_worker):
    backup = run_through_worker("backup-database/backup-database")
    assert backup.state.is_completed(), backup.state
    drill = run_through_worker("restore-drill/restore-drill")
    assert drill.state.is_completed(), drill.state
    rows = rows_of(settings, select(BackupCatalog).where(BackupCatalog.flow_run_id == backup.id))
    assert [r.status for r in rows] == ["verified"]


def test_runs_through_the_worker_log_their_steps_to_the_server(prefect_stack, run_through_worker):
    """The worker runs under PREFECT_LOGGING_LEVEL=WARNING (tests/conftest.py, like the Makefile), yet each run's
    Logs tab (`prefect flow-run logs ID` reads the same API) shows its INFO steps."""
    assert os.environ["PREFECT_LOGGING_LEVEL"] == "WARNING"
    backup = run_through_worker("backup-database/backup-database")
    drill = run_through_worker("restore-drill/restore-drill")
    assert backup.state.is_completed() and drill.state.is_completed(), (backup.state, drill.state)
    backup_logs = prefect_stack.prefect("flow-run", "logs", str(backup.id))
    assert "completed:" in backup_logs and "dumped textbook" in backup_logs, backup_logs
    drill_logs = prefect_stack.prefect("flow-run", "logs", str(drill.id))
    assert "PASS" in drill_logs and "verified: restore" in drill_logs, drill_logs


def test_deploy_backend_goes_live_then_rolls_back_a_bad_version_through_the_worker(settings, run_through_worker,
                                                                                  deploy_versions, deploy_target):
    """The issue's acceptance: a deploy run through Prefect against the local Render emulator goes live when the
    new version is healthy and rolls back by itself when it is not."""
    from tests.support.deploy_targets import BAD, NEW, deploy_env, fake_registry, fake_render

    registry = fake_registry()
    render = fake_render(deploy_versions, deploy_target, registry)
    job_env = {"job_variables": {"env": deploy_env(render, deploy_target, registry)}}
    try:
        good = run_through_worker("deploy-backend/deploy-backend", parameters={"commit_id": NEW}, **job_env)
        assert good.state.is_completed(), good.state
        live = render.live()
        assert live["image"]["sha"] == registry.tags[NEW]
        bad = run_through_worker("deploy-backend/deploy-backend",
                                 parameters={"image_digest": registry.tags[BAD]}, **job_env)
        assert bad.state.is_failed(), bad.state
        assert f"rolled back to {live['id']}" in bad.state.message
    finally:
        render.stop()
        registry.stop()
    assert render.live()["image"]["sha"] == registry.tags[NEW], "the previous digest serves again"
    rows = rows_of(settings, select(Deployment).where(Deployment.flow_run_id.in_([good.id, bad.id])))  # type: ignore[union-attr]
    assert {r.flow_run_id: r.status for r in rows} == {good.id: "live", bad.id: "rolled_back"}


def test_rotation_and_cost_report_deployments_run_through_the_worker(settings, run_through_worker):
    """Both operations run as deployments, through a worker, as they do in production."""
    rotation = run_through_worker("rotate-db-credentials/rotate-db-credentials")
    assert rotation.state.is_completed(), rotation.state
    report = run_through_worker("cost-report/cost-report")
    assert report.state.is_completed(), report.state
    audit = rows_of(settings, select(SecretRotation).where(SecretRotation.flow_run_id == rotation.id))
    assert [(row.secret_name, row.status) for row in audit] == [("textbook-ops-database-credentials", "completed")]


def test_synthetic_probe_deployment_runs_through_the_worker(settings, run_through_worker, ingested_textbook, tmp_path):
    """The probe as scheduled: through the worker, against the real service running as a process."""
    from tests.support.service_process import run_service

    copy_index_tree(settings.resolved_index_dir, tmp_path / "index")
    with run_service({"DATABASE_URL": settings.database_url, "INDEX_DIR": str(tmp_path / "index")},
                     tmp_path / "api.log") as service:
        probe = run_through_worker("synthetic-probe/synthetic-probe", parameters={"base_url": service.base})
    assert probe.state.is_completed(), probe.state
    checks = rows_of(settings, select(ProbeResult).where(ProbeResult.flow_run_id == probe.id))
    assert {(c.check_name, c.success) for c in checks} == {("health", True), ("ready", True), ("canary", True)}


def test_a_bad_parameter_is_refused_before_a_run_exists(run_through_worker):
    """What `prefect deployment run backup-database/backup-database -p storage=S3` and the UI's Custom run meet."""
    with pytest.raises(PrefectHTTPStatusError, match="Validation failed for field 'storage'"):
        run_through_worker("backup-database/backup-database", parameters={"storage": "S3"})


def test_the_openai_key_deployment_takes_a_block_name_and_never_the_key(prefect_stack):
    """The registered deployment's parameter schema (what the UI's Custom run form and Parameters tab show)."""
    response = httpx.get(f"{prefect_stack.api_url}/deployments/name/rotate-openai-key/rotate-openai-key", timeout=30)
    response.raise_for_status()
    deployment = response.json()
    schema = deployment["parameter_openapi_schema"]
    assert list(schema["properties"]) == ["new_key_block"] and schema["required"] == ["new_key_block"]
    assert deployment["parameters"] == {"new_key_block": "textbook-ops-openai-api-key-incoming"}


def flow_runs_of(stack: PrefectStack, flow_name: str) -> list[dict]:
    response = httpx.post(f"{stack.api_url}/flow_runs/filter", timeout=30, json={
        "flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_DESC", "limit": 20})
    response.raise_for_status()
    return response.json()


def test_a_command_line_run_lands_on_the_stacks_server(prefect_stack, tmp_path):
    """`python -m flows.cost_report` while the stack runs: no PREFECT_API_URL, only the stack's port (as `make up`
    sets it), and a home of its own; the run shows on the stack's server, not on a temporary one."""
    before = {r["id"] for r in flow_runs_of(prefect_stack, "cost-report")}
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_PORT=str(prefect_stack.port), PREFECT_HOME=str(tmp_path / "cli-home"))
    result = subprocess.run([sys.executable, "-m", "flows.cost_report"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"running on the Prefect server at {prefect_stack.ui_url}" in result.stderr
    assert "database is locked" not in result.stderr
    [new] = [r for r in flow_runs_of(prefect_stack, "cost-report") if r["id"] not in before]
    assert new["state_type"] == "COMPLETED" and new["deployment_id"] is None


HEARTBEATING_RUN = """
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from prefect import flow
from prefect.runtime import flow_run

@flow(name="heartbeat-then-die")
def heartbeat_then_die():
    print(flow_run.id, flush=True)
    time.sleep(600)

heartbeat_then_die()
"""


def heartbeats_of(stack: PrefectStack, run_id: str) -> list[dict]:
    response = httpx.post(f"{stack.api_url}/events/filter", timeout=30, json={"filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{run_id}"]}}})
    response.raise_for_status()
    return response.json()["events"]


def flow_run(stack: PrefectStack, run_id: str) -> dict:
    response = httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=30)
    response.raise_for_status()
    return response.json()


def test_a_run_whose_process_dies_is_marked_crashed_once_its_heartbeats_stop(prefect_stack):
    """deployments/prefect-automations.yaml, registered by the stack, with its 600 s window shortened to 45 s: a
    heartbeating run killed with SIGKILL (no Prefect code runs to report it) ends Crashed instead of Running."""
    names = prefect_stack.register_automations(within_s=45)
    assert names == ["Crash flow runs whose heartbeats stopped"]
    process = subprocess.Popen([sys.executable, "-c", HEARTBEATING_RUN], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               text=True, env=prefect_stack.env({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}))
    try:
        run_id = process.stdout.readline().strip()
        assert run_id, "the flow run did not start"
        deadline = time.monotonic() + 60
        while not heartbeats_of(prefect_stack, run_id):
            assert time.monotonic() < deadline, "the run sent no heartbeat"
            time.sleep(1)
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 180
        while (run := flow_run(prefect_stack, run_id))["state_type"] == "RUNNING":
            assert time.monotonic() < deadline, "the killed run still shows Running 180 s later"
            time.sleep(2)
        assert run["state_type"] == "CRASHED", run["state"]
        assert "No heartbeat for 600 s" in run["state"]["message"]
        the_ui_shows_the_crash(prefect_stack, run_id)
    finally:
        process.kill()
        prefect_stack.register_automations()


def the_ui_shows_the_crash(stack: PrefectStack, run_id: str) -> None:
    """What an operator sees: the run page says Crashed, and the Automations page names the automation."""
    from playwright.sync_api import expect

    with prefect_ui_page("prefect-ui-crash-failure.png") as page:
        page.goto(f"{stack.ui_url}/runs/flow-run/{run_id}")
        expect(page.get_by_text("Crashed", exact=True).first).to_be_visible()
        page.goto(f"{stack.ui_url}/automations")
        expect(page.get_by_text("Crash flow runs whose heartbeats stopped")).to_be_visible()


@contextmanager
def prefect_ui_page(failure_screenshot: str) -> Iterator[Any]:
    """A page of Debian's Chromium for the Prefect UI; an assertion that fails inside leaves a full-page screenshot
    in test-output/."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        except AssertionError:
            (PROJECT_ROOT / "test-output").mkdir(exist_ok=True)
            page.screenshot(path=str(PROJECT_ROOT / "test-output" / failure_screenshot), full_page=True)
            raise
        finally:
            browser.close()


def test_rotation_through_the_worker_reaches_the_service_reading_the_store(settings, prefect_stack, run_through_worker,
                                                                          pg_cluster, tmp_path):
    """`make up`'s service reads rotated credentials from the store (devenv: service_secrets_env): under load, a
    rotation run by the worker moves its new connections to the new role, and no request fails."""
    import threading

    from devenv.__main__ import service_secrets_env
    from tests.support.service_process import run_service

    def service_roles() -> set[str]:
        with psycopg.connect(pg_cluster.superuser_dsn()) as conn:
            return {r[0] for r in conn.execute("SELECT usename FROM pg_stat_activity WHERE datname = 'textbook' "
                                               "AND application_name = 'textbook-ops'")}

    def current_role() -> str:
        """Read the way the service reads it."""
        from app.core.secret_source import DatabaseCredentials, PrefectBlockReader, database_credentials_secret_name

        name = database_credentials_secret_name(settings)
        return DatabaseCredentials.parse(PrefectBlockReader(prefect_stack.api_url).read(name), name=name).username

    assert run_through_worker("rotate-db-credentials/rotate-db-credentials").state.is_completed()
    before = current_role()
    env = {**service_secrets_env(prefect_stack.api_url), "DATABASE_URL": settings.database_url, "DB_POOL_SIZE": "1",
           "SECRET_REFRESH_S": "1"}  # the store is re-read each second (default 300)
    statuses: list[str] = []
    seen_after: set[str] = set()
    stop = threading.Event()
    with run_service(env, tmp_path / "api.log", ready_path="/health") as service:
        def load() -> None:
            """/ready pings Postgres on every call; 4 callers on a pool of 1 (+1 overflow) open new connections.
            (This service has no index, so /ready is 503 for that; its Postgres check is what counts here.)"""
            with httpx.Client(base_url=service.base, timeout=30) as client:
                while not stop.is_set():
                    statuses.append(client.get("/ready").json()["checks"]["postgres"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            while len(statuses) < 20:
                stop.wait(0.2)
            seen_before = service_roles()
            assert run_through_worker("rotate-db-credentials/rotate-db-credentials").state.is_completed()
            after = current_role()
            for _ in range(200):  # bounded: until a connection of the new role shows up
                seen_after |= service_roles()
                if after in seen_after:
                    break
                stop.wait(0.1)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=60)
    assert before != after and before in seen_before, (before, seen_before)
    assert after in seen_after, (after, seen_after)
    assert statuses and set(statuses) == {"ok"}, sorted(set(statuses))


def test_the_prefect_ui_shows_each_runs_logs_and_the_current_catalog(settings, prefect_stack, run_through_worker):
    """The issue's acceptance, in Debian's Chromium: after a backup, a drill and a failed backup ran through the
    worker, each run's Logs tab shows its lines and the drill's Artifacts tab the catalog with the backup verified."""
    from playwright.sync_api import expect
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    backup = run_through_worker("backup-database/backup-database")
    drill = run_through_worker("restore-drill/restore-drill")
    with temporary_settings({PREFECT_API_URL: prefect_stack.api_url}):
        Secret(value=settings.database_url.replace(APP_PASSWORD, "wrong-password")).save("wrong-database-url",
                                                                                         overwrite=True)
    failed = run_through_worker("backup-database/backup-database",
                                parameters={"database_url_block": "wrong-database-url"})
    assert backup.state.is_completed() and drill.state.is_completed() and failed.state.is_failed()
    [backup_row] = rows_of(settings, select(BackupCatalog).where(BackupCatalog.flow_run_id == backup.id))
    [failed_row] = rows_of(settings, select(BackupCatalog).where(BackupCatalog.flow_run_id == failed.id))
    assert failed_row.status == "failed" and failed_row.failure_reason.startswith("DatabaseLoginRejected: ")

    with prefect_ui_page("prefect-ui-failure.png") as page:
        def open_tab(run, tab: str) -> None:
            page.goto(f"{prefect_stack.ui_url}/runs/flow-run/{run.id}")
            page.get_by_text(tab, exact=True).first.click()

        open_tab(backup, "Logs")
        expect(page.get_by_text(re.compile(r"^dumped textbook: \d+ bytes"))).to_be_visible()
        expect(page.get_by_text(f"backup {backup_row.backup_id} completed: ", exact=False)).to_be_visible()
        open_tab(drill, "Logs")
        expect(page.get_by_text("PASS schema_fingerprint_equal(schema) ok")).to_be_visible()
        expect(page.get_by_text(f"backup {backup_row.backup_id} verified: restore", exact=False)).to_be_visible()
        open_tab(failed, "Logs")
        expect(page.get_by_text(re.compile(
            rf"backup {failed_row.backup_id} failed: .*password authentication failed"))).to_be_visible()
        open_tab(drill, "Artifacts")
        page.get_by_text("the newest backups and their status").click()
        row = page.locator("tr", has_text=backup_row.backup_id)
        expect(row).to_contain_text("verified")
