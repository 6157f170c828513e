"""Backup domain: manifests, checksummed streams and the grandfather-father-son retention policy.

No Prefect and no I/O to Postgres here: the tasks in tasks/databases.py and tasks/storage.py use these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from pydantic import BaseModel

from app.core.models import BackupStatus

CHUNK = 1024 * 1024


class BackupManifest(BaseModel):
    """Everything a restore drill needs to prove a dump is the database it claims to be."""

    backup_id: str
    format: str = "pg_dump custom (-Fc)"
    database: dict[str, Any]  # host, port, dbname, user: never a password
    server_version: str
    pg_dump_version: str
    started_at: datetime
    finished_at: datetime | None = None
    bytes: int | None = None
    sha256: str | None = None
    object_name: str
    row_counts: dict[str, int]
    tables_with_primary_key: list[str]
    schema_fingerprint: str


class ChecksumMismatch(ValueError):
    """The bytes read back are not the bytes that were written."""


class HashingReader:
    """Wraps a readable stream; hashes and counts what passes through."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def sha256_of_stream(stream: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


class HashingSink:
    """A write-only file object that hashes what is written to it (to check a download in one pass)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.bytes += len(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def schema_fingerprint(columns: Iterable[tuple[str, str, str, str, bool]]) -> str:
    """A hash of (schema, table, column, type, not null) rows, order-independent."""
    material = "\n".join("|".join(str(v) for v in row) for row in sorted(columns))
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class CatalogEntry:
    backup_id: str
    status: str
    finished_at: datetime | None
    drill_in_progress: bool = False
    last_restored_at: datetime | None = None


@dataclass
class RetentionPlan:
    keep: dict[str, str] = field(default_factory=dict)  # backup_id -> why
    prune: list[str] = field(default_factory=list)
    why_pruned: dict[str, str] = field(default_factory=dict)  # backup_id -> why


def retention_plan(entries: list[CatalogEntry], *, now: datetime, daily: int, weekly: int, monthly: int,
                   keep_restored_days: int = 0) -> RetentionPlan:
    """Grandfather-father-son: the newest backup of each of the last `daily` days, `weekly` ISO weeks and
    `monthly` months. The newest verified backup, any backup a drill is reading and any backup a restore used
    in the last `keep_restored_days` days are always kept; each pruned backup says why it went."""
    plan = RetentionPlan()
    usable = sorted(
        (e for e in entries if e.status in BackupStatus.RESTORABLE and e.finished_at is not None),
        key=lambda e: e.finished_at, reverse=True,  # type: ignore[arg-type, return-value]
    )
    periods: dict[str, set[object]] = {"daily": set(), "weekly": set(), "monthly": set()}
    for entry in usable:
        finished = entry.finished_at
        assert finished is not None
        age_days = (now.date() - finished.date()).days
        keys = {
            "daily": (finished.date(), age_days < daily),
            "weekly": (tuple(finished.isocalendar())[:2], len(periods["weekly"]) < weekly),
            "monthly": ((finished.year, finished.month), len(periods["monthly"]) < monthly),
        }
        for kind, (key, in_window) in keys.items():
            if in_window and key not in periods[kind]:
                periods[kind].add(key)
                plan.keep.setdefault(entry.backup_id, kind)
    newest_verified = next((e for e in usable if e.status == BackupStatus.VERIFIED), None)
    if newest_verified is not None:
        plan.keep.setdefault(newest_verified.backup_id, "newest verified")
    for entry in usable:
        if entry.drill_in_progress:
            plan.keep.setdefault(entry.backup_id, "a drill is reading it")
        if entry.last_restored_at is not None and now - entry.last_restored_at < timedelta(days=keep_restored_days):
            plan.keep.setdefault(entry.backup_id, f"a restore used it on {entry.last_restored_at:%Y-%m-%d %H:%M} UTC")
    kept_of_day = {e.finished_at.date(): e.backup_id for e in reversed(usable)
                   if e.backup_id in plan.keep and e.finished_at}
    for entry in usable:
        if entry.backup_id in plan.keep:
            continue
        plan.prune.append(entry.backup_id)
        assert entry.finished_at is not None
        if (kept := kept_of_day.get(entry.finished_at.date())) is not None:
            plan.why_pruned[entry.backup_id] = (f"{kept} is the backup kept for {entry.finished_at:%Y-%m-%d} "
                                                f"({plan.keep[kept]})")
        else:
            plan.why_pruned[entry.backup_id] = (
                f"older than the {daily} daily backups kept, and not the newest of a week among the {weekly} weekly "
                f"or of a month among the {monthly} monthly ones")
    return plan
