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


def test_several_workers_need_a_qdrant_server(monkeypatch):
    monkeypatch.setenv("API_WORKERS", "4")
    with pytest.raises(SettingsError, match="API_WORKERS>1 needs VECTOR_BACKEND=qdrant"):
        load_settings(_env_file=None)
    monkeypatch.setenv("VECTOR_BACKEND", "qdrant")
    monkeypatch.setenv("QDRANT_URL", "https://qdrant.example.internal:6333")
    assert load_settings(_env_file=None).api_workers == 4


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
