"""rotate-openai-key: replace the OpenAI API key without downtime, following AWS's rotation steps.

When it runs: on demand, after an operator created a new key in OpenAI's dashboard and put it in a Prefect Secret
block (the deployment's `new_key_block`, default `textbook-ops-openai-api-key-incoming`), or through this module's
CLI, which reads the key from a prompt or stdin into a staging block and deletes that block after a success.
What it does, in order: read the new key from the block named by `new_key_block` (a missing or empty block is
refused before any work) -> read the current version -> audit `started` -> stage the new key as the pending
version -> test it with a cheap authenticated call (GET /v1/models at OPENAI_BASE_URL) -> promote it to
current (the old one stays readable as previous) -> audit `completed`. If the test fails the pending
version is discarded, the old key stays current, and the run fails with the reason. Values never appear in
parameters, logs, artifacts or the audit table: only block names and version ids.

Runbook: runbooks/secret-rotation.md.
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from pydantic import SecretStr

from app.core.secret_source import openai_api_key_secret_name
from app.settings import Settings, get_settings
from flows.cli import InvalidParameter, flow_parser, run_cli
from flows.parameters import BlockName, secret_block_value
from tasks.openai_api import verify_openai_key
from tasks.run_records import audited_rotation
from tasks.secrets import (
    SecretStoreError,
    current_version_id,
    discard_pending_secret,
    promote_secret,
    secret_store_for,
    stage_secret,
)


@flow(name="rotate-openai-key", log_prints=True)
def rotate_openai_key(new_key_block: BlockName) -> dict:
    """Stage, verify and promote the new OpenAI key held in the Prefect Secret block `new_key_block` (parameters
    are shown in the UI's Parameters tab: they name a secret, never carry it)."""
    new_key = secret_block_value("new_key_block", new_key_block)
    logger = get_run_logger()
    settings = get_settings()
    store = secret_store_for(settings)
    name = openai_api_key_secret_name(settings)
    try:
        old_version = current_version_id(store, name)
    except SecretStoreError:
        old_version = None  # first key
    with audited_rotation(settings, secret_name=name, backend=store.backend, old_version_id=old_version) as rotation:
        try:
            rotation.new_version_id = stage_secret(store, name, new_key)
            models = verify_openai_key(settings.openai_base_url, store.pending(name).value)
            promote_secret(store, name, rotation.new_version_id)
        except Exception:
            discard_pending_secret(store, name)
            raise
    new_version = rotation.new_version_id
    logger.info("rotated %s: version %s is current (it sees %d models); %s is previous", name, new_version, models,
                old_version or "-")
    return {"secret": name, "old_version_id": old_version, "new_version_id": new_version}


def staging_block_name(settings: Settings, now: datetime | None = None) -> str:
    return f"{openai_api_key_secret_name(settings)}-staged-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S-%f}"


def read_new_key() -> SecretStr:
    """From a prompt that does not echo, or from stdin when it is not a terminal (`... < key.txt`)."""
    value = getpass.getpass("new OpenAI key: ") if sys.stdin.isatty() else sys.stdin.readline()
    if not value.strip():
        raise InvalidParameter("no new key given (type it at the prompt, or pipe it on stdin)")
    return SecretStr(value.strip())


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.rotate_openai_key", __doc__)
    parser.add_argument("--new-key-block", type=str,
                        help="a Prefect Secret block that already holds the new key (kept after the run); without "
                             "it the key is read from the prompt or stdin into a staging block, deleted after a "
                             "successful rotation")
    args = parser.parse_args(argv)
    if args.new_key_block:
        result = rotate_openai_key(new_key_block=args.new_key_block)
    else:
        from prefect.blocks.system import Secret

        staged = staging_block_name(get_settings())
        Secret(value=read_new_key()).save(staged)
        try:
            result = rotate_openai_key(new_key_block=staged)
        except BaseException:
            print(f"the new key stays in the Secret block {staged} (re-run with --new-key-block {staged}, or "
                  "delete it: Prefect UI -> Blocks)", file=sys.stderr)
            raise
        Secret.delete(staged)
    print(f"{result['secret']}: version {result['new_version_id']} is current")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
