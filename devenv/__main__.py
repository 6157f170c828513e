"""`python -m devenv up|down|status`: the embedded development environment behind `make up` / `make down`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from app.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from devenv.postgres import PostgresCluster, PostgresSetupError
from devenv.prefect_stack import PrefectStack, PrefectStackError
from devenv.processes import running, stop_process


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def cluster_for(settings: Settings) -> PostgresCluster:
    return PostgresCluster(root=settings.data_dir / "postgres", port=settings.embedded_pg_port,
                           host=settings.embedded_pg_host)


def api_pid_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "api.pid"


def start_postgres(settings: Settings) -> None:
    if not settings.uses_embedded_postgres:
        say("DATABASE_URL is set: using that database, not the embedded cluster")
        return
    cluster = cluster_for(settings)
    if not cluster.is_initialized():
        say(f"creating the Postgres cluster in {cluster.root} (port {cluster.port})")
        cluster.initialize()
    say(f"starting Postgres on {cluster.host}:{cluster.port}")
    cluster.start()
    cluster.ensure_database(dbname=settings.db_name, app_user=settings.db_user,
                            app_password=settings.db_password.get_secret_value())
    cluster.ensure_ops_role(ops_user=settings.ops_db_user, ops_password=settings.ops_db_password.get_secret_value(),
                            member_of=settings.db_user)


def prefect_stack(settings: Settings) -> PrefectStack:
    return PrefectStack(home=settings.data_dir / "prefect", host=settings.prefect_host, port=settings.prefect_port,
                        log_dir=settings.data_dir / "logs")


def start_prefect(settings: Settings) -> None:
    stack = prefect_stack(settings)
    say(f"starting the Prefect server on {stack.ui_url} (state: .data/prefect)")
    stack.start_server()
    say("registering the deployments of prefect.yaml on the work pool 'ops'")
    stack.register_deployments()
    say("starting a process worker for the work pool 'ops'")
    stack.start_worker()


def migrate(settings: Settings) -> None:
    from app.db import migrate as run_migrations

    say("applying database migrations")
    run_migrations(settings.resolved_database_url)


def ingest(settings: Settings) -> None:
    say("ingesting the textbook (incremental: unchanged chapters are not re-embedded)")
    result = subprocess.run([sys.executable, "-m", "flows.ingest_textbook"], cwd=PROJECT_ROOT,
                            env=prefect_stack(settings).env())
    if result.returncode != 0:
        raise SystemExit("the ingest flow failed; see its output above and runbooks/ingest-textbook.md")


def start_api(settings: Settings, timeout_s: float = 120) -> None:
    pid_file = api_pid_file(settings)
    base = f"http://{settings.api_host}:{settings.api_port}"
    if running(pid_file):
        say(f"the API is already running (pid {pid_file.read_text().strip()})")
    else:
        log_file = settings.data_dir / "logs" / "api.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        shown = log_file.relative_to(PROJECT_ROOT) if log_file.is_relative_to(PROJECT_ROOT) else log_file
        say(f"starting the API on {base} (log: {shown})")
        with open(log_file, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=PROJECT_ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the API did not become ready within {timeout_s:.0f} s; see .data/logs/api.log")
        time.sleep(0.5)
    question = json.dumps({"question": "What is the Zero Moment Point and why does it matter for walking?"})
    print(f"""
textbook-ops is up.
  API:      {base}
  Docs:     {base}/docs   (OpenAPI)
  Health:   {base}/health   Ready: {base}/ready   Metrics: {base}/metrics
  Prefect:  {prefect_stack(settings).ui_url}   (deployments, runs, artifacts)
Try:
  curl -s {base}/v1/chat -H 'content-type: application/json' -d '{question}'
Stop everything with `make down` (data stays in .data/).
""", flush=True)


def stop_api(settings: Settings) -> None:
    pid_file = api_pid_file(settings)
    if running(pid_file):
        say(f"stopping the API (pid {pid_file.read_text().strip()})")
    stop_process(pid_file, signals=1)


def up(args: argparse.Namespace) -> None:
    settings = get_settings()
    start_postgres(settings)
    migrate(settings)
    if not args.no_prefect:
        start_prefect(settings)
    if not args.no_ingest:
        ingest(settings)
    if not args.no_api:
        start_api(settings)


def down(args: argparse.Namespace) -> None:
    settings = get_settings()
    stop_api(settings)
    stack = prefect_stack(settings)
    say("stopping the Prefect worker and server")
    stack.stop()
    if settings.uses_embedded_postgres:
        cluster = cluster_for(settings)
        if cluster.is_running():
            say("stopping Postgres")
            cluster.stop()
    say("stopped; data stays in .data/")


def status(args: argparse.Namespace) -> None:
    settings = get_settings()
    pid_file = api_pid_file(settings)
    api = running(pid_file)
    postgres = cluster_for(settings).is_running() if settings.uses_embedded_postgres else "external"
    stack = prefect_stack(settings)
    print(f"postgres: {postgres}\napi: {'running' if api else 'stopped'}\n"
          f"prefect server: {'running' if stack.healthy() else 'stopped'} ({stack.ui_url})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv", description="the embedded development environment")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start Postgres, migrate, ingest, start the API")
    up_parser.add_argument("--no-ingest", action="store_true", help="skip the ingest flow")
    up_parser.add_argument("--no-api", action="store_true", help="do not start the API")
    up_parser.add_argument("--no-prefect", action="store_true", help="do not start the Prefect server and worker")
    up_parser.set_defaults(run=up)
    commands.add_parser("down", help="stop what `up` started (data stays)").set_defaults(run=down)
    commands.add_parser("status", help="what is running").set_defaults(run=status)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (SettingsError, PostgresSetupError, PrefectStackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
