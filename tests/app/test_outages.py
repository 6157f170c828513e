"""Dependencies going away: Postgres stopped mid-session, an index that is not there."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import NullPool, create_engine, text

from app.core.db import create_db_engine
from app.main import create_app
from app.settings import load_settings
from tests.conftest import APP_PASSWORD, database_url, start_cluster
from tests.support.waiting import wait_until


@pytest.fixture
def own_postgres(ingested_textbook):
    from app.core.db import migrate

    cluster = start_cluster("postgres-outage", durable=True)  # it is crashed on purpose: keep its commits
    cluster.ensure_database(dbname="textbook", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(cluster, "textbook")
    migrate(url)
    yield cluster, url
    cluster.stop(mode="immediate")


def test_postgres_down_gives_503_then_the_service_recovers_by_itself(own_postgres):
    cluster, url = own_postgres
    settings = load_settings(_env_file=None, database_url=url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/ready").status_code == 200
        assert client.post("/v1/chat", json={"question": "What is ROS 2?"}).status_code == 200

        cluster.stop(mode="immediate")
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["down"] == ["postgres"]
        response = client.post("/v1/chat", json={"question": "What is ROS 2?"})
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["error_code"] == "database_unavailable" and "Traceback" not in response.text
        assert client.post("/v1/search", json={"query": "ROS 2"}).status_code == 503
        assert client.get("/health").status_code == 200

        cluster.start()
        wait_until(lambda: client.get("/ready").status_code == 200, timeout_s=20, what="/ready after Postgres is back",
                   poll_s=0.2)
        assert client.post("/v1/chat", json={"question": "What is ROS 2?"}).status_code == 200


def test_missing_index_gives_503_naming_the_vector_index(settings, ingested_textbook):
    missing = load_settings(_env_file=None, database_url=settings.database_url, collection="never-ingested")
    with TestClient(create_app(missing), raise_server_exceptions=False) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["down"] == ["vector_index"]
        response = client.post("/v1/chat", json={"question": "What is ROS 2?"})
        assert response.status_code == 503 and response.json()["error_code"] == "index_unavailable"
        assert "ingest" in response.json()["detail"]


def test_a_pooled_connection_the_server_closed_is_replaced_before_a_request_uses_it(settings):
    """No SELECT 1 per checkout: an idle pooled connection whose backend is gone is noticed from its socket."""
    engine = create_db_engine(settings)
    admin = create_engine(settings.resolved_database_url, poolclass=NullPool)  # outside the pool under test
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:  # the pool hands the same connection back while it is alive
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == first
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        wait_until(lambda: not _backend_alive(admin, first), timeout_s=10, what=f"backend {first} to exit")
        with engine.connect() as conn:
            replaced = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert replaced != first
    finally:
        engine.dispose()
        admin.dispose()


def _backend_alive(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar())
