"""Read-only access to rotated secrets for the running service (no Prefect import).

The rotation flows write secrets through `tasks/secrets.py`; the service only reads the current version:
from Prefect's Secret blocks over Prefect's REST API (the default), or from AWS Secrets Manager (`AWSCURRENT`).
`RefreshingSecret` caches a value and re-reads it after `SECRET_REFRESH_S` or when the caller saw it rejected,
so a rotated credential reaches a running service without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from app.settings import Settings

log = logging.getLogger(__name__)


class SecretSourceError(RuntimeError):
    """The secret store is unreachable, or the secret is malformed."""


def openai_api_key_secret_name(settings: Settings) -> str:
    return f"{settings.secret_name_prefix}-openai-api-key"


def database_credentials_secret_name(settings: Settings) -> str:
    return f"{settings.secret_name_prefix}-database-credentials"


def api_key_secret_name(settings: Settings, key_name: str) -> str:
    return f"{settings.secret_name_prefix}-api-key-{key_name}"


class SecretReader(Protocol):
    def read(self, name: str) -> str | None:
        """The current value, or None when the secret does not exist (yet)."""
        ...


class PrefectBlockReader:
    """GET /block_types/slug/secret/block_documents/name/{name} on the Prefect server's API."""

    def __init__(self, api_url: str, *, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        self._url = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s

    def read(self, name: str) -> str | None:
        try:
            response = httpx.get(f"{self._url}/block_types/slug/secret/block_documents/name/{name}",
                                 params={"include_secrets": "true"}, headers=self._headers, timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise SecretSourceError(f"Prefect's API at {self._url} is unreachable: {exc.__class__.__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SecretSourceError(f"Prefect's API answered {response.status_code} reading secret {name!r}")
        value = response.json().get("data", {}).get("value")
        if isinstance(value, dict):  # the rotation flows store {value, version_id}
            value = value.get("value")
        if not isinstance(value, str):
            raise SecretSourceError(f"secret {name!r} is malformed: no string value")
        return value


def quiet_aws_loggers() -> None:
    """botocore's DEBUG logs carry request parameters and response bodies, i.e. secret values."""
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger(noisy).level))


class AwsSecretsReader:
    """AWS Secrets Manager, always the `AWSCURRENT` stage."""

    def __init__(self, client: object) -> None:
        self._client = client
        quiet_aws_loggers()

    def read(self, name: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")  # type: ignore[attr-defined]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return None
            raise SecretSourceError(f"AWS Secrets Manager refused reading {name!r}: {code}") from None
        except BotoCoreError as exc:
            raise SecretSourceError(f"AWS Secrets Manager is unreachable: {exc.__class__.__name__}") from None
        if "SecretString" not in response:
            raise SecretSourceError(f"secret {name!r} is malformed: no SecretString")
        return response["SecretString"]


def secret_reader_for(settings: Settings) -> SecretReader:
    if settings.secret_backend == "aws":
        import boto3

        client = boto3.client(
            "secretsmanager", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
            aws_access_key_id=settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
            aws_secret_access_key=(settings.aws_secret_access_key.get_secret_value()
                                   if settings.aws_secret_access_key else None),
        )
        return AwsSecretsReader(client)
    if not settings.prefect_api_url:
        raise SecretSourceError("SECRETS_SOURCE=store with SECRET_BACKEND=prefect needs PREFECT_API_URL")
    api_key = settings.prefect_api_key.get_secret_value() if settings.prefect_api_key else None
    return PrefectBlockReader(settings.prefect_api_url, api_key=api_key)


class RefreshingSecret:
    """A cached secret value, re-read after `refresh_s`, or at once by `refresh()` (after a rejection).

    A store outage keeps the last good value: a running service must not fail because the store blinked.
    """

    def __init__(self, reader: SecretReader, name: str, *, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._reader = reader
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at: float | None = None

    def get(self) -> str | None:
        with self._lock:
            if self._read_at is None or self._clock() - self._read_at >= self._refresh_s:
                self._reread()
            return self._value

    def refresh(self) -> str | None:
        with self._lock:
            self._reread()
            return self._value

    def _reread(self) -> None:
        try:
            value = self._reader.read(self.name)
        except SecretSourceError as exc:
            if self._read_at is None:
                raise
            log.warning("keeping the cached value of secret %s: %s", self.name, exc)
            self._read_at = self._clock()
            return
        if value != self._value and self._read_at is not None:
            log.info("secret %s changed in the store; using the new version", self.name)
        self._value, self._read_at = value, self._clock()


@dataclass(frozen=True)
class DatabaseCredentials:
    username: str
    password: str

    @classmethod
    def parse(cls, raw: str, *, name: str) -> DatabaseCredentials:
        try:
            document = json.loads(raw)
            return cls(username=str(document["username"]), password=str(document["password"]))
        except (json.JSONDecodeError, TypeError, KeyError):
            raise SecretSourceError(f"secret {name!r} is malformed: expected JSON with username and password") from None

    def dumps(self) -> str:
        return json.dumps({"username": self.username, "password": self.password})


def service_database_credentials(settings: Settings) -> RefreshingSecret | None:
    """With SECRETS_SOURCE=store the service logs in as whichever user the last rotation made current."""
    if settings.secrets_source != "store":
        return None
    return RefreshingSecret(secret_reader_for(settings), database_credentials_secret_name(settings),
                            refresh_s=settings.secret_refresh_s)


def service_openai_api_key(settings: Settings) -> str | Callable[[], str]:
    """The OpenAI key, or (SECRETS_SOURCE=store) a provider the OpenAI client calls before each request."""
    fallback = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if settings.secrets_source != "store":
        if fallback is None:
            raise SecretSourceError("OPENAI_API_KEY is not set")
        return fallback
    secret = RefreshingSecret(secret_reader_for(settings), openai_api_key_secret_name(settings),
                              refresh_s=settings.secret_refresh_s)

    def current_key() -> str:
        value = secret.get() or fallback
        if value is None:
            raise SecretSourceError(f"secret {secret.name!r} does not exist and OPENAI_API_KEY is not set")
        return value

    return current_key
