"""The one settings class. This is the only module that reads the environment.

Every variable is listed with its default in `.env.example`. Names are the upper-case field names
(pydantic-settings is case-insensitive). A bad value stops startup with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_DB_PASSWORD = "textbook-dev-password"

EMBEDDING_MODEL_DEFAULTS = {"local": "all-MiniLM-L6-v2", "openai": "text-embedding-3-small"}
EMBEDDING_DIMENSIONS = {"all-MiniLM-L6-v2": 384, "text-embedding-3-small": 1536, "text-embedding-3-large": 3072}


class SettingsError(RuntimeError):
    """Raised when the environment holds a value the service cannot run with."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="embedded data: Postgres, index, logs")
    shared_dir: Path = Field(default=PROJECT_ROOT.parent / "shared", description="../shared (corpora)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    # Postgres: DATABASE_URL wins; without it the embedded cluster under DATA_DIR/postgres is used.
    database_url: str | None = None
    embedded_pg_host: str = "127.0.0.1"
    embedded_pg_port: int = Field(default=55432, ge=1024, le=65535)
    db_name: str = "textbook"
    db_user: str = "textbook_app"
    db_password: SecretStr = SecretStr(DEV_DB_PASSWORD)
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    db_connect_timeout_s: int = Field(default=3, ge=1, le=60)

    # Vector index: embedded Qdrant Edge (a private copy per worker process) or a Qdrant server / Qdrant Cloud.
    vector_backend: Literal["edge", "qdrant"] = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    index_dir: Path | None = None
    collection: str = Field(default="textbook", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    index_generations_kept: int = Field(default=2, ge=1, le=20)

    # Embeddings and answers.
    embedding_backend: Literal["local", "openai"] = "local"
    embedding_model: str | None = None
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_threads: int = Field(
        default=2, ge=1, le=64,
        description="model threads per process; unset, `serve` with several workers gives each its share of the cores",
    )
    # Lean inference: the local model runs on ONNX Runtime; torch only where the model is exported.
    embedding_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="local model runtime: onnx (the exported model, no torch) or torch (needs the export extra)",
    )
    embedding_model_dir: Path | None = Field(
        default=None,
        description="the exported ONNX model (`python -m app export-embedding-model`); default <venv>/share/textbook-ops",
    )
    embedding_batch_wait_ms: float = Field(
        default=2.0, ge=0, le=50,
        description="a query waits at most this long for others to share its encode call (only under concurrency)",
    )
    embedding_batch_max: int = Field(default=32, ge=1, le=256, description="queries per shared encode call")
    embedding_queue_max: int = Field(
        default=256, ge=1, le=10000, description="queries waiting for the encoder beyond this get 503 (overloaded)",
    )
    answer_backend: Literal["extractive", "openai"] = "extractive"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_chat_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=20.0, gt=0, le=300)
    openai_max_retries: int = Field(default=1, ge=0, le=10)
    openai_admin_key: SecretStr | None = Field(
        default=None, description="an OpenAI admin key: cost-report then reconciles with GET /organization/costs",
    )

    # Retrieval.
    retrieval_k: int = Field(default=5, ge=1, le=20)
    retrieval_prefetch: int = Field(default=40, ge=1, le=500)
    # Fusion of the dense and sparse candidates (app/rag/ranking.py); chosen on bench/eval's calibration halves
    # with the local model (bench/answer_quality.py, see bench/RESULTS.md).
    rrf_k: int = Field(default=5, ge=1, le=1000, description="RRF constant of the dense/sparse fusion")
    dense_weight: float = Field(default=0.5, ge=0)
    sparse_weight: float = Field(default=1.0, ge=0)
    fusion_bm25_weight: float = Field(
        default=0.1, ge=0, description="fused score added per unit of a chunk's BM25 relative to the best chunk's",
    )
    search_related_forms: bool = Field(
        default=True,
        description="also search the book's spellings one edit away from a question's unknown terms, and its other "
                    "forms of the question's Urdu words",
    )
    related_form_weight: float = Field(default=0.5, ge=0, le=1, description="query weight of those related forms")
    fusion_cosine_weight: float = Field(
        default=0.1, ge=0, description="fused score added per unit of a chunk's cosine similarity (where dense is reliable)",
    )
    dense_weight_non_english: float | None = Field(
        default=None, ge=0,
        description="dense weight for other locales; default 0.1 with the English-only local model, else DENSE_WEIGHT",
    )
    # "Not covered" (app/rag/coverage.py); calibrated by bench/covered_quality.py, see bench/RESULTS.md.
    min_dense_score: float = Field(
        default=0.35, ge=-1, le=1,
        description="best chunk's cosine similarity below this: not covered (where the model knows the language)",
    )
    min_sparse_score: float = Field(
        default=3.0, ge=0,
        description="best chunk's BM25 score below this: not covered (a floor, for languages dense can't judge)",
    )
    min_query_terms_matched: float = Field(
        default=0.75, ge=0, le=1,
        description="share of the question's terms found in the retrieved chunks below this: not covered (ditto)",
    )
    lexical_cover_sparse_score: float = Field(
        default=20.0, ge=0,
        description="best chunk's BM25 score at least this, with LEXICAL_COVER_TERMS_MATCHED of the question's terms "
                    "found: covered on that evidence alone, whatever the dense score (0: off)",
    )
    lexical_cover_terms_matched: float = Field(
        default=0.5, ge=0, le=1, description="share of the question's terms found that LEXICAL_COVER_SPARSE_SCORE needs",
    )
    name_cover_max_chunks: int = Field(
        default=4, ge=0,
        description="a question naming something the book names in at most this many chunks (Optimus, Unitree), "
                    "with the best chunk holding every such name: covered on that evidence (0: off)",
    )
    max_unknown_terms: int = Field(
        default=0, ge=0,
        description="more names in the question than this that the whole book never uses: not covered",
    )
    citation_min_support: float = Field(
        default=0.4, ge=0, le=1,
        description="a cited sentence needs this share of its terms in its source, else it is dropped (openai answers)",
    )

    # Backups and restore drills.
    maintenance_database_url: str | None = Field(
        default=None, description="a role that may CREATE DATABASE (drills, restores); default: embedded ops role",
    )
    ops_db_user: str = "textbook_ops"
    ops_db_password: SecretStr = SecretStr(DEV_DB_PASSWORD)
    pg_bin_dir: Path | None = Field(default=None, description="folder with pg_dump / pg_restore; default: newest found")
    backup_storage: Literal["local", "s3"] = "local"
    backup_dir: Path | None = None
    backup_s3_bucket: str | None = None
    backup_s3_prefix: str = "textbook-ops/backups"
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    backup_keep_daily: int = Field(default=30, ge=1, le=3650)
    backup_keep_weekly: int = Field(default=8, ge=0, le=520)
    backup_keep_monthly: int = Field(default=6, ge=0, le=120)
    backup_keep_restored_days: int = Field(default=14, ge=0, le=3650)  # a backup a restore used stays this long
    restore_jobs: int = Field(default=2, ge=1, le=32)
    pushgateway_url: str | None = None
    local_pushgateway_url: str | None = Field(
        default=None, description="used when PUSHGATEWAY_URL is unset and it answers (make up: make monitoring-up's)")
    task_retry_delay_s: float = Field(default=10.0, ge=0, le=3600)

    # Cost reporting.
    cost_monthly_budget_usd: float = Field(default=100.0, gt=0)
    cost_per_query_target_usd: float = Field(default=0.01, gt=0)
    cost_fixed_render_usd: float = Field(default=7.0, ge=0, description="monthly: Render web service (Starter)")
    cost_fixed_neon_usd: float = Field(default=19.0, ge=0, description="monthly: Neon (Launch)")
    cost_fixed_qdrant_usd: float = Field(default=0.0, ge=0, description="monthly: Qdrant Cloud (free tier)")
    cost_alert_webhook_url: str | None = Field(default=None, description="a webhook notified on a projected overrun")

    # Readers' data (purge-personal-data flow, DELETE /v1/sessions/{id}; README "Privacy").
    query_text_retention_days: int = Field(
        default=30, ge=1, le=3650, description="query_log keeps the question text this long, then clears it")
    session_retention_days: int = Field(
        default=90, ge=1, le=3650, description="conversations idle this long are deleted; feedback comments cleared")
    purge_batch_rows: int = Field(
        default=5000, ge=100, le=1000000, description="rows per purge transaction (short locks)")
    content_gap_max_distance: float = Field(
        default=0.875, gt=0, lt=2, description="content-gaps: mean cosine distance within which questions form one topic")
    content_gap_min_questions: int = Field(
        default=3, ge=2, le=1000, description="content-gaps: fewest questions that make a topic")
    content_gaps_webhook_url: str | None = Field(default=None, description="content-gaps: a webhook sent the summary")

    # OpenTelemetry traces (app/observability/tracing.py; README "Tracing"). Other standard OTEL_EXPORTER_OTLP_*
    # variables (headers, timeout, compression, certificates) are read by the OTLP exporter itself.
    tracing_enabled: bool = Field(default=False, description="export OpenTelemetry traces of requests and flow runs")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP base URL (…/v1/traces is added); default http://localhost:4318")
    otel_service_name: str | None = Field(
        default=None, description="service.name of the spans; default textbook-ops-api / textbook-ops-flows")
    tracing_record_question: bool = Field(
        default=False, description="put the question text on the request span (traces are not purged: keep off)")

    # Secret rotation.
    secret_backend: Literal["prefect", "aws"] = "prefect"
    secret_name_prefix: str = Field(default="textbook-ops", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    secrets_source: Literal["settings", "store"] = Field(
        default="settings",
        description="where the service takes the database credentials and the OpenAI key: these settings, "
                    "or the secret store the rotation flows write (then re-read every SECRET_REFRESH_S)",
    )
    secret_refresh_s: float = Field(default=300.0, gt=0, le=86400, description="re-read rotated secrets this often")
    prefect_api_url: str | None = Field(default=None, description="Prefect's API, for SECRET_BACKEND=prefect reads")
    prefect_api_key: SecretStr | None = None
    api_key_rotation_grace_h: float = Field(default=24.0, ge=0, le=720, description="old API key stays valid this long")

    # Synthetic probe (flows/synthetic_probe.py).
    probe_base_url: str | None = Field(default=None, description="the service the probe checks; default the local API")
    probe_api_key: SecretStr | None = Field(default=None, description="X-API-Key for the canary when anonymous access is off")
    probe_timeout_s: float = Field(default=30.0, gt=0, le=300, description="per probe request")

    # Game days (flows/game_day.py).
    alertmanager_url: str | None = Field(default=None, description="Alertmanager's API, where a game day reads the alert")
    game_day_detect_timeout_s: float = Field(default=900.0, gt=0, le=7200,
                                             description="an alert not firing by then fails the game day")
    game_day_recover_timeout_s: float = Field(default=900.0, gt=0, le=7200,
                                              description="no recovery by then fails the game day")
    game_day_poll_s: float = Field(default=1.0, gt=0, le=60, description="how often a game day reads Alertmanager and the probe")

    # Local Prefect server (make up).
    prefect_host: str = "127.0.0.1"
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    cli_flow_heartbeat_s: int = Field(
        default=0, ge=0,
        description="flow-run heartbeats of `python -m flows.X` runs, seconds (>= 30); 0: none. Runs a worker starts "
                    "keep Prefect's PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default 180)")

    # Access.
    anonymous_access: bool = Field(default=True, description="allow requests without X-API-Key (the public site)")

    # HTTP service.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(
        default=1, ge=1, le=64,
        description="uvicorn worker processes; with the embedded index each reads its own copy of the live generation",
    )
    max_body_bytes: int = Field(default=65536, ge=1024)
    metrics_multiproc_dir: Path | None = None
    active_session_window_s: int = Field(default=1800, ge=60)
    active_sessions_refresh_s: float = Field(default=15.0, ge=0, le=3600,
                                             description="/metrics counts active sessions in Postgres at most this often")
    active_sessions_query_timeout_s: float = Field(default=1.0, gt=0, le=30,
                                                   description="statement timeout of that count: a slow one skips a sample")

    # Abuse and hygiene: rate limits kept in Postgres, proxies, timeouts, headers.
    rate_limit_enabled: bool = Field(default=True, description="count /v1 requests per API key and per client address")
    rate_limit_window_s: int = Field(default=60, ge=1, le=86400, description="the sliding window of the limits")
    rate_limit_per_key: int = Field(default=600, ge=1, description="requests per window for one API key")
    rate_limit_anonymous: int = Field(
        default=60, ge=1, description="requests per window for one client address without a (valid) key",
    )
    trusted_proxies: str = Field(
        default="",
        description="CIDRs (comma-separated) whose X-Forwarded-For/-Proto are believed; empty (default): none",
    )
    request_timeout_s: float = Field(default=30.0, gt=0, le=600, description="504 when no response has started by then")
    max_in_flight_requests: int = Field(
        default=100, ge=1, description="per worker: more requests in progress get a 503 with Retry-After at once",
    )
    max_in_flight_per_client: int = Field(
        default=20, ge=1, description="per worker and client address: more requests in progress get a 429 at once",
    )
    body_read_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="408 and the connection closed when a request body takes longer",
    )
    header_read_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="a connection whose request headers take longer is closed",
    )
    hsts_max_age_s: int = Field(default=31536000, ge=0, description="Strict-Transport-Security max-age (HTTPS only)")
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default=["http://127.0.0.1:3000", "http://localhost:3000"],
        description="origins whose pages may call the API from a browser (comma-separated; never *)",
    )

    # The docs site (make up builds website/ and serves website/build).
    site_host: str = "127.0.0.1"
    site_port: int = Field(default=3000, ge=1, le=65535, description="where make up serves the built docs site")

    # Publishing the docs site (deploy-docs).
    docs_git_remote: str | None = Field(
        default=None, description="git remote the built site is pushed to (URL or path), e.g. git@github.com:org/repo.git",
    )
    docs_branch: str = Field(default="gh-pages", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,100}$",
                             description="branch of DOCS_GIT_REMOTE the host serves")
    docs_public_url: str | None = Field(
        default=None, description="where the host serves that branch, e.g. https://org.github.io/textbook-ops/",
    )
    docs_api_url: str | None = Field(
        default=None, description="the production API the published site's chat widget calls (its TEXTBOOK_API_URL)",
    )
    docs_verify_timeout_s: float = Field(
        default=600.0, gt=0, le=3600, description="how long verification waits for the host to serve a new publish",
    )
    docs_work_dir: Path | None = Field(default=None, description="exports, builds and the publish repo; default DATA_DIR/docs")

    # Backend deployment on Render (deploy-backend flow; runbooks/deploy-and-rollback.md).
    render_api_url: str = Field(default="https://api.render.com/v1", description="Render's REST API")
    render_api_key: SecretStr | None = Field(default=None, description="a Render API key (sent as a Bearer token)")
    render_service_id: str | None = Field(default=None, description="the query service on Render (srv-...)")
    image_repository: str = Field(
        default="ghcr.io/textbook-ops/textbook-ops", pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$",
        description="the image the release workflow pushes (tagged with the commit) and Render pulls by digest",
    )
    registry_api_url: str | None = Field(
        default=None, description="the registry's API (OCI distribution); default https://<IMAGE_REPOSITORY's host>",
    )
    registry_username: str | None = Field(default=None, description="registry login for private images")
    registry_token: SecretStr | None = Field(
        default=None, description="registry password or token (GHCR: a token with read:packages) for private images",
    )
    service_base_url: str | None = Field(
        default=None, description="the deployed service's public URL: the health gate and smoke test call it",
    )
    deploy_timeout_s: float = Field(default=1800.0, gt=0, le=7200, description="a deploy not live by then fails")
    deploy_poll_interval_s: float = Field(default=10.0, gt=0, le=300, description="how often a deploy's status is read")
    deploy_health_window_s: float = Field(
        default=60.0, ge=0, le=3600, description="after live, /health and /ready must stay green this long",
    )
    deploy_health_interval_s: float = Field(default=5.0, gt=0, le=300, description="probe interval inside that window")
    deploy_canary_question: str | None = Field(
        default=None, min_length=1, description="the smoke test's question (default: the synthetic probe's canary)",
    )
    deploy_canary_chapter: str | None = Field(
        default=None, min_length=1,
        description="a source URL of the canary's answer must contain this (default: the probe canary's page)",
    )
    deploy_smoke_requests: int = Field(default=20, ge=1, le=500, description="requests in the smoke test's burst")
    deploy_smoke_p95_ms: float = Field(default=2000.0, gt=0, description="SLO: p95 latency of the smoke burst")
    deploy_smoke_api_key: SecretStr | None = Field(
        default=None, description="X-API-Key for the smoke test (when ANONYMOUS_ACCESS is off)",
    )
    deploy_max_backup_age_hours: float = Field(
        default=24.0, gt=0, le=720, description="newer verified backup needed before a deploy, else one is taken first",
    )
    deploy_notify_webhook_url: str | None = Field(default=None, description="a webhook told every deploy's outcome")
    deploy_repo_dir: Path | None = Field(
        default=None, description="git checkout read for release notes and the deployed commit's migrations; default: this one",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR") from None
        return value

    @field_validator("cli_flow_heartbeat_s")
    @classmethod
    def _heartbeat(cls, value: int) -> int:
        if 0 < value < 30:
            raise ValueError("Prefect sends flow-run heartbeats at most every 30 s: 0 (none) or at least 30")
        return value

    @field_validator("maintenance_database_url")
    @classmethod
    def _maintenance_url(cls, value: str | None) -> str | None:
        return cls._postgres_url(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^postgres(ql)?(\+psycopg)?://[^/]+/[^/?]+", value):
            raise ValueError("must look like postgresql://user:password@host:port/dbname[?sslmode=require]")
        return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql+psycopg://", value)

    @field_validator("qdrant_url", "openai_base_url", "aws_endpoint_url", "pushgateway_url", "local_pushgateway_url",
                     "cost_alert_webhook_url", "probe_base_url", "prefect_api_url", "alertmanager_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("docs_api_url")
    @classmethod
    def _docs_api_url(cls, value: str | None) -> str | None:
        return cls._http_url(value)

    @field_validator("render_api_url", "service_base_url", "deploy_notify_webhook_url", "registry_api_url")
    @classmethod
    def _deploy_urls(cls, value: str | None) -> str | None:
        return cls._http_url(value)

    @field_validator("docs_public_url")
    @classmethod
    def _site_url(cls, value: str | None) -> str | None:
        """The public site is a folder URL (pages are resolved under it): exactly one trailing slash."""
        value = cls._http_url(value)
        return None if value is None else value + "/"

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):  # a comma-separated list, or JSON as .env.example shows it
            value = json.loads(value) if value.lstrip().startswith("[") else [
                part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        origins = []
        for origin in value:
            if not isinstance(origin, str) or origin.strip() == "*":
                raise ValueError("list the site's origins; '*' would let any page call the API")
            if not re.fullmatch(r"https?://[^\s/*]+", origin.strip().rstrip("/")):
                raise ValueError(f"{origin!r} is not an origin like https://example.org or http://127.0.0.1:3000")
            origins.append(origin.strip().rstrip("/"))
        return origins

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.vector_backend == "qdrant" and not self.qdrant_url:
            raise ValueError("VECTOR_BACKEND=qdrant needs QDRANT_URL")
        uses_openai = self.embedding_backend == "openai" or self.answer_backend == "openai"
        if uses_openai and self.openai_api_key is None and self.secrets_source == "settings":
            raise ValueError("EMBEDDING_BACKEND/ANSWER_BACKEND=openai needs OPENAI_API_KEY")
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError("ENVIRONMENT=production needs DATABASE_URL")
            if self.db_password.get_secret_value() == DEV_DB_PASSWORD and "textbook-dev" in self.database_url:
                raise ValueError("DATABASE_URL uses the development password in production")
        if self.backup_storage == "s3" and not self.backup_s3_bucket:
            raise ValueError("BACKUP_STORAGE=s3 needs BACKUP_S3_BUCKET")
        if self.resolved_embedding_model not in EMBEDDING_DIMENSIONS:
            raise ValueError(
                f"EMBEDDING_MODEL={self.resolved_embedding_model!r} is unknown; "
                f"known: {', '.join(sorted(EMBEDDING_DIMENSIONS))}"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        password = quote(self.db_password.get_secret_value(), safe="")
        return (
            f"postgresql+psycopg://{self.db_user}:{password}@{self.embedded_pg_host}:"
            f"{self.embedded_pg_port}/{self.db_name}"
        )

    @property
    def resolved_maintenance_database_url(self) -> str:
        """A role that may create databases, connected to the maintenance database `postgres`."""
        if self.maintenance_database_url:
            return self.maintenance_database_url
        if self.database_url:
            return re.sub(r"/[^/?]+(\?|$)", r"/postgres\1", self.database_url, count=1)
        password = quote(self.ops_db_password.get_secret_value(), safe="")
        return (
            f"postgresql+psycopg://{self.ops_db_user}:{password}@{self.embedded_pg_host}:"
            f"{self.embedded_pg_port}/postgres"
        )

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def resolved_probe_base_url(self) -> str:
        return self.probe_base_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def resolved_backup_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.database_url is None

    def dense_weight_for(self, locale: str | None) -> float:
        """MiniLM is an English model: its vectors for Urdu text are mostly noise, so sparse leads there."""
        if locale in (None, "en"):
            return self.dense_weight
        if self.dense_weight_non_english is not None:
            return self.dense_weight_non_english
        return 0.1 if self.embedding_backend == "local" else self.dense_weight

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.data_dir / "index"

    @property
    def resolved_docs_work_dir(self) -> Path:
        return self.docs_work_dir or self.data_dir / "docs"

    @property
    def resolved_registry_api_url(self) -> str:
        return (self.registry_api_url or f"https://{self.image_repository.split('/', 1)[0]}").rstrip("/")

    @property
    def resolved_deploy_repo_dir(self) -> Path:
        return self.deploy_repo_dir or PROJECT_ROOT

    @property
    def resolved_embedding_model(self) -> str:
        return self.embedding_model or EMBEDDING_MODEL_DEFAULTS[self.embedding_backend]

    @property
    def embedding_dimensions(self) -> int:
        return EMBEDDING_DIMENSIONS[self.resolved_embedding_model]

    @property
    def resolved_embedding_model_dir(self) -> Path:
        """Where `make install` / the image's build stage put the exported model: inside the environment."""
        return self.embedding_model_dir or Path(sys.prefix) / "share" / "textbook-ops" / "all-MiniLM-L6-v2-onnx"

    def collection_name(self, base: str | None = None) -> str:
        """Collection names carry the embedding model so switching models never mixes vectors."""
        model_slug = re.sub(r"[^a-z0-9]+", "-", self.resolved_embedding_model.lower()).strip("-")
        return f"{base or self.collection}--{model_slug}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), turning validation errors into one message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
