"""Prefect global concurrency limits the operations flows rely on, declared in code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.settings import PREFECT_API_URL

# name -> slots. Two backups never run at once; retention and drills take turns on the catalog; one docs
# deploy at a time (they share the publish repository and would race on gh-pages).
LIMITS = {"backup-database": 1, "backup-catalog": 1, "deploy-docs": 1}


_ensured_for: set[str] = set()


def ensure_concurrency_limits() -> None:
    """Create or update the declared limits, once per process and Prefect API."""
    api = str(PREFECT_API_URL.value())
    if api in _ensured_for:
        return
    with get_client(sync_client=True) as client:
        for name, slots in LIMITS.items():
            client.upsert_global_concurrency_limit_by_name(name, slots)
    _ensured_for.add(api)


@contextmanager
def exclusive(*names: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the only slot of each named limit (created if missing) for the block, acquired at once."""
    unknown = set(names) - set(LIMITS)
    if unknown:
        raise ValueError(f"undeclared concurrency limits: {sorted(unknown)}")
    ensure_concurrency_limits()
    with concurrency(list(names), occupy=1, timeout_seconds=timeout_s, strict=True):
        yield
