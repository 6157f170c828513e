"""`python -m devenv up|down|status`: the embedded development environment behind `make up` / `make down`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from app.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from devenv.monitoring import development_stack
from devenv.postgres import PostgresCluster, PostgresSetupError
from devenv.prefect_stack import PrefectStack, PrefectStackError
from devenv.processes import running, start_background, stop_process, wait_for_http
from devenv.site import WEBSITE_DIR, SiteBuildError, build_is_current, build_site


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def cluster_for(settings: Settings) -> PostgresCluster:
    return PostgresCluster(root=settings.data_dir / "postgres", port=settings.embedded_pg_port,
                           host=settings.embedded_pg_host)


def api_pid_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "api.pid"


def site_pid_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "site.pid"


def api_base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host  # nosec B104: a bind-all address, call loopback
    return f"http://{host}:{settings.api_port}"


def site_url(settings: Settings) -> str:
    return f"http://{settings.site_host}:{settings.site_port}"


def start_postgres(settings: Settings) -> None:
    if not settings.uses_embedded_postgres:
        say("DATABASE_URL is set: using that database, not the embedded cluster")
        return
    cluster = cluster_for(settings)
    if not cluster.is_initialized():
        say(f"creating the Postgres cluster in {cluster.root} (port {cluster.port})")
        cluster.initialize()
        if cluster.server_dir != cluster.root:
            say(f"the 'postgres' user cannot reach {cluster.root}: the server's files are in {cluster.server_dir} "
                "(`make clean` deletes them)")
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
    # Runs push their facts to `make monitoring-up`'s Pushgateway whenever it answers (tasks/notify.py).
    stack.start_worker(extra_env={"LOCAL_PUSHGATEWAY_URL": development_stack().url("pushgateway")})


def migrate(settings: Settings) -> None:
    from app.core.db import migrate as run_migrations

    say("applying database migrations")
    run_migrations(settings.resolved_database_url)


def ingest(settings: Settings) -> None:
    say("ingesting the textbook (incremental: unchanged chapters are not re-embedded)")
    result = subprocess.run([sys.executable, "-m", "flows.ingest_textbook"], cwd=PROJECT_ROOT,
                            env=prefect_stack(settings).env())
    if result.returncode != 0:
        raise SystemExit("the ingest flow failed; see its output above and runbooks/ingest-textbook.md")


def service_secrets_env(prefect_api_url: str) -> dict[str, str]:
    """With the Prefect server up, the service reads rotated secrets from its blocks (SECRETS_SOURCE=store), so
    a rotate-db-credentials run reaches it: new connections log in as the role the rotation made current.
    Until the first rotation the store has no credentials and the service uses DATABASE_URL's user."""
    return {"SECRETS_SOURCE": "store", "SECRET_BACKEND": "prefect", "PREFECT_API_URL": prefect_api_url}


def start_api(settings: Settings, timeout_s: float = 120, *, secrets_from_store: bool | None = None) -> None:
    """`secrets_from_store` defaults to whether the stack's Prefect server answers: the same API process reads
    rotated secrets whenever the store is there, however it was (re)started (`make up`, a runbook, a game day)."""
    pid_file = api_pid_file(settings)
    if secrets_from_store is None:
        secrets_from_store = prefect_stack(settings).healthy()
    base = f"http://{settings.api_host}:{settings.api_port}"
    if running(pid_file):
        say(f"the API is already running (pid {pid_file.read_text().strip()})")
    else:
        log_file = settings.data_dir / "logs" / "api.log"
        shown = log_file.relative_to(PROJECT_ROOT) if log_file.is_relative_to(PROJECT_ROOT) else log_file
        say(f"starting the API on {base} (log: {shown})")
        start_background([sys.executable, "-m", "app", "serve"], pid_file=pid_file, log_file=log_file, cwd=PROJECT_ROOT,
                         env=service_secrets_env(prefect_stack(settings).api_url) if secrets_from_store else None)
    if not wait_for_http(f"{base}/ready", timeout_s=timeout_s):
        raise SystemExit(f"the API did not become ready within {timeout_s:.0f} s; see .data/logs/api.log")


