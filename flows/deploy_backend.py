"""deploy-backend: ship a version of the query service to Render without leaving users on a broken one.

When it runs: on demand (Prefect UI, `prefect deployment run 'deploy-backend/deploy-backend'`, the GitHub
workflow deploy.yml, or `python -m flows.deploy_backend`).
What it does, in order:
1. preflight: the deployed commit's pending migrations (offline `alembic upgrade --sql`) hold no destructive
   statement unless allow_destructive; a verified backup younger than max_backup_age_hours exists, else (and
   always before an allowed destructive migration) backup-database runs first, as a subflow;
2. reads the live deploy (the rollback target), triggers a Render deploy of the commit or image, and polls it
   until `live` or a failure status (a deploy still running at DEPLOY_TIMEOUT_S is canceled);
3. health gate (/health and /ready green for DEPLOY_HEALTH_WINDOW_S), then a smoke test (the canary question
   cites its chapter; p95 of a short burst under DEPLOY_SMOKE_P95_MS);
4. when a gate fails: rollback to the previous live deploy, verified by the same gates; the run ends Failed
   with the reason. A deploy that fails on Render's side never went live: the previous one still serves.
Always: a `deployment` row, the artifact `deploy-backend` (release notes = the commits since the live deploy,
and every gate's result) and a notification to DEPLOY_NOTIFY_WEBHOOK_URL.

Runbook: runbooks/deploy-and-rollback.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from app.settings import Settings, get_settings
from flows.backup_database import backup_database
from flows.check_backup_freshness import backup_age_hours
from flows.cli import ON_THE_SERVER, run_cli
from flows.parameters import CommitSha, ImageRef, PositiveHours, RenderServiceId
from tasks.catalog import find_newest_verified_backup
from tasks.deploy_records import deployment_begin, deployment_finish
from tasks.notify import send_notification
from tasks.preflight import inspect_pending_migrations, release_notes
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
from tasks.service_gates import health_gate, smoke_test


class DeployFailed(RuntimeError):
    """The deploy did not go live healthy; the reason says what serves now."""


class DeployRefused(DeployFailed):
    """Preflight refused: nothing was deployed."""


@dataclass
class Outcome:
    service_id: str
    version: str
    status: str = "started"
    reason: str | None = None
    backup_id: str | None = None
    render_deploy_id: str | None = None
    previous_deploy_id: str | None = None
    rollback_deploy_id: str | None = None
    release_notes: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)


def verify_service(settings: Settings) -> dict[str, Any]:
    """Health gate, then (only if it passed) the smoke test. Never raises: a crash is a failed gate."""
    base_url = str(settings.service_base_url)
    try:
        health = health_gate(base_url, window_s=settings.deploy_health_window_s,
                             interval_s=settings.deploy_health_interval_s)
        if not health["passed"]:
            return {"passed": False, "reason": f"health gate: {health['reason']}", "health": health}
        smoke = smoke_test(base_url, question=settings.deploy_canary_question, chapter=settings.deploy_canary_chapter,
                           requests=settings.deploy_smoke_requests, p95_slo_ms=settings.deploy_smoke_p95_ms,
                           api_key=settings.deploy_smoke_api_key)
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
def deploy_backend(commit_id: CommitSha | None = None, image_url: ImageRef | None = None,
                   service_id: RenderServiceId | None = None, allow_destructive: bool = False,
                   max_backup_age_hours: PositiveHours | None = None) -> dict:
    """Deploy a commit (or an image) of the query service to Render, gated, with automatic rollback."""
    logger = get_run_logger()
    settings = get_settings()
    service_id = service_id or settings.render_service_id
    if not service_id:
        raise ValueError("no service: pass service_id or set RENDER_SERVICE_ID")
    if commit_id and image_url:
        raise ValueError("deploy a commit or an image, not both")
    if not settings.service_base_url:
        raise ValueError("SERVICE_BASE_URL is not set: the gates need the service's URL")
    client = render_client(settings)
    out = Outcome(service_id=service_id, version=commit_id or image_url or "branch head")
    record_id = deployment_begin(settings, service_id=service_id, commit_id=commit_id, image_url=image_url,
                                 flow_run_id=str(flow_run.id) if flow_run.id else None)
    try:
        preflight(settings, out, commit_id=commit_id, allow_destructive=allow_destructive,
                  max_backup_age_hours=max_backup_age_hours or settings.deploy_max_backup_age_hours)
        previous = find_live_deploy(client, service_id)
        out.previous_deploy_id = previous.id if previous else None
        deploy = trigger_deploy(client, service_id, commit_id, image_url)
        out.render_deploy_id = deploy.id
        out.version = commit_id or image_url or deploy.version
        out.release_notes = release_notes(settings.resolved_deploy_repo_dir, previous.commit_id if previous else None,
                                          commit_id or deploy.commit_id)
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
        logger.info("deploy %s of %s is live and passed the gates", deploy.id, out.version)
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
            "backup_id": out.backup_id, "gates": out.gates, "release_notes": out.release_notes}


def finish(settings: Settings, record_id: int, out: Outcome) -> None:
    logger = get_run_logger()
    deployment_finish(settings, record_id, status=out.status, reason=out.reason, backup_id=out.backup_id,
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
    lines += ["| Render deploy | id |", "|---|---|", f"| previous live | {out.previous_deploy_id or '-'} |",
              f"| new | {out.render_deploy_id or '-'} |", f"| rollback | {out.rollback_deploy_id or '-'} |",
              f"| backup before deploy | {out.backup_id or '-'} |", "",
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
    parser = argparse.ArgumentParser(prog="python -m flows.deploy_backend", description=__doc__.split("\n")[0],
                                     epilog=ON_THE_SERVER)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--commit", help="git SHA to deploy (default: the head of the service's branch)")
    what.add_argument("--image", help="image URL to deploy (image-backed services)")
    parser.add_argument("--service-id", help="default: RENDER_SERVICE_ID")
    parser.add_argument("--allow-destructive", action="store_true", help="allow DROP/TRUNCATE/retype migrations")
    parser.add_argument("--max-backup-age-hours", type=float, help="default: DEPLOY_MAX_BACKUP_AGE_HOURS")
    args = parser.parse_args(argv)
    try:
        result = deploy_backend(commit_id=args.commit, image_url=args.image, service_id=args.service_id,
                                allow_destructive=args.allow_destructive, max_backup_age_hours=args.max_backup_age_hours)
    except DeployFailed as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"deploy {result['deploy_id']} is live (previous {result['previous_deploy_id']}, backup {result['backup_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
