"""Real faults for game days on a staging-like local stack (`make up`), and how each is undone.

Every inject task returns what its `restore_*` counterpart needs; each restore is idempotent and only
repairs what is still broken, so the game day's `finally` may call it after the runbook already fixed it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from app.core.api_keys import issue_key, list_keys, revoke_key
from app.core.db import create_db_engine, session_scope
from app.core.models import BackupCatalog
from app.rag.vector_index.edge import EdgeCollection
from app.settings import Settings
from devenv.__main__ import api_pid_file, cluster_for, start_api, start_postgres
from devenv.processes import running, stop_process
from tasks.databases import engine_for
from tasks.storage import backup_storage_for, dump_name

MISSING_GENERATION = "game-day-missing-generation"


class FaultNotInjectable(RuntimeError):
    """The stack does not offer what the scenario breaks (e.g. an external database cannot be stopped from here)."""


# service-down: the API process stops.
@task(name="stop-api-process", cache_policy=NO_CACHE)
def stop_api_process(settings: Settings) -> None:
    if not running(api_pid_file(settings)):
        raise FaultNotInjectable(f"no API process of `make up` is running ({api_pid_file(settings)})")
    stop_process(api_pid_file(settings), signals=1)


@task(name="restore-api-process", cache_policy=NO_CACHE)
def restore_api_process(settings: Settings) -> None:
    if not running(api_pid_file(settings)):
        start_api(settings)


# database-down: the embedded Postgres cluster stops.
@task(name="stop-postgres", cache_policy=NO_CACHE)
def stop_postgres(settings: Settings) -> None:
    if not settings.uses_embedded_postgres or not cluster_for(settings).is_running():
        raise FaultNotInjectable("database-down needs the running embedded cluster of `make up` (DATABASE_URL unset)")
    cluster_for(settings).stop(mode="fast")


@task(name="restore-postgres", cache_policy=NO_CACHE)
def restore_postgres(settings: Settings) -> None:
    if settings.uses_embedded_postgres and not cluster_for(settings).is_running():
        start_postgres(settings)


# error-burst: the index's CURRENT pointer names a generation that does not exist.
def _edge_collection(settings: Settings) -> EdgeCollection:
    if settings.vector_backend != "edge":
        raise FaultNotInjectable("error-burst moves the embedded index's CURRENT pointer: VECTOR_BACKEND=edge only")
    return EdgeCollection(settings.resolved_index_dir, settings.collection_name())


@task(name="point-index-at-missing-generation", cache_policy=NO_CACHE)
def point_index_at_missing_generation(settings: Settings) -> str:
    collection = _edge_collection(settings)
    pointer = collection.read_pointer()
    if not pointer:
        raise FaultNotInjectable(f"the index {collection.root} has no CURRENT generation to move")
    collection.write_pointer(MISSING_GENERATION)
    return pointer["generation"]


@task(name="restore-index-pointer", cache_policy=NO_CACHE)
def restore_index_pointer(settings: Settings, generation: str) -> None:
    collection = _edge_collection(settings)
    if (collection.read_pointer() or {}).get("generation") == MISSING_GENERATION:
        collection.write_pointer(generation)


# latency: a session takes query_log's lock again and again (a runaway batch job, a migration retried in a loop):
# every chat request's write waits for it, so requests really take seconds and complete slowly.
@dataclass
class TableLockHolder:
    """A thread whose own connection holds `table` in ACCESS EXCLUSIVE mode for `hold_s`, releases it briefly, and
    takes it again, until stopped or until its backend is terminated (it does not reconnect)."""

    engine: Any
    table: str = "query_log"
    hold_s: float = 9.0
    backend_pid: int | None = None
    ended_by: str | None = None  # "terminated" (its backend was killed) or "stopped"
    _stop: threading.Event = field(default_factory=threading.Event)
    _holding: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            with self.engine.connect() as conn:
                self.backend_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                while not self._stop.is_set():
                    conn.execute(text(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE"))
                    self._holding.set()
                    conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": self.hold_s})
                    conn.commit()
                    self._stop.wait(0.05)  # the waiting writes go through, then it takes the lock again
            self.ended_by = "stopped"
        except DBAPIError:
            self.ended_by = "stopped" if self._stop.is_set() else "terminated"
        finally:
            self._holding.set()  # whoever waits for the first hold must not wait for a thread that ended

    def start(self, timeout_s: float = 30) -> TableLockHolder:
        self._thread = threading.Thread(target=self._run, name="game-day-lock-holder", daemon=True)
        self._thread.start()
        if not self._holding.wait(timeout_s) or self.ended_by:
            raise FaultNotInjectable(f"could not lock {self.table}: the holder ended ({self.ended_by or 'timed out'})")
        return self

    def stop(self, timeout_s: float = 30) -> None:
        """Ends it after its current hold (terminate its backend first to end it now)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=timeout_s)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())


