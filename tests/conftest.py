"""Session fixtures: a throwaway Postgres cluster, Prefect's test harness, the ingested textbook.

Never touches the development environment: the cluster, data folder and Prefect home are temporary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

_TEST_ROOT = Path(tempfile.mkdtemp(prefix="textbook-ops-tests-"))
_TEST_ROOT.chmod(0o755)
# Before anything imports prefect or app.settings: an isolated home, no server, no analytics.
os.environ["PREFECT_HOME"] = str(_TEST_ROOT / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
for _name in list(os.environ):  # a developer's configuration must not leak into the tests
    if _name in {"DATABASE_URL", "VECTOR_BACKEND", "QDRANT_URL", "EMBEDDING_BACKEND", "ANSWER_BACKEND",
                 "OPENAI_API_KEY", "INDEX_DIR", "COLLECTION", "MAINTENANCE_DATABASE_URL", "BACKUP_STORAGE",
                 "BACKUP_DIR", "PUSHGATEWAY_URL", "PG_BIN_DIR"}:
        del os.environ[_name]
os.environ["ENVIRONMENT"] = "test"
os.environ["DATA_DIR"] = str(_TEST_ROOT / "data")
# Every TestClient is one client address: the suite must not trip the per-address limit (tests/security sets its own).
os.environ["RATE_LIMIT_ANONYMOUS"] = os.environ["RATE_LIMIT_PER_KEY"] = "1000000"

import pytest  # noqa: E402

from app.core.db import migrate  # noqa: E402
from app.settings import PROJECT_ROOT, Settings, get_settings  # noqa: E402
from devenv.postgres import PostgresCluster  # noqa: E402
from tests.support.openai_server import FakeOpenAI  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

APP_PASSWORD = "test-app-password"
OPS_PASSWORD = "test-ops-password"


def start_cluster(name: str, *, durable: bool = False, bin_dir: Path | None = None) -> PostgresCluster:
    """A throwaway cluster; `durable` keeps fsync and synchronous commit on (for crash tests); `bin_dir`: another
    PostgreSQL than the newest installed one."""
    cluster = PostgresCluster(root=_TEST_ROOT / name, port=free_port(), fast_unsafe=not durable, bin_dir=bin_dir)
    cluster.initialize()
    cluster.start()
    return cluster


def database_url(cluster: PostgresCluster, dbname: str) -> str:
    return f"postgresql+psycopg://textbook_app:{APP_PASSWORD}@127.0.0.1:{cluster.port}/{dbname}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster("postgres")
    yield cluster
    cluster.stop(mode="immediate")


@pytest.fixture(scope="session")
def settings(pg_cluster: PostgresCluster) -> Iterator[Settings]:
    """The test session's settings, also in the environment so flows (get_settings()) agree."""
    pg_cluster.ensure_database(dbname="textbook", app_user="textbook_app", app_password=APP_PASSWORD)
    pg_cluster.ensure_ops_role(ops_user="textbook_ops", ops_password=OPS_PASSWORD, member_of="textbook_app")
    url = database_url(pg_cluster, "textbook")
    migrate(url)
    os.environ["DATABASE_URL"] = url
    os.environ["MAINTENANCE_DATABASE_URL"] = (
        f"postgresql+psycopg://textbook_ops:{OPS_PASSWORD}@127.0.0.1:{pg_cluster.port}/postgres"
    )
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def settings_env() -> Iterator[Callable[[Mapping[str, str | None]], Settings]]:
    """Environment variables for this test only (None unsets one), and the settings the flows then read.

    `settings_env({"BACKUP_DIR": str(path)})` sets them and returns `get_settings()` read afresh; after the test the
    variables are restored and the cached settings dropped, so the next test reads its own environment.
    """
    patch = pytest.MonkeyPatch()

    def apply(variables: Mapping[str, str | None]) -> Settings:
        for name, value in variables.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        get_settings.cache_clear()
        return get_settings()

    yield apply
    patch.undo()
    get_settings.cache_clear()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A local server that speaks OpenAI's API (tests/support/openai_server.py), for one test."""
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    from flows.cli import command_line_heartbeats

    # Flows called here run as `python -m flows.X` runs them: without heartbeats (flows/cli.py).
    with prefect_test_harness(server_startup_timeout=120), command_line_heartbeats():
        yield


@pytest.fixture(scope="session")
def ingested_textbook(settings: Settings, prefect_harness: None) -> dict:
    """The site's own textbook, both locales, in the default collection."""
    from flows.ingest_textbook import ingest_textbook

    result = ingest_textbook(source=str(PROJECT_ROOT / "website"))
    assert result["status"] == "completed", result
    return result


@pytest.fixture(scope="session")
def client(ingested_textbook: dict, settings: Settings) -> Iterator:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Settings(_env_file=None).shared_dir  # SHARED_DIR, default ../shared
    if not (path / "corpora" / "rust-book").is_dir():
        pytest.fail(f"the shared material is missing: expected {path}/corpora/rust-book (set SHARED_DIR)")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TEST_ROOT, ignore_errors=True)
