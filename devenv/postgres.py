"""An embedded PostgreSQL cluster that the project starts itself (initdb / pg_ctl).

Used by `make up` (the development cluster under `.data/postgres`) and by the test suite (a throwaway
cluster in a temporary folder). `initdb` refuses to run as root, so when we are root every server
command runs as the unprivileged `postgres` system user through `runuser`.

That user must reach the server's files. When the checkout lies under a folder it cannot enter (root's home
is 0700), the server's files (data directory, log, socket) go to a folder of its own outside the checkout,
`~postgres/textbook-ops/<checkout>-<hash>`, whose path is recorded in `<root>/server-dir`; `remove()`
(`make clean`) deletes both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from app.ops.pg_binaries import PgBinaryNotFound
from app.ops.pg_binaries import find_pg_binary as _find

log = logging.getLogger(__name__)

SERVER_USER = "postgres"


class PostgresSetupError(RuntimeError):
    """The embedded cluster could not be created or started."""


def find_pg_binary(name: str, bin_dir: Path | None = None) -> str:
    try:
        return _find(name, bin_dir)
    except PgBinaryNotFound as exc:
        raise PostgresSetupError(f"{exc}; `make up` installs it") from None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(args: list[str]) -> list[str]:
    if _running_as_root():
        return ["runuser", "-u", SERVER_USER, "--", *args]
    return args


def _chown_to_server_user(path: Path) -> None:
    if _running_as_root():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _server_user_can_write(path: Path) -> bool:
    if not _running_as_root():
        return True
    return subprocess.run(_as_server_user(["test", "-w", str(path)]), check=False).returncode == 0


def outside_server_dir(root: Path) -> Path:
    """Where the server's files of the cluster `root` go when the server user cannot reach `root`: one folder
    per cluster (the hash of its path) in the server user's home, named after the checkout for people."""
    resolved = root.resolve()
    checkout = resolved.parent.parent if resolved.parent.name == ".data" else resolved
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", checkout.name)[:24] or "cluster"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return Path(pwd.getpwnam(SERVER_USER).pw_dir) / "textbook-ops" / f"{label}-{digest}"


