"""End to end through a real Prefect server and a process worker: deployments run by name."""

from __future__ import annotations

import os

import pytest
from sqlmodel import Session, select

from app.db import create_db_engine
from app.models import BackupCatalog, Deployment, ProbeResult, SecretRotation
from devenv.prefect_stack import PrefectStack
from tests.conftest import free_port

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
    from tests.support.deploy_targets import BAD, NEW, deploy_env, fake_render

    render = fake_render(deploy_versions, deploy_target)
    job_env = {"job_variables": {"env": deploy_env(render, deploy_target)}}
    try:
        good = run_through_worker("deploy-backend/deploy-backend", parameters={"commit_id": NEW}, **job_env)
        assert good.state.is_completed(), good.state
        live = render.live()
        assert live["commit"]["id"] == NEW
        bad = run_through_worker("deploy-backend/deploy-backend", parameters={"commit_id": BAD}, **job_env)
        assert bad.state.is_failed(), bad.state
        assert f"rolled back to {live['id']}" in bad.state.message
    finally:
        render.stop()
    assert render.live()["trigger"] == "rollback" and render.live()["commit"]["id"] == NEW
    rows = rows_of(settings, select(Deployment).where(Deployment.flow_run_id.in_([good.id, bad.id])))  # type: ignore[union-attr]
    assert {r.flow_run_id: r.status for r in rows} == {good.id: "live", bad.id: "rolled_back"}


def test_rotation_and_cost_report_deployments_run_through_the_worker(settings, run_through_worker):
    """Issue 5's acceptance: both operations run as deployments."""
    rotation = run_through_worker("rotate-db-credentials/rotate-db-credentials")
    assert rotation.state.is_completed(), rotation.state
    report = run_through_worker("cost-report/cost-report")
    assert report.state.is_completed(), report.state
    audit = rows_of(settings, select(SecretRotation).where(SecretRotation.flow_run_id == rotation.id))
    assert [(row.secret_name, row.status) for row in audit] == [("textbook-ops-database-credentials", "completed")]


def test_synthetic_probe_deployment_runs_through_the_worker(settings, run_through_worker, ingested_textbook, tmp_path):
    """The probe as scheduled: through the worker, against the real service running as a process."""
    import shutil

    from bench.service import run_service

    shutil.copytree(settings.resolved_index_dir, tmp_path / "index")
    with run_service({"DATABASE_URL": settings.database_url, "INDEX_DIR": str(tmp_path / "index")},
                     tmp_path / "api.log") as service:
        probe = run_through_worker("synthetic-probe/synthetic-probe", parameters={"base_url": service.base})
    assert probe.state.is_completed(), probe.state
    checks = rows_of(settings, select(ProbeResult).where(ProbeResult.flow_run_id == probe.id))
    assert {(c.check_name, c.success) for c in checks} == {("health", True), ("ready", True), ("canary", True)}
