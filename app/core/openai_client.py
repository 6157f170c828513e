"""The one factory for OpenAI clients (answers, embeddings): key from settings or the secret store."""

from __future__ import annotations

from typing import Any

from app.core.secret_source import SecretSourceError, service_openai_api_key


def create_openai_client(settings: Any) -> Any:
    from openai import OpenAI, OpenAIError

    key = service_openai_api_key(settings)
    if callable(key):
        read_key = key

        def key() -> str:  # an unreadable store is an OpenAI failure: answers fall back to extractive ones
            try:
                return read_key()
            except SecretSourceError as exc:
                raise OpenAIError(f"the OpenAI key is unavailable: {exc}") from None

    return OpenAI(api_key=key, base_url=settings.openai_base_url, timeout=settings.openai_timeout_s,
                  max_retries=settings.openai_max_retries)
