"""The embedded cluster from any folder: a checkout under a 0700 parent (root's home is one), as root.

The server runs as the `postgres` user, which cannot enter such a parent; the cluster then keeps the server's
files in a folder of its own outside the checkout, recorded in `.data/postgres/server-dir`, and
`python -m devenv clean` (what `make clean` runs) deletes that folder too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from app.settings import PROJECT_ROOT
from devenv.postgres import SERVER_USER, PostgresCluster, outside_server_dir
from tests.conftest import free_port

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when we are root")


def _server_user_can_enter(path: Path) -> bool:
    return subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-x", str(path)]).returncode == 0


def _data_directory(cluster: PostgresCluster) -> str:
    with psycopg.connect(cluster.superuser_dsn()) as conn:
        return conn.execute("SHOW data_directory").fetchone()[0]


def test_a_reachable_root_keeps_the_server_files_inside_it(pg_cluster):
    assert not pg_cluster.server_dir_record.exists()
    assert pg_cluster.server_dir == pg_cluster.root
    assert _data_directory(pg_cluster) == str(pg_cluster.root / "data")


@as_root
def test_a_checkout_under_a_0700_parent_runs_its_cluster_outside_and_clean_removes_it():
    parent = Path(tempfile.mkdtemp(prefix="textbook-ops-0700-"))
    data = parent / "checkout" / ".data"
    root = data / "postgres"
    try:
        assert parent.stat().st_mode & 0o777 == 0o700
        assert not _server_user_can_enter(parent)
        cluster = PostgresCluster(root=root, port=free_port(), fast_unsafe=True)
        cluster.initialize()
        cluster.start()
        outside = cluster.server_dir
        assert outside == outside_server_dir(root) and not outside.is_relative_to(parent)
        assert cluster.server_dir_record.read_text().strip() == str(outside)
        assert outside.owner() == SERVER_USER and outside.stat().st_mode & 0o777 == 0o700
        assert _data_directory(cluster) == str(outside / "data")
        assert (root / "superuser.password").exists(), "the password stays in the checkout"

        # Another process (`make down`, `make up`) finds the same cluster through the record.
        again = PostgresCluster(root=root, port=cluster.port)
        assert again.is_running()
        again.stop()
        assert not cluster.is_running()
        again.start()
        assert _data_directory(again) == str(outside / "data")

        # `rm -rf .data` without `make clean` while it runs: the next cluster of this path replaces the stale one.
        shutil.rmtree(data)
        fresh = PostgresCluster(root=root, port=cluster.port, fast_unsafe=True)
        fresh.initialize()
        fresh.start()
        assert fresh.server_dir == outside and _data_directory(fresh) == str(outside / "data")

        env = {**os.environ, "DATA_DIR": str(data), "EMBEDDED_PG_PORT": str(cluster.port)}
        result = subprocess.run([sys.executable, "-m", "devenv", "clean"], cwd=PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert str(outside) in result.stdout
        assert not outside.exists() and not root.exists()
        assert not fresh.is_running()
    finally:
        if outside_server_dir(root).exists():
            root.mkdir(parents=True, exist_ok=True)
            (root / "server-dir").write_text(f"{outside_server_dir(root)}\n")
            PostgresCluster(root=root, port=0).remove()
        shutil.rmtree(parent, ignore_errors=True)
