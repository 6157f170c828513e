"""Tasks that call OpenAI's HTTP API (or a compatible server at OPENAI_BASE_URL)."""

from __future__ import annotations

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr


class CredentialRejected(RuntimeError):
    """The service refused the new credential."""


@task(name="verify-openai-key", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=lambda task, run, state: not isinstance(state.result(raise_on_failure=False), CredentialRejected))
def verify_openai_key(base_url: str, key: SecretStr) -> int:
    """A cheap authenticated call: GET /models. Returns how many models the key can see."""
    response = httpx.get(f"{base_url.rstrip('/')}/models",
                         headers={"Authorization": f"Bearer {key.get_secret_value()}"}, timeout=10)
    if response.status_code in (401, 403):
        raise CredentialRejected(f"OpenAI rejected the new key ({response.status_code}); the old key stays current")
    response.raise_for_status()
    return len(response.json().get("data", []))
