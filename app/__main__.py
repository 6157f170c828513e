"""`python -m app serve|migrate|keys|sql`: the service's own commands (the production start command too)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from app.settings import SettingsError, get_settings


def worker_model_threads(workers: int) -> int:
    """Each worker's share of the cores this process may run on: N workers' model threads do not oversubscribe
    them (the model runs outside the GIL, so one worker's encode and another's Python share the cores)."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    workers = args.workers or settings.api_workers
    if workers > 1 and "embedding_threads" not in settings.model_fields_set:
        os.environ["EMBEDDING_THREADS"] = str(worker_model_threads(workers))
    if workers > 1 or settings.metrics_multiproc_dir:
        folder = settings.metrics_multiproc_dir or settings.data_dir / "metrics"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        # prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself, in every worker, before its metrics exist;
        # METRICS_MULTIPROC_DIR tells each worker's settings to aggregate at scrape time.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        os.environ["METRICS_MULTIPROC_DIR"] = str(folder)
    # SIGTERM: uvicorn stops accepting, lets in-flight requests finish (up to the request timeout), then re-raises
    # the signal; this handler takes that re-raise, so a graceful stop exits 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    from app.http.server_protocol import HeaderDeadlineProtocol

    options: dict[str, Any] = dict(
        factory=True, http=HeaderDeadlineProtocol, host=args.host or settings.api_host,
        port=args.port or settings.api_port, workers=workers, log_level=settings.log_level.lower(),
        proxy_headers=False,  # X-Forwarded-* are read by app.http.hygiene, from TRUSTED_PROXIES only
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 2,
    )
    if workers == 1:
        uvicorn.run("app.main:create_app", **options)
        return 0
    from uvicorn.supervisors import Multiprocess

    from app.worker_sockets import WorkerSocket

    # uvicorn.run's supervisor, with a listening socket per worker instead of one shared by all (worker_sockets.py).
    config = uvicorn.Config("app.main:create_app", **options)
    logging.getLogger("uvicorn.error").info("listening on http://%s:%d: %d workers, each on a socket of its own",
                                            config.host, config.port, workers)
    try:
        sockets = [WorkerSocket(config.host, config.port)]
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    try:
        Multiprocess(config, sockets=sockets).run()  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    return 0


def migrate(args: argparse.Namespace) -> int:
    from app.core.db import migrate as run_migrations

    run_migrations(get_settings().resolved_database_url, args.revision)
    print(f"database migrated to {args.revision}")
    return 0


def keys(args: argparse.Namespace) -> int:
    from app.core.api_keys import issue_key, list_keys, revoke_key
    from app.core.db import create_db_engine

    engine = create_db_engine(get_settings())
    try:
        if args.keys_command == "create":
            issued = issue_key(engine=engine, name=args.name, scopes=args.scopes.split(","),
                               expires_in_days=args.expires_days)
            print(f"key {issued.id} ({issued.name}, scopes {','.join(issued.scopes)}): {issued.key}")
            print("Store it now: it is shown once and kept only as a hash.")
        elif args.keys_command == "list":
            for key in list_keys(engine=engine):
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.id}\t{key.name}\t{key.key_prefix}…\t{','.join(key.scopes)}\t{state}\t"
                      f"expires {key.expires_at.isoformat() if key.expires_at else 'never'}")
        else:
            if not revoke_key(engine=engine, key_id=args.id):
                print(f"error: no active key {args.id}", file=sys.stderr)
                return 1
            print(f"revoked key {args.id}")
        return 0
    finally:
        engine.dispose()


def sql(args: argparse.Namespace) -> int:
    """One statement as the service's database user, its rows tab-separated; with --until-rows, repeated every
    second until it returns a row (a blocker that comes and goes), and exit 1 if it never does."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from app.core.db import create_db_engine

    engine = create_db_engine(get_settings().model_copy(update={"db_pool_size": 1}))
    deadline = time.monotonic() + (args.until_rows or 0)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while True:
                result = conn.execute(text(args.statement))
                rows = result.all() if result.returns_rows else []
                if rows or not args.until_rows or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if result.returns_rows:
                print("\t".join(result.keys()))
            for row in rows:
                print("\t".join("" if value is None else str(value) for value in row))
    except DBAPIError as exc:
        print(f"error: {exc.orig or exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.until_rows and not rows:
        print(f"error: no row within {args.until_rows:.0f} s", file=sys.stderr)
        return 1
    return 0


def export_embedding_model(args: argparse.Namespace) -> int:
    from app.rag.model_export import ExportError, export_model

    target = args.output or get_settings().resolved_embedding_model_dir
    if args.if_missing and (target / "embedding.json").is_file():
        print(f"embedding model already exported: {target}")
        return 0
    try:
        export_model(target)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"embedding model exported to {target}")
    return 0


def positive_days(value: str) -> int:
    """--expires-days: 0 or a negative number would read as "never" or as already expired; both are refused."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"{days} days: a key expires after 1 day or more (omit it for never)")
    return days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="textbook-ops query service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve_parser.add_argument("--host", help="default: API_HOST")
    serve_parser.add_argument("--port", type=int, help="default: API_PORT")
    serve_parser.add_argument("--workers", type=int, help="default: API_WORKERS")
    serve_parser.set_defaults(run=serve)
    migrate_parser = commands.add_parser("migrate", help="apply Alembic migrations")
    migrate_parser.add_argument("--revision", default="head")
    migrate_parser.set_defaults(run=migrate)
    keys_parser = commands.add_parser("keys", help="create, list and revoke API keys (X-API-Key)")
    key_commands = keys_parser.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="issue a key (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="chat", help="comma-separated: chat, admin")
    create.add_argument("--expires-days", type=positive_days, help="a whole number of days, 1 or more; default: never")
    key_commands.add_parser("list", help="every key, without secrets")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    keys_parser.set_defaults(run=keys)
    sql_parser = commands.add_parser("sql", help="run one SQL statement as the service's database user, print its rows")
    sql_parser.add_argument("statement")
    sql_parser.add_argument("--until-rows", type=float, metavar="SECONDS",
                            help="repeat it every second until it returns a row; exit 1 if none within SECONDS")
    sql_parser.set_defaults(run=sql)
    export_parser = commands.add_parser(
        "export-embedding-model", help="write the ONNX embedding model (install/build time; needs the export extra)")
    export_parser.add_argument("--output", type=Path, help="default: EMBEDDING_MODEL_DIR (<venv>/share/textbook-ops/...)")
    export_parser.add_argument("--if-missing", action="store_true", help="do nothing if the folder is already there")
    export_parser.set_defaults(run=export_embedding_model)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
