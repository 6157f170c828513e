import os

import pytest

from app.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VECTOR_BACKEND", "faiss", "VECTOR_BACKEND"),
        ("RETRIEVAL_K", "-3", "RETRIEVAL_K"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE"),
        ("DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL"),
        ("QDRANT_URL", "not a url", "QDRANT_URL"),
        ("EMBEDDING_BACKEND", "word2vec", "EMBEDDING_BACKEND"),
        ("EMBEDDED_PG_PORT", "80", "EMBEDDED_PG_PORT"),
    ],
)
def test_bad_value_stops_startup_naming_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None)


def test_several_workers_run_with_the_embedded_index_or_a_qdrant_server(monkeypatch):
    monkeypatch.setenv("API_WORKERS", "4")
    settings = load_settings(_env_file=None)
    assert settings.vector_backend == "edge" and settings.api_workers == 4
    monkeypatch.setenv("VECTOR_BACKEND", "qdrant")
    monkeypatch.setenv("QDRANT_URL", "https://qdrant.example.internal:6333")
    assert load_settings(_env_file=None).api_workers == 4


@pytest.fixture
def serve_in_test(monkeypatch, tmp_path):
    """`python -m app serve` called in this process: no signal handler installed, its data under tmp_path, and the
    variables it sets for its workers restored afterwards (set first: monkeypatch restores only what it changed)."""
    monkeypatch.setattr("signal.signal", lambda signum, handler: None)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "METRICS_MULTIPROC_DIR", "EMBEDDING_THREADS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))


@pytest.mark.parametrize(("cores", "workers", "explicit", "threads"),
                         [(2, 2, None, "1"), (8, 2, None, "4"), (2, 4, None, "1"), (2, 2, "2", "2")])
def test_serve_gives_each_worker_its_share_of_the_cores_for_the_model(monkeypatch, serve_in_test, cores, workers,
                                                                      explicit, threads):
    from uvicorn.supervisors import Multiprocess

    from app.__main__ import main
    from app.settings import get_settings
    from tests.support.ports import free_port

    started: dict[str, object] = {}
    monkeypatch.setattr(Multiprocess, "run", lambda supervisor: started.update(workers=supervisor.config.workers))
    monkeypatch.setenv("API_PORT", str(free_port()))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    if explicit:
        monkeypatch.setenv("EMBEDDING_THREADS", explicit)
    get_settings.cache_clear()
    try:
        assert main(["serve", "--workers", str(workers)]) == 0
    finally:
        get_settings.cache_clear()
    assert started["workers"] == workers
    assert os.environ["EMBEDDING_THREADS"] == threads


def test_openai_backends_need_a_key(monkeypatch):
    monkeypatch.setenv("ANSWER_BACKEND", "openai")
    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        load_settings(_env_file=None)


def test_production_refuses_the_embedded_database(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(_env_file=None)


def test_neon_style_url_is_accepted_and_normalised(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@ep-cool-1.eu-central-1.aws.neon.tech/textbook?sslmode=require")
    settings = load_settings(_env_file=None)
    assert settings.resolved_database_url.startswith("postgresql+psycopg://app:secret@ep-cool-1")
    assert settings.resolved_database_url.endswith("sslmode=require")


def test_collection_name_carries_the_embedding_model(monkeypatch):
    monkeypatch.delenv("EMBEDDING_BACKEND", raising=False)
    local = load_settings(_env_file=None)
    monkeypatch.setenv("EMBEDDING_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    remote = load_settings(_env_file=None)
    assert local.collection_name() == "textbook--all-minilm-l6-v2"
    assert remote.collection_name() == "textbook--text-embedding-3-small"
    assert remote.embedding_dimensions == 1536


def test_env_example_lists_every_variable_with_its_default():
    from app.settings import PROJECT_ROOT
    from devenv.env_example import render

    assert (PROJECT_ROOT / ".env.example").read_text() == render(), "run `python -m devenv.env_example`"


def test_serve_with_several_workers_names_an_address_already_in_use(monkeypatch, serve_in_test, capsys):
    import socket

    from app.__main__ import main
    from app.settings import get_settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("API_PORT", str(taken.getsockname()[1]))
        get_settings.cache_clear()
        try:
            assert main(["serve", "--workers", "2"]) == 1
        finally:
            get_settings.cache_clear()
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
