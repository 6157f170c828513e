"""`make up`'s embedded cluster from any folder: a checkout under a 0700 folder (root's home is one)."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest

from devenv.postgres import SERVER_ROOT_POINTER, PostgresCluster
from tests.conftest import free_port


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the cluster runs as that user: no folder to reach")
def test_a_cluster_under_a_folder_the_postgres_user_cannot_enter_starts_and_says_where_it_lives(tmp_path):
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)  # the mode argument is masked by umask
    cluster = PostgresCluster(root=private / "checkout" / ".data" / "postgres", port=free_port(), fast_unsafe=True)
    try:
        cluster.initialize()
        cluster.start()
        with psycopg.connect(cluster.superuser_dsn()) as conn:
            data_directory = conn.execute("SHOW data_directory").fetchone()[0]
        recorded = (cluster.root / SERVER_ROOT_POINTER).read_text().strip()
        assert data_directory == f"{recorded}/data" and not data_directory.startswith(str(private))
        assert cluster.data_dir.parent == cluster.server_root and str(cluster.server_root) == recorded
        cluster.stop()
        assert PostgresCluster(root=cluster.root, port=cluster.port).is_initialized()  # found again from .data
    finally:
        if cluster.is_running():
            cluster.stop()
        if (cluster.root / SERVER_ROOT_POINTER).exists():
            shutil.rmtree(cluster.server_root, ignore_errors=True)