@dataclass
class PostgresCluster:
    """One cluster: a data directory, a port on 127.0.0.1 and a superuser password file.

    `root` holds the superuser password (read by us, never by the server) and, when the server user cannot
    reach `root`, the record `server-dir` of where the server's own files are (`server_dir`)."""

    root: Path
    port: int
    host: str = "127.0.0.1"
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only
    bin_dir: Path | None = None  # PostgreSQL's bin folder; default: the newest installed (app.ops.pg_binaries)

    @property
    def server_dir_record(self) -> Path:
        return self.root / "server-dir"

    @property
    def server_dir(self) -> Path:
        """The folder of the server's files: `root` itself, or the one recorded in `server-dir`."""
        if self.server_dir_record.exists():
            return Path(self.server_dir_record.read_text().strip())
        return self.root

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.server_dir / "server.log"

    @property
    def superuser_password_file(self) -> Path:
        return self.root / "superuser.password"

    def superuser_password(self) -> str:
        return self.superuser_password_file.read_text().strip()

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initialize(self) -> None:
        """Create the cluster (idempotent: an existing cluster is left alone)."""
        if self.is_initialized():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        _chown_to_server_user(self.root)
        self._choose_server_dir()
        password = secrets.token_urlsafe(24)
        self.superuser_password_file.write_text(password + "\n")
        self.superuser_password_file.chmod(0o600)
        # The server user reads the password once, from a file only it can read.
        pwfile = self.server_dir / ".initdb-pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        _chown_to_server_user(pwfile)
        try:
            args = [
                find_pg_binary("initdb", self.bin_dir), "-D", str(self.data_dir), "--username=postgres",
                f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8",
            ]
            if self.fast_unsafe:
                args.append("--no-sync")
            result = subprocess.run(_as_server_user(args), capture_output=True, text=True)
            if result.returncode != 0:
                raise PostgresSetupError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        finally:
            pwfile.unlink(missing_ok=True)
        settings = [
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.server_dir}'",
            "max_connections = 100",
            "shared_buffers = 128MB",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# textbook-ops embedded cluster\n" + "\n".join(settings) + "\n")

    def _choose_server_dir(self) -> None:
        """`root` if the server user can write there; else a folder of its own outside the checkout, recorded."""
        self.server_dir_record.unlink(missing_ok=True)
        if _server_user_can_write(self.root):
            return
        outside = outside_server_dir(self.root)
        if outside.exists():  # left by an earlier cluster of this path whose .data/ was deleted without `make clean`
            log.warning("removing the stale server folder %s of an earlier cluster", outside)
            subprocess.run(_as_server_user([find_pg_binary("pg_ctl", self.bin_dir), "stop", "-D", str(outside / "data"), "-m",
                                            "immediate", "-w"]), capture_output=True, check=False)
            shutil.rmtree(outside)
        outside.parent.mkdir(parents=True, exist_ok=True)
        _chown_to_server_user(outside.parent)
        outside.mkdir(mode=0o700)
        _chown_to_server_user(outside)
        if not _server_user_can_write(outside):
            raise PostgresSetupError(
                f"the {SERVER_USER!r} user can reach neither {self.root} nor {outside}: make one of them "
                "reachable (chmod o+x on its parents), or choose another DATA_DIR"
            )
        self.server_dir_record.write_text(f"{outside}\n")
        log.info("the %r user cannot reach %s: the server's files are in %s", SERVER_USER, self.root, outside)

    def remove(self) -> None:
        """Stop the cluster and delete everything it created: `root` and the server folder outside it."""
        self.stop(mode="immediate")
        outside = self.server_dir
        if outside != self.root and outside == outside_server_dir(self.root):
            shutil.rmtree(outside, ignore_errors=True)
            try:
                outside.parent.rmdir()  # ~postgres/textbook-ops, when this was its last cluster
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        result = subprocess.run(
            _as_server_user([find_pg_binary("pg_ctl", self.bin_dir), "status", "-D", str(self.data_dir)]),
            capture_output=True, text=True,
        )
        return result.returncode == 0

    def start(self, timeout_s: int = 30) -> None:
        if self.is_running():
            return
        if not self.log_file.exists():
            self.log_file.touch()
        _chown_to_server_user(self.log_file)
        result = subprocess.run(
            _as_server_user([
                find_pg_binary("pg_ctl", self.bin_dir), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(timeout_s), "-o", f"-p {self.port}",
            ]),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise PostgresSetupError(f"pg_ctl start failed (port {self.port} in use?): {tail.strip()}")
        self.wait_until_ready(timeout_s)

    def stop(self, mode: str = "fast") -> None:
        if not self.is_running():
            return
        subprocess.run(
            _as_server_user([find_pg_binary("pg_ctl", self.bin_dir), "stop", "-D", str(self.data_dir), "-m", mode, "-w"]),
            capture_output=True, text=True, check=False,
        )

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return (
            f"host={self.host} port={self.port} dbname={dbname} user=postgres "
            f"password={self.superuser_password()} connect_timeout=3"
        )

    def wait_until_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.superuser_dsn()) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresSetupError(f"Postgres on port {self.port} not ready: {exc}") from exc
                time.sleep(0.1)

    def ensure_database(self, *, dbname: str, app_user: str, app_password: str) -> None:
        """Create (or update) a non-superuser application role owning `dbname`."""
        with psycopg.connect(self.superuser_dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (app_user,)).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD {}").format(
                    verb, sql.Identifier(app_user), sql.Literal(app_password)
                )
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(app_user))
                )

    def ensure_ops_role(self, *, ops_user: str, ops_password: str, member_of: str) -> None:
        """A role for drills, restores and credential rotation: may create databases and roles, and act as (and
        grant) the application role."""
        with psycopg.connect(self.superuser_dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ops_user,)).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            conn.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD {}").format(
                verb, sql.Identifier(ops_user), sql.Literal(ops_password)))
            conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                sql.Identifier(member_of), sql.Identifier(ops_user)))

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.superuser_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
