"""Service API keys: shown once, stored only as a sha256 hash, with scopes, expiry and revocation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.core.db import session_scope
from app.core.models import ApiKey

KEY_PREFIX = "tbo_"
SCOPES = ("chat", "admin")


class InvalidApiKey(Exception):
    """No such key, or it is revoked or expired."""


class MissingScope(Exception):
    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


@dataclass(frozen=True)
class IssuedKey:
    id: int
    name: str
    key: str  # shown once
    scopes: list[str]
    expires_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(*, engine: Engine, name: str, scopes: list[str], expires_in_days: int | None = None) -> IssuedKey:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    if expires_in_days is not None and expires_in_days < 1:
        raise ValueError(f"expires_in_days must be 1 or more (None for never); got {expires_in_days}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None
    with session_scope(engine) as db:
        row = ApiKey(name=name, key_prefix=key[:12], key_hash=hash_key(key), scopes=sorted(set(scopes)),
                     expires_at=expires)
        db.add(row)
        db.flush()
        assert row.id is not None
        return IssuedKey(id=row.id, name=name, key=key, scopes=row.scopes, expires_at=expires)


def authenticate(*, engine: Engine, key: str) -> ApiKey:
    with Session(engine) as db:
        row = db.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise InvalidApiKey
    return row


def list_keys(*, engine: Engine) -> list[ApiKey]:
    with Session(engine) as db:
        return list(db.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke_key(*, engine: Engine, key_id: int) -> bool:
    with session_scope(engine) as db:
        row = db.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        db.add(row)
        return True


def rotate_key(*, engine: Engine, key_id: int, grace: timedelta) -> tuple[IssuedKey, datetime]:
    """Issue a successor with the same name and scopes; the old key stays valid for `grace`, then expires.

    One transaction: either both changes happen or neither. Returns the new key and the old key's end of grace.
    """
    now = datetime.now(UTC)
    with session_scope(engine) as db:
        old = db.exec(select(ApiKey).where(ApiKey.id == key_id).with_for_update()).first()
        if old is None:
            raise InvalidApiKey(f"no API key with id {key_id}")
        if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
            raise InvalidApiKey(f"API key {key_id} is already revoked or expired: issue a new one with `keys create`")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        new = ApiKey(name=old.name, key_prefix=key[:12], key_hash=hash_key(key), scopes=old.scopes)
        ends = min(now + grace, old.expires_at) if old.expires_at else now + grace
        old.expires_at = ends
        db.add_all([old, new])
        db.flush()
        assert new.id is not None
        return IssuedKey(id=new.id, name=new.name, key=key, scopes=new.scopes, expires_at=None), ends


def revoke_expired_keys(*, engine: Engine) -> list[int]:
    """Mark keys whose expiry (or rotation grace) has passed as revoked. Returns their ids."""
    now = datetime.now(UTC)
    with session_scope(engine) as db:
        rows = db.exec(select(ApiKey).where(col(ApiKey.revoked_at).is_(None), col(ApiKey.expires_at) <= now)).all()
        for row in rows:
            row.revoked_at = now
            db.add(row)
        return [row.id for row in rows if row.id is not None]
