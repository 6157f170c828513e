"""Where backups live: a local folder (default) or S3 through prefect-aws's S3Bucket block.

Objects are written under a temporary name, read back and checked, and only then given their final
name. A reader never sees a final object that is not complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Protocol

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.ops.backups import CHUNK, ChecksumMismatch, HashingReader, HashingSink, sha256_of_stream
from app.settings import Settings
from tasks.aws import aws_credentials

INCOMING = ".incoming"


class BackupStorage(Protocol):
    kind: str

    def write_stream(self, name: str, stream: BinaryIO) -> None: ...

    def sha256(self, name: str) -> tuple[str, int]: ...

    def promote(self, temp_name: str, final_name: str) -> str: ...

    def delete(self, name: str) -> None: ...

    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def download(self, name: str, destination: Path) -> Path: ...

    def location(self, name: str) -> str: ...


class LocalBackupStorage:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def write_stream(self, name: str, stream: BinaryIO) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())

    def sha256(self, name: str) -> tuple[str, int]:
        with open(self._path(name), "rb") as stream:
            return sha256_of_stream(stream)

    def promote(self, temp_name: str, final_name: str) -> str:
        os.replace(self._path(temp_name), self._path(final_name))
        return self.location(final_name)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def download(self, name: str, destination: Path) -> Path:
        return self._path(name)  # already local: read in place

    def location(self, name: str) -> str:
        return str(self._path(name))


class S3BackupStorage:
    kind = "s3"

    def __init__(self, bucket: object) -> None:
        from prefect_aws import S3Bucket

        assert isinstance(bucket, S3Bucket)
        self.bucket = bucket

    def _key(self, name: str) -> str:
        return f"{self.bucket.bucket_folder.rstrip('/')}/{name}" if self.bucket.bucket_folder else name

    def _client(self):
        return self.bucket.credentials.get_s3_client()

    def write_stream(self, name: str, stream: BinaryIO) -> None:
        self.bucket.upload_from_file_object(stream, name)

    def sha256(self, name: str) -> tuple[str, int]:
        sink = HashingSink()
        self.bucket.download_object_to_file_object(name, sink)  # type: ignore[arg-type]
        return sink.sha256, sink.bytes

    def promote(self, temp_name: str, final_name: str) -> str:
        self.bucket.copy_object(temp_name, final_name)
        self.delete(temp_name)
        return self.location(final_name)

    def delete(self, name: str) -> None:
        self._client().delete_object(Bucket=self.bucket.bucket_name, Key=self._key(name))

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client().head_object(Bucket=self.bucket.bucket_name, Key=self._key(name))
            return True
        except ClientError:
            return False

    def names(self) -> list[str]:
        prefix = self._key("")
        keys = [o["Key"] for o in self.bucket.list_objects()]
        return sorted(k[len(prefix):] if prefix and k.startswith(prefix) else k for k in keys)

    def download(self, name: str, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        self.bucket.download_object_to_path(name, destination)
        return destination

    def location(self, name: str) -> str:
        return f"s3://{self.bucket.bucket_name}/{self._key(name)}"


def backup_storage_for(settings: Settings) -> BackupStorage:
    if settings.backup_storage == "s3":
        from prefect_aws import S3Bucket

        bucket = S3Bucket(bucket_name=settings.backup_s3_bucket, credentials=aws_credentials(settings),
                          bucket_folder=settings.backup_s3_prefix)
        return S3BackupStorage(bucket)
    return LocalBackupStorage(settings.resolved_backup_dir)


def dump_name(backup_id: str) -> str:
    return f"{backup_id}.dump"


def manifest_name(backup_id: str) -> str:
    return f"{backup_id}.manifest.json"


def incoming_name(name: str) -> str:
    return f"{INCOMING}/{name}"


@task(name="verify-and-finalize-object", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def verify_and_finalize(storage: BackupStorage, temp_name: str, final_name: str, sha256: str, size: int) -> str:
    """Read the stored object back; only a byte-exact copy gets its final name."""
    stored_sha, stored_bytes = storage.sha256(temp_name)
    if (stored_sha, stored_bytes) != (sha256, size):
        raise ChecksumMismatch(
            f"stored object {temp_name} has sha256 {stored_sha[:12]}… ({stored_bytes} bytes), "
            f"expected {sha256[:12]}… ({size} bytes); not finalized"
        )
    location = storage.promote(temp_name, final_name)
    get_run_logger().info("finalized %s (%d bytes, sha256 %s)", location, size, sha256)
    return location


@task(name="store-manifest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def store_manifest(storage: BackupStorage, backup_id: str, manifest_json: bytes) -> str:

    temp, final = incoming_name(manifest_name(backup_id)), manifest_name(backup_id)
    storage.write_stream(temp, io.BytesIO(manifest_json))
    return verify_and_finalize.fn(storage, temp, final, hashlib.sha256(manifest_json).hexdigest(), len(manifest_json))


@task(name="delete-backup-objects", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def delete_backup_objects(storage: BackupStorage, backup_ids: list[str]) -> None:
    """Remove backups' dumps and manifests, final or temporary (idempotent)."""
    for backup_id in backup_ids:
        for name in (dump_name(backup_id), manifest_name(backup_id)):
            storage.delete(name)
            storage.delete(incoming_name(name))


@task(name="download-backup", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, timeout_seconds=3600)
def download_backup(storage: BackupStorage, backup_id: str, workdir: Path) -> Path:
    return storage.download(dump_name(backup_id), workdir / dump_name(backup_id))


@task(name="verify-backup-checksum", cache_policy=NO_CACHE)
def verify_backup_checksum(path: Path, expected_sha256: str) -> None:
    with open(path, "rb") as stream:
        actual, _ = sha256_of_stream(stream)
    if actual != expected_sha256:
        raise ChecksumMismatch(f"checksum mismatch: {path.name} has sha256 {actual[:16]}…, "
                               f"the catalog says {expected_sha256[:16]}…")


__all__ = ["BackupStorage", "HashingReader", "LocalBackupStorage", "S3BackupStorage", "backup_storage_for"]
