"""deploy-backend: ship a version of the query service to Render without leaving users on a broken one.

When it runs: on demand (Prefect UI, `prefect deployment run 'deploy-backend/deploy-backend'`, the GitHub
workflow deploy.yml, or `python -m flows.deploy_backend`).
What it does, in order:
1. the image: an image digest, or a commit resolved to the digest of the image the release workflow pushed
   for it (.github/workflows/release.yml), read from the registry (IMAGE_REPOSITORY, GHCR): an unknown digest
   or a commit without an image is refused before anything else;
2. preflight: the deployed commit's pending migrations (offline `alembic upgrade --sql`) hold no destructive
   statement unless allow_destructive; a verified backup younger than max_backup_age_hours exists, else (and
   always before an allowed destructive migration) backup-database runs first, as a subflow;
3. reads the live deploy (the rollback target), triggers a Render deploy of `IMAGE_REPOSITORY@digest` (the
   image CI built and tested, never a rebuild), and polls it until `live` or a failure status (a deploy still
   running at DEPLOY_TIMEOUT_S is canceled);
4. health gate (/health and /ready green for DEPLOY_HEALTH_WINDOW_S), then a smoke test (the canary question
   cites its chapter; p95 of a short burst under DEPLOY_SMOKE_P95_MS);
5. when a gate fails: rollback to the previous live deploy's digest (a deploy of that same image), verified
   by the same gates; the run ends Failed with the reason. A deploy that fails on Render's side never went
   live: the previous one still serves.
Always: a `deployment` row, the artifact `deploy-backend` (release notes = the commits since the live deploy,
and every gate's result) and a notification to DEPLOY_NOTIFY_WEBHOOK_URL.

Runbook: runbooks/deploy-and-rollback.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from app.settings import Settings, SettingsError, get_settings
from flows.backup_database import backup_database
from flows.check_backup_freshness import backup_age_hours
from flows.cli import InvalidParameter, flow_parser, run_cli
from flows.parameters import CommitSha, ImageDigest, PositiveHours, RenderServiceId
from tasks.catalog import find_newest_verified_backup
from tasks.deploy_records import deployment_begin, deployment_finish
from tasks.notify import send_notification
from tasks.preflight import inspect_pending_migrations, release_notes
from tasks.probe import CANARY_EXPECTED_SOURCE, CANARY_QUESTION
from tasks.registry import ImageNotFound, ImageRef, digest_of, registry_client, resolve_image
from tasks.render import (
    LIVE,
    DeployTimeout,
    RenderClient,
    RenderDeploy,
    cancel_deploy,
    find_live_deploy,
    render_client,
    rollback_to,
    trigger_deploy,
    wait_for_deploy,
)
from tasks.run_records import current_flow_run_id
from tasks.service_gates import health_gate, smoke_test


class DeployFailed(RuntimeError):
    """The deploy did not go live healthy; the reason says what serves now."""


class DeployRefused(DeployFailed):
    """Preflight refused: nothing was deployed."""


class InvalidDeployRequest(InvalidParameter):
    """The parameters name no deployable image (or contradict each other); nothing was started."""


@dataclass
class Outcome:
    service_id: str
    version: str
    image_digest: str | None = None
    previous_image_digest: str | None = None
    status: str = "started"
    reason: str | None = None
    backup_id: str | None = None
    render_deploy_id: str | None = None
    previous_deploy_id: str | None = None
    rollback_deploy_id: str | None = None
    release_notes: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)


def deploy_canary(settings: Settings) -> tuple[str, str]:
    """The smoke test's (question, page): DEPLOY_CANARY_QUESTION / DEPLOY_CANARY_CHAPTER, else the probe's canary."""
    return (settings.deploy_canary_question or CANARY_QUESTION,
            settings.deploy_canary_chapter or CANARY_EXPECTED_SOURCE)


def verify_service(settings: Settings) -> dict[str, Any]:
    """Health gate, then (only if it passed) the smoke test. Never raises: a crash is a failed gate."""
    base_url = str(settings.service_base_url)
    try:
        health = health_gate(base_url, window_s=settings.deploy_health_window_s,
                             interval_s=settings.deploy_health_interval_s)
        if not health["passed"]:
            return {"passed": False, "reason": f"health gate: {health['reason']}", "health": health}
        question, chapter = deploy_canary(settings)
        smoke = smoke_test(base_url, question=question, chapter=chapter, requests=settings.deploy_smoke_requests,
                           p95_slo_ms=settings.deploy_smoke_p95_ms, api_key=settings.deploy_smoke_api_key)
    except Exception as exc:  # noqa: BLE001 - a gate that cannot run did not pass
        return {"passed": False, "reason": f"the gates could not run: {exc.__class__.__name__}: {exc}"}
    return {"passed": smoke["passed"], "reason": None if smoke["passed"] else f"smoke test: {smoke['reason']}",
            "health": health, "smoke": smoke}


def preflight(settings: Settings, out: Outcome, *, commit_id: str | None, allow_destructive: bool,
              max_backup_age_hours: float) -> None:
    logger = get_run_logger()
    migrations = inspect_pending_migrations(settings.resolved_database_url, settings.resolved_deploy_repo_dir,
                                            commit_id)
    out.gates["migrations"] = migrations
    if migrations["destructive"] and not allow_destructive:
        found = "; ".join(f"{d['revision']}: {d['kind']} ({d['statement'][:80]})" for d in migrations["destructive"])
        raise DeployRefused(f"destructive migration refused: {found}. Plan it (expand/contract, backup, restore test) "
                            "and rerun with allow_destructive=true")
    backup = find_newest_verified_backup(settings)
    age = backup_age_hours(backup) if backup else None
    if backup and age is not None and age <= max_backup_age_hours and not migrations["destructive"]:
        out.backup_id = backup["backup_id"]
        out.gates["backup"] = {"passed": True, "backup_id": backup["backup_id"], "age_hours": round(age, 2),
                               "taken_now": False}
        return
    why = ("a destructive migration is allowed" if migrations["destructive"] else
           f"the newest verified backup is {age:.1f} h old" if age is not None else "there is no verified backup")
    logger.warning("%s (limit %g h): running backup-database first", why, max_backup_age_hours)
    taken = backup_database()
    out.backup_id = taken["backup_id"]
    out.gates["backup"] = {"passed": True, "backup_id": taken["backup_id"], "taken_now": True, "why": why}


def wait_live(client: RenderClient, settings: Settings, service_id: str, deploy_id: str) -> RenderDeploy:
    try:
        return wait_for_deploy(client, service_id, deploy_id, timeout_s=settings.deploy_timeout_s,
                               poll_s=settings.deploy_poll_interval_s)
    except DeployTimeout as exc:
        try:
            cancel_deploy(client, service_id, deploy_id)
        except Exception as cancel_exc:  # noqa: BLE001 - report both
            raise DeployFailed(f"{exc}; canceling it failed too: {cancel_exc}") from exc
        raise DeployFailed(f"{exc}; it was canceled") from exc


def roll_back(client: RenderClient, settings: Settings, out: Outcome, previous: RenderDeploy | None,
              reason: str) -> None:
    """Back to the previous live deploy and verify it like a new one. Always raises DeployFailed."""
    if previous is None:
        out.status = "failed"
        raise DeployFailed(f"{reason}; there is no previous live deploy to roll back to: the new version stays live")
    if digest_of(previous.image_ref):  # the same image again, by digest: nothing is rebuilt
        rollback = trigger_deploy(client, out.service_id, None, previous.image_ref)
    else:  # a deploy from before images: Render's rollback reuses its build
        rollback = rollback_to(client, out.service_id, previous.id)
    out.rollback_deploy_id = rollback.id
    try:
        final = wait_live(client, settings, out.service_id, rollback.id)
    except DeployFailed as exc:
        out.status = "rollback_failed"
        raise DeployFailed(f"{reason}; the rollback to {previous.id} failed: {exc}") from exc
    if final.status != LIVE:
        out.status = "rollback_failed"
        raise DeployFailed(f"{reason}; the rollback to {previous.id} ended {final.status}")
    check = verify_service(settings)
    out.gates["rollback"] = check
    if not check["passed"]:
        out.status = "rollback_failed"
        raise DeployFailed(f"{reason}; rolled back to {previous.id} ({previous.version}), which fails too: "
                           f"{check['reason']}")
    out.status = "rolled_back"
    raise DeployFailed(f"{reason}; rolled back to {previous.id} ({previous.version}), which passed the gates")


@flow(name="deploy-backend", log_prints=True)
def deploy_backend(commit_id: CommitSha | None = None, image_digest: ImageDigest | None = None,
                   service_id: RenderServiceId | None = None, allow_destructive: bool = False,
                   max_backup_age_hours: PositiveHours | None = None) -> dict:
    """Deploy an image of the query service to Render, by digest (or the image of a commit), gated, with
    automatic rollback to the previous digest."""
    logger = get_run_logger()
    settings = get_settings()
    service_id = check_deploy_request(settings, commit_id=commit_id, image_digest=image_digest, service_id=service_id)
    client = render_client(settings)
    out = Outcome(service_id=service_id, version=commit_id or image_digest or "?", image_digest=image_digest)
    record_id = deployment_begin(settings, service_id=service_id, commit_id=commit_id, image_url=None,
                                 flow_run_id=current_flow_run_id())
    try:
        image = choose_image(settings, out, commit_id=commit_id, image_digest=image_digest)
        preflight(settings, out, commit_id=image.commit_id, allow_destructive=allow_destructive,
                  max_backup_age_hours=max_backup_age_hours or settings.deploy_max_backup_age_hours)
        previous = find_live_deploy(client, service_id)
        out.previous_deploy_id = previous.id if previous else None
        out.previous_image_digest = digest_of(previous.image_ref) if previous else None
        deploy = trigger_deploy(client, service_id, None, image.url)
        out.render_deploy_id = deploy.id
        out.release_notes = release_notes(settings.resolved_deploy_repo_dir, commit_of(settings, previous),
                                          image.commit_id)
        final = wait_live(client, settings, service_id, deploy.id)
        if final.status != LIVE:
            serving = verify_service(settings)
            out.gates["still_serving"] = serving
            state = "passes the gates" if serving["passed"] else f"FAILS the gates too: {serving['reason']}"
            raise DeployFailed(f"Render deploy {deploy.id} ended {final.status}; nothing was switched: "
                               f"{previous.id if previous else 'the previous version'} still serves and {state}")
        check = verify_service(settings)
        out.gates["new"] = check
        if not check["passed"]:
            roll_back(client, settings, out, previous, str(check["reason"]))
        out.status = "live"
        logger.info("deploy %s of %s is live and passed the gates", deploy.id, image.url)
    except DeployRefused as exc:
        out.status, out.reason = "refused", str(exc)
        raise
    except DeployFailed as exc:
        out.status = "failed" if out.status == "started" else out.status
        out.reason = str(exc)
        raise
    except BaseException as exc:
        out.status, out.reason = "failed", f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        finish(settings, record_id, out)
    return {"status": out.status, "deploy_id": out.render_deploy_id, "previous_deploy_id": out.previous_deploy_id,
            "image_digest": out.image_digest, "previous_image_digest": out.previous_image_digest,
            "backup_id": out.backup_id, "gates": out.gates, "release_notes": out.release_notes}


def check_deploy_request(settings: Settings, *, commit_id: str | None, image_digest: str | None,
                         service_id: str | None) -> str:
    """The service to deploy to, once the request and the settings it needs are complete (before any work)."""
    missing = [name for name, value in (("RENDER_SERVICE_ID", service_id or settings.render_service_id),
                                        ("RENDER_API_KEY", settings.render_api_key),
                                        ("SERVICE_BASE_URL", settings.service_base_url)) if not value]
    if missing:
        raise SettingsError(f"deploy-backend needs {', '.join(missing)} (the service, Render's API key, the URL the "
                            "gates call)")
    if not commit_id and not image_digest:
        raise InvalidDeployRequest("give image_digest (sha256:...) or commit_id (its image's tag) to deploy")
    return str(service_id or settings.render_service_id)


def commit_of(settings: Settings, deploy: RenderDeploy | None) -> str | None:
    """The commit a live deploy runs: Render's commit, else its image's revision in the registry (None if gone)."""
    if deploy is None or deploy.commit_id:
        return deploy.commit_id if deploy else None
    digest = digest_of(deploy.image_ref)
    if not digest:
        return None
    try:
        return resolve_image(registry_client(settings), digest=digest, commit_id=None).commit_id
    except ImageNotFound:
        return None


def choose_image(settings: Settings, out: Outcome, *, commit_id: str | None, image_digest: str | None) -> ImageRef:
    """The image to deploy, as it is in the registry; refused (nothing deployed) when it is not there."""
    try:
        image = resolve_image(registry_client(settings), digest=image_digest, commit_id=None if image_digest else commit_id)
        if image_digest and commit_id:
            built = resolve_image(registry_client(settings), digest=None, commit_id=commit_id)
            if built.digest != image.digest:
                raise ImageNotFound(f"{image_digest} is not the image of commit {commit_id} ({built.digest})")
    except ImageNotFound as exc:
        raise DeployRefused(f"no such image: {exc}; images come from the release workflow "
                            "(.github/workflows/release.yml), pushed after CI passes on main") from exc
    out.image_digest = image.digest
    out.version = image.commit_id or image.digest
    return image


def finish(settings: Settings, record_id: int, out: Outcome) -> None:
    logger = get_run_logger()
    deployment_finish(settings, record_id, status=out.status, reason=out.reason, backup_id=out.backup_id,
                      image_digest=out.image_digest, previous_image_digest=out.previous_image_digest,
                      image_url=f"{settings.image_repository}@{out.image_digest}" if out.image_digest else None,
                      render_deploy_id=out.render_deploy_id, previous_deploy_id=out.previous_deploy_id,
                      rollback_deploy_id=out.rollback_deploy_id, gates=json.loads(json.dumps(out.gates, default=str)),
                      release_notes=out.release_notes)
    create_markdown_artifact(key="deploy-backend", markdown=report_markdown(out),
                             description=f"deploy of {out.version} to {out.service_id}: {out.status}")
    if settings.deploy_notify_webhook_url:
        try:
            send_notification(settings.deploy_notify_webhook_url, f"deploy-backend {out.status}: {out.version}",
                              report_markdown(out))
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the missing notification is logged
            logger.error("the deploy notification could not be sent: %s", exc)


def _gate_row(name: str, result: dict[str, Any] | None) -> str:
    if not result:
        return f"| {name} | - | not run |"
    detail = result.get("reason") or ", ".join(
        f"{k}={v}" for k, v in result.items() if k not in ("passed", "health", "smoke", "pending", "destructive"))
    passed = result.get("passed", not result.get("destructive"))
    return f"| {name} | {'yes' if passed else '**no**'} | {str(detail).replace('|', '/')[:300]} |"


def report_markdown(out: Outcome) -> str:
    migrations = out.gates.get("migrations") or {}
    lines = [f"# Deploy of `{out.version}` to `{out.service_id}`: {out.status}", ""]
    if out.reason:
        lines += [f"**Reason:** {out.reason}", ""]
    lines += ["| Render deploy | id | image digest |", "|---|---|---|",
              f"| previous live | {out.previous_deploy_id or '-'} | {out.previous_image_digest or '-'} |",
              f"| new | {out.render_deploy_id or '-'} | {out.image_digest or '-'} |",
              f"| rollback | {out.rollback_deploy_id or '-'} | "
              f"{(out.previous_image_digest or '-') if out.rollback_deploy_id else '-'} |",
              f"| backup before deploy | {out.backup_id or '-'} | |", "",
              "## Gates", "", "| gate | passed | detail |", "|---|---|---|",
              f"| migrations | {'**no**' if migrations.get('destructive') else 'yes'} | pending "
              f"{', '.join(migrations.get('pending', [])) or 'none'}; destructive "
              f"{len(migrations.get('destructive', []))} |",
              _gate_row("backup", out.gates.get("backup"))]
    for key, label in (("new", "new version"), ("still_serving", "still serving"), ("rollback", "after rollback")):
        if key in out.gates:
            check = out.gates[key]
            lines += [_gate_row(f"{label}: health", check.get("health") or check),
                      _gate_row(f"{label}: smoke", check.get("smoke"))]
    lines += ["", "## Release notes (commits since the live deploy)", "", out.release_notes or "-", "",
              "Runbook: runbooks/deploy-and-rollback.md"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.deploy_backend", __doc__)
    parser.add_argument("--commit", help="git SHA whose image (tagged with it by the release workflow) to deploy")
    parser.add_argument("--digest", help="image digest (sha256:...) to deploy; with --commit it must be that "
                        "commit's image")
    parser.add_argument("--service-id", help="default: RENDER_SERVICE_ID")
    parser.add_argument("--allow-destructive", action="store_true", help="allow DROP/TRUNCATE/retype migrations")
    parser.add_argument("--max-backup-age-hours", type=float, help="default: DEPLOY_MAX_BACKUP_AGE_HOURS")
    args = parser.parse_args(argv)
    try:
        check_deploy_request(get_settings(), commit_id=args.commit, image_digest=args.digest,
                             service_id=args.service_id)
        result = deploy_backend(commit_id=args.commit, image_digest=args.digest, service_id=args.service_id,
                                allow_destructive=args.allow_destructive, max_backup_age_hours=args.max_backup_age_hours)
    except DeployFailed as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"deploy {result['deploy_id']} of {result['image_digest']} is live (previous {result['previous_deploy_id']} "
          f"{result['previous_image_digest'] or ''}, backup {result['backup_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
