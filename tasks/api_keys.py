"""Tasks on the service's API keys (the `api_key` table)."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from app.core.api_keys import IssuedKey, revoke_expired_keys, rotate_key
from app.settings import Settings
from tasks.databases import engine_for, retry_unless_rejected


@task(name="revoke-expired-api-keys", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_rejected)
def revoke_expired_api_keys(settings: Settings) -> list[int]:
    return revoke_expired_keys(engine=engine_for(settings))


@task(name="issue-successor-api-key", cache_policy=NO_CACHE)
def issue_successor_key(settings: Settings, key_id: int, grace_hours: float) -> tuple[IssuedKey, datetime]:
    """Not retried: a retry after a lost answer would issue a second key."""
    return rotate_key(engine=engine_for(settings), key_id=key_id, grace=timedelta(hours=grace_hours))
