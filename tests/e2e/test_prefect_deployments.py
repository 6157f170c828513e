"""End to end through a real Prefect server and a process worker: deployments run by name."""

from __future__ import annotations

import os

import pytest
from sqlmodel import Session, select

from app.db import create_db_engine
from app.models import BackupCatalog
from devenv.prefect_stack import PrefectStack
from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def prefect_stack(settings, tmp_path):
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


def test_backup_and_drill_deployments_run_through_the_worker(settings, prefect_stack, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_stack.api_url)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_stack.api_url}):
        backup = run_deployment("backup-database/backup-database", timeout=240)
        assert backup.state.is_completed(), backup.state
        drill = run_deployment("restore-drill/restore-drill", timeout=240)
        assert drill.state.is_completed(), drill.state
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = db.exec(select(BackupCatalog).where(BackupCatalog.flow_run_id == backup.id)).all()
    engine.dispose()
    assert [r.status for r in rows] == ["verified"]
