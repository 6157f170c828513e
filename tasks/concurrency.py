"""Prefect global concurrency limits the operations flows rely on, declared in code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

# name -> slots. Two backups never run at once; retention and drills take turns on the catalog.
LIMITS = {"backup-database": 1, "backup-catalog": 1}


def ensure_concurrency_limits() -> None:
    with get_client(sync_client=True) as client:
        for name, slots in LIMITS.items():
            client.upsert_global_concurrency_limit_by_name(name, slots)


@contextmanager
def exclusive(name: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the only slot of a declared limit (created if missing) for the block."""
    ensure_concurrency_limits()
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield
