"""deploy-backend against a local server following Render's deploy API, with the real query service as target.

The target (tests/support/render_server.py: ServiceThread) serves the ingested textbook; a "bad version" is
the same service reading a collection that holds only the introduction chapter: it is healthy and ready, but
the canary question no longer cites its chapter. The flow's own bookkeeping (deployment rows, the backup
catalog, the backup subflow's dump) uses a database of its own, so these tests never see other tests' backups.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from app.core.db import migrate, session_scope
from app.core.models import BackupCatalog, Deployment
from app.settings import PROJECT_ROOT, get_settings
from flows.deploy_backend import DeployRefused, deploy_backend, deploy_canary
from tasks.preflight import destructive_statements
from tasks.registry import RegistryError, registry_client
from tasks.render import RenderApiError, RenderClient
from tests.conftest import APP_PASSWORD, database_url
from tests.support.artifacts import latest_artifact
from tests.support.deploy_targets import BAD, BROKEN_BUILD, NEW, OLD, deploy_env, fake_registry, fake_render
from tests.support.registry_server import FakeRegistry
from tests.support.render_server import FakeRender, WebhookRecorder

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def deploy_database(pg_cluster, settings):
    dbname = "deploy_flow"
    pg_cluster.drop_database(dbname)
    pg_cluster.ensure_database(dbname=dbname, app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, dbname)
    migrate(url)
    yield url
    from tasks.databases import _engines

    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    pg_cluster.drop_database(dbname)


@pytest.fixture
def registry():
    fake = fake_registry()
    yield fake
    fake.stop()


@pytest.fixture
def render(deploy_versions, deploy_target, deploy_database, registry, settings_env, tmp_path):
    fake = fake_render(deploy_versions, deploy_target, registry)
    hook = WebhookRecorder()
    env = {**deploy_env(fake, deploy_target, registry), "DATABASE_URL": deploy_database,
           "BACKUP_DIR": str(tmp_path / "backups"), "DEPLOY_NOTIFY_WEBHOOK_URL": hook.url}
    settings_env(env)
    fake.hook = hook  # type: ignore[attr-defined]
    yield fake
    fake.stop()
    hook.stop()


def add_verified_backup(url: str, age_hours: float) -> str:
    from tasks.databases import engine_for

    backup_id = f"test-{datetime.now(UTC):%H%M%S%f}"
    finished = datetime.now(UTC) - timedelta(hours=age_hours)
    with session_scope(engine_for(get_settings())) as db:
        db.add(BackupCatalog(backup_id=backup_id, status="verified", storage="local", database_name="deploy_flow",
                             started_at=finished, finished_at=finished, verified_at=finished))
    return backup_id


def deployment_row(flow_run_id) -> Deployment:
    from tasks.databases import engine_for

    with Session(engine_for(get_settings())) as db:
        return db.exec(select(Deployment).where(Deployment.flow_run_id == flow_run_id)).one()


def posted(fake: FakeRender, path_end: str) -> list:
    return [body for method, path, body in fake.requests if method == "POST" and path.endswith(path_end)]


def test_healthy_version_goes_live_by_digest_with_a_record_release_notes_and_a_notification(render, registry,
                                                                                             deploy_database):
    backup_id = add_verified_backup(deploy_database, age_hours=1)
    state = deploy_backend(commit_id=NEW, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["status"] == "live" and result["backup_id"] == backup_id
    digest = registry.tags[NEW]
    assert posted(render, "/deploys") == [{"clearCache": "do_not_clear", "imageUrl": f"{registry.repository}@{digest}"}]
    assert render.live()["image"]["sha"] == digest and render.deploy(result["previous_deploy_id"])["status"] == "deactivated"
    assert (result["image_digest"], result["previous_image_digest"]) == (digest, registry.tags[OLD])
    assert result["gates"]["new"]["smoke"]["passed"] and result["gates"]["new"]["health"]["probes"] >= 1
    assert posted(render, "/rollback") == []
    subjects = subprocess.run(["git", "-C", str(PROJECT_ROOT), "log", "--no-merges", "--format=%s", f"{OLD}..{NEW}"],
                              capture_output=True, text=True, check=True).stdout.split("\n")
    assert subjects[0] and subjects[0] in result["release_notes"]
    row = deployment_row(state.state_details.flow_run_id)
    assert (row.status, row.commit_id, row.render_deploy_id) == ("live", NEW, result["deploy_id"])
    assert (row.image_digest, row.previous_image_digest) == (digest, registry.tags[OLD])
    assert row.image_url == f"{registry.repository}@{digest}"
    assert row.gates["new"]["passed"] and row.finished_at is not None
    artifact = latest_artifact("deploy-backend")
    assert f"Deploy of `{NEW}`" in artifact.data and ": live" in artifact.data and subjects[0] in artifact.data
    assert digest in artifact.data
    assert [m["subject"] for m in render.hook.received] == [f"deploy-backend live: {NEW}"]


def test_an_image_that_fails_to_start_keeps_the_live_version_and_fails_the_run(render, deploy_database):
    add_verified_backup(deploy_database, age_hours=1)
    before = render.live()
    state = deploy_backend(commit_id=BROKEN_BUILD, return_state=True)
    assert state.is_failed() and "ended update_failed" in state.message and "passes the gates" in state.message
    assert render.live() is before and posted(render, "/rollback") == [], "nothing went live: nothing to roll back"
    row = deployment_row(state.state_details.flow_run_id)
    assert row.status == "failed" and row.gates["still_serving"]["passed"]
    assert render.hook.received[-1]["subject"] == f"deploy-backend failed: {BROKEN_BUILD}"


def test_smoke_failure_redeploys_the_previous_digest_and_verifies_it(render, registry, deploy_database,
                                                                     deploy_target):
    add_verified_backup(deploy_database, age_hours=1)
    previous = render.live()
    state = deploy_backend(image_digest=registry.tags[BAD], return_state=True)
    assert state.is_failed()
    assert "smoke test: the canary question" in state.message and f"rolled back to {previous['id']}" in state.message
    assert posted(render, "/rollback") == [], "a rollback is a deploy of the previous image, never a rebuild"
    old_image = f"{registry.repository}@{registry.tags[OLD]}"
    assert [body["imageUrl"] for body in posted(render, "/deploys")] == [
        f"{registry.repository}@{registry.tags[BAD]}", old_image]
    live = render.live()
    assert live["image"] == {"ref": old_image, "sha": registry.tags[OLD]}
    row = deployment_row(state.state_details.flow_run_id)
    assert row.status == "rolled_back" and row.rollback_deploy_id == live["id"]
    assert (row.image_digest, row.previous_image_digest) == (registry.tags[BAD], registry.tags[OLD])
    assert not row.gates["new"]["passed"] and row.gates["rollback"]["passed"]
    import httpx

    question, chapter = deploy_canary(get_settings())
    answer = httpx.post(f"{deploy_target.base_url}/v1/chat", json={"question": question}, timeout=30).json()
    assert any(chapter in s["url"] for s in answer["sources"]), "users are served again"


def test_a_rollback_that_fails_its_gates_too_is_reported_as_such(render, registry, deploy_database, deploy_versions,
                                                                  deploy_target, settings_env):
    add_verified_backup(deploy_database, age_hours=1)
    bad_everywhere = fake_render(deploy_versions, deploy_target, registry, live=BAD)  # the previous one is broken too
    settings_env({"RENDER_API_URL": bad_everywhere.base_url})
    try:
        state = deploy_backend(commit_id=BAD, return_state=True)
    finally:
        bad_everywhere.stop()
    assert state.is_failed() and "which fails too" in state.message
    row = deployment_row(state.state_details.flow_run_id)
    assert row.status == "rollback_failed" and not row.gates["rollback"]["passed"]


def test_a_deploy_stuck_past_the_timeout_is_canceled(render, registry, deploy_database, settings_env):
    add_verified_backup(deploy_database, age_hours=1)
    render.stuck.add(f"{registry.repository}@{registry.tags[NEW]}")
    settings_env({"DEPLOY_TIMEOUT_S": "0.5"})
    state = deploy_backend(commit_id=NEW, return_state=True)
    assert state.is_failed() and "still update_in_progress after 0.5 s" in state.message and "canceled" in state.message
    stuck = render.deploy(deployment_row(state.state_details.flow_run_id).render_deploy_id)
    assert stuck["status"] == "canceled" and render.live()["image"]["sha"] == registry.tags[OLD]


def test_a_malformed_digest_is_refused_by_the_parameter_schema(render, deploy_database):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="image_digest"):
        deploy_backend(image_digest="latest")
    assert posted(render, "/deploys") == []


@pytest.mark.parametrize("request_", [
    {"image_digest": "sha256:" + "0" * 64},  # a well-formed digest the registry does not have
    {"commit_id": "0" * 40},  # a commit the release workflow never pushed
], ids=["unknown-digest", "commit-without-image"])
def test_an_image_the_registry_lacks_is_refused_before_any_deploy(render, deploy_database, request_):
    add_verified_backup(deploy_database, age_hours=1)
    with pytest.raises(DeployRefused, match="no such image"):
        deploy_backend(**request_)
    assert posted(render, "/deploys") == [], "nothing was deployed"
    assert render.live()["image"]["sha"] == render.deploys[-1]["image"]["sha"], "the seeded deploy still serves"


def test_a_digest_that_is_not_the_given_commits_image_is_refused(render, registry, deploy_database):
    with pytest.raises(DeployRefused, match=f"is not the image of commit {NEW}"):
        deploy_backend(commit_id=NEW, image_digest=registry.tags[OLD])
    assert posted(render, "/deploys") == []


def test_a_private_registry_needs_its_credentials(render, deploy_database, settings_env):
    private = FakeRegistry(private=True).start()
    try:
        digest = private.push(NEW)
        settings_env({"IMAGE_REPOSITORY": private.repository, "REGISTRY_API_URL": private.root_url})
        client = registry_client(get_settings())
        with pytest.raises(RegistryError, match="refused a pull token"):
            client.manifest_digest(NEW)
        settings_env({"REGISTRY_USERNAME": private.username, "REGISTRY_TOKEN": private.password})
        assert registry_client(get_settings()).manifest_digest(NEW) == digest
    finally:
        private.stop()


def test_destructive_migration_is_refused_before_anything_is_deployed(render, registry, deploy_database, tmp_path,
                                                                      settings_env):
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(PROJECT_ROOT), str(repo)], check=True)
    (repo / "migrations" / "versions" / "0099_drop_feedback.py").write_text(
        '"""drop feedback"""\nfrom alembic import op\n\nrevision = "0099"\ndown_revision = "0009"\n'
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    op.drop_table('feedback')\n\n\n"
        "def downgrade():\n    pass\n")
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "migrations"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "drop the feedback table"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    registry.push(commit)  # CI built it; the preflight is what refuses it
    settings_env({"DEPLOY_REPO_DIR": str(repo)})
    with pytest.raises(DeployRefused, match="0099: DROP TABLE"):
        deploy_backend(commit_id=commit)
    assert posted(render, "/deploys") == [], "nothing was deployed"
    from tasks.databases import engine_for

    with Session(engine_for(get_settings())) as db:
        row = db.exec(select(Deployment).where(Deployment.commit_id == commit)).one()
    assert row.status == "refused" and "DROP TABLE feedback" in row.reason


def test_stale_backup_runs_backup_database_first(render, deploy_database):
    from sqlalchemy import update

    from tasks.databases import engine_for

    with session_scope(engine_for(get_settings())) as db:  # the other tests' fresh rows
        db.exec(update(BackupCatalog).values(status="pruned"))  # type: ignore[call-overload]
    add_verified_backup(deploy_database, age_hours=48)
    result = deploy_backend(commit_id=NEW, max_backup_age_hours=24)
    with Session(engine_for(get_settings())) as db:
        taken = db.exec(select(BackupCatalog).where(BackupCatalog.backup_id == result["backup_id"])).one()
    assert taken.status == "completed" and result["gates"]["backup"]["taken_now"]
    assert "48.0 h old" in result["gates"]["backup"]["why"] and result["status"] == "live"


def test_render_client_sends_the_bearer_key_and_reports_a_refused_one(render):
    bad = RenderClient(render.base_url, api_key=SecretStr("rnd_wrong"))
    with pytest.raises(RenderApiError) as refused:
        bad.list_deploys(render.service_id)
    assert refused.value.status_code == 401 and not refused.value.retryable
    good = RenderClient(render.base_url, api_key=SecretStr(render.api_key))
    assert [d.status for d in good.list_deploys(render.service_id, limit=1)] == ["live"]


def test_destructive_statements_are_recognised_and_bookkeeping_is_not():
    sql = """CREATE TABLE a (id INT);
    ALTER TABLE query_log DROP COLUMN model;
    ALTER TABLE message ALTER COLUMN content TYPE VARCHAR(10);
    ALTER TABLE feedback RENAME TO opinions;
    TRUNCATE chat_session;
    CREATE INDEX ix ON a (id);
    DELETE FROM alembic_version WHERE version_num = '0004';
    UPDATE alembic_version SET version_num='0006';"""
    assert [d["kind"] for d in destructive_statements(sql)] == ["DROP COLUMN", "ALTER COLUMN TYPE", "RENAME",
                                                                 "TRUNCATE"]


def test_cli_help_describes_the_flow():
    result = subprocess.run([sys.executable, "-m", "flows.deploy_backend", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--allow-destructive" in result.stdout and "--commit" in result.stdout
