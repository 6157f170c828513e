"""Tasks that call OpenAI's HTTP API (or a compatible server at OPENAI_BASE_URL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from tasks.secrets import CredentialRejected, unless_rejected


@task(name="verify-openai-key", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=unless_rejected)
def verify_openai_key(base_url: str, key: SecretStr) -> int:
    """A cheap authenticated call: GET /models. Returns how many models the key can see."""
    response = httpx.get(f"{base_url.rstrip('/')}/models",
                         headers={"Authorization": f"Bearer {key.get_secret_value()}"}, timeout=10)
    if response.status_code in (401, 403):
        raise CredentialRejected(f"OpenAI rejected the new key ({response.status_code}); the old key stays current")
    response.raise_for_status()
    return len(response.json().get("data", []))


@task(name="fetch-openai-organization-costs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=unless_rejected)
def fetch_openai_costs(base_url: str, admin_key: SecretStr, start: date, end: date) -> Decimal:
    """USD OpenAI billed the organization from `start` to `end` (exclusive): GET /organization/costs, daily buckets."""
    params: dict[str, str | int] = {
        "start_time": int(datetime.combine(start, time(), UTC).timestamp()),
        "end_time": int(datetime.combine(end, time(), UTC).timestamp()), "bucket_width": "1d", "limit": 31,
    }
    headers = {"Authorization": f"Bearer {admin_key.get_secret_value()}"}
    total = Decimal(0)
    with httpx.Client(timeout=20) as client:
        while True:
            response = client.get(f"{base_url.rstrip('/')}/organization/costs", params=params, headers=headers)
            if response.status_code in (401, 403):
                raise CredentialRejected(f"OpenAI refused the admin key for the costs API ({response.status_code})")
            response.raise_for_status()
            page = response.json()
            for bucket in page.get("data", []):
                for result in bucket.get("results", []):
                    amount = result.get("amount") or {}
                    if str(amount.get("currency", "usd")).lower() != "usd":
                        raise ValueError(f"OpenAI reported a cost in {amount.get('currency')}, not USD")
                    total += Decimal(str(amount.get("value", 0)))
            if not page.get("has_more"):
                return total
            params["page"] = page["next_page"]