@task(name="hold-query-log-lock", cache_policy=NO_CACHE)
def hold_query_log_lock(settings: Settings, hold_s: float = 9.0) -> TableLockHolder:
    engine = create_db_engine(settings.model_copy(update={"db_pool_size": 1}))
    return TableLockHolder(engine, hold_s=hold_s).start()


@task(name="release-query-log-lock", cache_policy=NO_CACHE)
def release_query_log_lock(settings: Settings, holder: TableLockHolder) -> None:
    """Stop the holder; if the runbook did not terminate its backend, terminate it now (it may be in a 9 s sleep)."""
    holder.stop(timeout_s=0)  # first: its backend killed from here on counts as stopped, not as the runbook's doing
    if holder.alive and holder.backend_pid is not None:
        with engine_for(settings).connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder.backend_pid})
            conn.commit()
    holder.stop()
    holder.engine.dispose()
    if holder.alive:
        raise RuntimeError(f"the lock holder (backend {holder.backend_pid}) is still running")


# backup-broken: the newest backup's dump is damaged in storage.
@dataclass
class DamagedBackup:
    backup_id: str
    storage: str
    original: Path  # a copy of the intact dump, put back by restore_backup_object


@task(name="damage-newest-backup", cache_policy=NO_CACHE)
def damage_newest_backup(settings: Settings) -> DamagedBackup:
    """Flip bytes in the middle of the newest completed (or verified) backup's dump, keeping an intact copy."""
    with session_scope(engine_for(settings)) as db:
        row = db.exec(select(BackupCatalog).where(col(BackupCatalog.status).in_(["completed", "verified"]))
                      .order_by(col(BackupCatalog.finished_at).desc()).limit(1)).first()
        if row is None:
            raise FaultNotInjectable("no completed backup to damage: run `python -m flows.backup_database` first")
        backup_id, storage_name = row.backup_id, row.storage
    store = backup_storage_for(settings.model_copy(update={"backup_storage": storage_name}))
    workdir = Path(tempfile.mkdtemp(prefix="game-day-backup-"))
    # Local storage "downloads" by returning the stored file itself: copy it before damaging the stored one.
    original = workdir / "intact.dump"
    shutil.copyfile(store.download(dump_name(backup_id), workdir / "stored.dump"), original)
    data = bytearray(original.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    damaged = workdir / "damaged.dump"
    damaged.write_bytes(bytes(data))
    with open(damaged, "rb") as stream:
        store.write_stream(dump_name(backup_id), stream)
    return DamagedBackup(backup_id, storage_name, original)


@task(name="restore-backup-object", cache_policy=NO_CACHE)
def restore_backup_object(settings: Settings, damaged: DamagedBackup) -> None:
    store = backup_storage_for(settings.model_copy(update={"backup_storage": damaged.storage}))
    with open(damaged.original, "rb") as stream:
        store.write_stream(dump_name(damaged.backup_id), stream)
    shutil.rmtree(damaged.original.parent, ignore_errors=True)  # the game day's own temporary folder


# secret-leaked: a client's API key is declared leaked while another client keeps using the service.
@dataclass
class LeakedKey:
    leaked_id: int
    leaked_key: str
    bystander_id: int
    bystander_key: str


@task(name="issue-game-day-keys", cache_policy=NO_CACHE)
def issue_game_day_keys(settings: Settings, run_tag: str) -> LeakedKey:
    engine = engine_for(settings)
    leaked = issue_key(engine=engine, name=f"game-day-leaked-{run_tag}", scopes=["chat"], expires_in_days=1)
    bystander = issue_key(engine=engine, name=f"game-day-bystander-{run_tag}", scopes=["chat"], expires_in_days=1)
    return LeakedKey(leaked.id, leaked.key, bystander.id, bystander.key)


@task(name="revoke-game-day-keys", cache_policy=NO_CACHE)
def revoke_game_day_keys(settings: Settings, run_tag: str) -> list[int]:
    """Revoke every key this game day made: the leaked one, the bystander's, and the successor the rotation issued."""
    engine = engine_for(settings)
    mine = [key.id for key in list_keys(engine=engine) if key.name.endswith(f"-{run_tag}") and key.revoked_at is None]
    for key_id in mine:
        revoke_key(engine=engine, key_id=key_id)
    return mine


CHAT_QUESTION = "What is the Zero Moment Point and why does it matter for walking?"


@dataclass
class Traffic:
    """Readers' chat requests in a background thread, bounded in count, until stopped; counts the answers."""

    base_url: str
    api_key: str | None = None
    interval_s: float = 0.1
    max_requests: int = 5000
    timeout_s: float = 10.0
    codes: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        with httpx.Client(base_url=self.base_url, timeout=self.timeout_s, headers=headers) as client:
            for _ in range(self.max_requests):
                if self._stop.is_set():
                    return
                try:
                    code = client.post("/v1/chat", json={"question": CHAT_QUESTION}).status_code
                except httpx.HTTPError:
                    code = 0  # refused or timed out
                self.codes[code] = self.codes.get(code, 0) + 1
                time.sleep(self.interval_s)

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="game-day-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[int, int]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.timeout_s + 20)
        return dict(self.codes)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)