def summary(settings: Settings, *, site: bool) -> None:
    base = api_base_url(settings)
    question = json.dumps({"question": "What is the Zero Moment Point and why does it matter for walking?"})
    site_line = f"  Site:     {site_url(settings)}   (the textbook, English and Urdu, with the chat assistant)\n" if site else ""
    print(f"""
textbook-ops is up.
{site_line}  API:      {base}
  Docs:     {base}/docs   (OpenAPI)
  Health:   {base}/health   Ready: {base}/ready   Metrics: {base}/metrics
  Prefect:  {prefect_stack(settings).ui_url}   (deployments, runs, artifacts)
Try:
  curl -s {base}/v1/chat -H 'content-type: application/json' -d '{question}'
Stop everything with `make down` (data stays in .data/).
""", flush=True)


def start_site(settings: Settings, timeout_s: float = 30) -> None:
    """Build website/ when its sources (or the API URL) changed, then serve website/build in the background."""
    out_dir = WEBSITE_DIR / "build"
    api_url = api_base_url(settings)
    if build_is_current(WEBSITE_DIR, out_dir, api_url):
        say("the docs site build is current (website/build)")
    else:
        say(f"building the docs site, English and Urdu, for the API at {api_url} (about a minute)")
        build_site(api_url=api_url, out_dir=out_dir, site_url=site_url(settings))
    pid_file = site_pid_file(settings)
    if running(pid_file):
        say(f"the docs site is already being served (pid {pid_file.read_text().strip()})")
    else:
        say(f"serving the docs site on {site_url(settings)} (log: .data/logs/site.log)")
        start_background(
            [sys.executable, "-m", "devenv.site", "serve", "--directory", str(out_dir), "--host", settings.site_host,
             "--port", str(settings.site_port)],
            pid_file=pid_file, log_file=settings.data_dir / "logs" / "site.log", cwd=PROJECT_ROOT,
        )
    if not wait_for_http(site_url(settings), timeout_s=timeout_s, interval_s=0.2):
        raise SystemExit(f"the docs site did not answer within {timeout_s:.0f} s; see .data/logs/site.log")


def stop_site(settings: Settings) -> None:
    pid_file = site_pid_file(settings)
    if running(pid_file):
        say(f"stopping the docs site server (pid {pid_file.read_text().strip()})")
    stop_process(pid_file, signals=1)


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
    if not args.no_site:
        start_site(settings)
    if not args.no_api:
        summary(settings, site=not args.no_site)


def down(args: argparse.Namespace) -> None:
    settings = get_settings()
    stop_site(settings)
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


def clean(args: argparse.Namespace) -> None:
    """Delete the embedded cluster, including its server folder outside the checkout (the Makefile then
    deletes the rest of .data/)."""
    cluster = cluster_for(get_settings())
    if cluster.root.exists():
        say(f"deleting the Postgres cluster {cluster.root}"
            + (f" and its server folder {cluster.server_dir}" if cluster.server_dir != cluster.root else ""))
        cluster.remove()


def status(args: argparse.Namespace) -> None:
    settings = get_settings()
    pid_file = api_pid_file(settings)
    api = running(pid_file)
    postgres = cluster_for(settings).is_running() if settings.uses_embedded_postgres else "external"
    stack = prefect_stack(settings)
    site = "running" if running(site_pid_file(settings)) else "stopped"
    print(f"postgres: {postgres}\napi: {'running' if api else 'stopped'}\nsite: {site} ({site_url(settings)})\n"
          f"prefect server: {'running' if stack.healthy() else 'stopped'} ({stack.ui_url})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv", description="the embedded development environment")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start Postgres, migrate, ingest, start the API")
    up_parser.add_argument("--no-ingest", action="store_true", help="skip the ingest flow")
    up_parser.add_argument("--no-api", action="store_true", help="do not start the API")
    up_parser.add_argument("--no-site", action="store_true", help="do not build and serve the docs site")
    up_parser.add_argument("--no-prefect", action="store_true", help="do not start the Prefect server and worker")
    up_parser.set_defaults(run=up)
    commands.add_parser("down", help="stop what `up` started (data stays)").set_defaults(run=down)
    commands.add_parser("status", help="what is running").set_defaults(run=status)
    commands.add_parser("clean", help="delete the embedded cluster (also its files outside the checkout)"
                        ).set_defaults(run=clean)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (SettingsError, PostgresSetupError, PrefectStackError, SiteBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
