"""rotate-api-key: replace a service API key, keeping the old one valid for a grace period.

When it runs: on demand (a client's key is due, or leaked: then use grace_hours=0). The hourly
`revoke-expired-api-keys` run revokes keys whose grace period has ended.
What it does, in order: revoke keys whose grace ended -> audit `started` -> issue a successor with the same name
and scopes and set the old key to expire after the grace period (one transaction) -> hand the new key over
through the secret store (`<prefix>-api-key-<name>`: the only copy; `python -m flows.rotate_api_key` prints it once)
-> audit `completed`. If the hand-over fails, the new key is revoked and the old one keeps its expiry.

Runbook: runbooks/secret-rotation.md.
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger
from pydantic import SecretStr

from app.core.api_keys import revoke_key
from app.core.secret_source import api_key_secret_name
from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import ApiKeyId, GraceHours
from tasks.api_keys import issue_successor_key, revoke_expired_api_keys
from tasks.databases import engine_for
from tasks.run_records import audited_rotation
from tasks.secrets import promote_secret, secret_store_for, stage_secret


@flow(name="revoke-expired-api-keys")
def revoke_expired_api_keys_flow() -> list[int]:
    """Revoke every API key whose expiry or rotation grace period has passed."""
    revoked = revoke_expired_api_keys(get_settings())
    get_run_logger().info("revoked %d API key(s) whose grace period ended: %s", len(revoked), revoked or "-")
    return revoked


@flow(name="rotate-api-key", log_prints=True)
def rotate_api_key(key_id: ApiKeyId, grace_hours: GraceHours | None = None) -> dict:
    """Issue a successor for API key `key_id`; the old key stays valid for `grace_hours` (default 24)."""
    logger = get_run_logger()
    settings = get_settings()
    grace = settings.api_key_rotation_grace_h if grace_hours is None else grace_hours
    revoke_expired_api_keys(settings)
    store = secret_store_for(settings)
    with audited_rotation(settings, secret_name=f"api-key:{key_id}", backend=store.backend,
                          old_version_id=f"key {key_id}") as rotation:
        issued, old_key_ends = issue_successor_key(settings, key_id, grace)
        rotation.shown_as = f"api-key:{issued.name}"
        name = api_key_secret_name(settings, issued.name)
        try:
            promote_secret(store, name, stage_secret(store, name, SecretStr(issued.key)))
        except Exception:
            revoke_key(engine=engine_for(settings), key_id=issued.id)
            rotation.new_version_id = f"key {issued.id} (revoked)"
            rotation.undone = f"the new key could not be handed over: key {issued.id} was revoked"
            raise
        rotation.new_version_id = f"key {issued.id}"
        rotation.outcome = f"completed: key {key_id} stays valid until {old_key_ends:%Y-%m-%d %H:%M} UTC"
    logger.info("API key %s (%s) replaced by key %s; the new key is in secret %s; key %s expires at %s",
                key_id, issued.name, issued.id, name, key_id, old_key_ends.isoformat())
    return {"old_key_id": key_id, "new_key_id": issued.id, "name": issued.name, "secret": name,
            "old_key_valid_until": old_key_ends.isoformat()}


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.rotate_api_key", __doc__)
    parser.add_argument("key_id", type=int, help="the id of the key to replace (python -m app keys list)")
    parser.add_argument("--grace-hours", type=float, default=None, help="how long the old key stays valid (default 24)")
    args = parser.parse_args(argv)
    result = rotate_api_key(key_id=args.key_id, grace_hours=args.grace_hours)
    new_key = secret_store_for(get_settings()).current(result["secret"]).value.get_secret_value()
    print(f"key {result['new_key_id']} ({result['name']}), shown once:\n{new_key}\n"
          f"key {result['old_key_id']} stays valid until {result['old_key_valid_until']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
