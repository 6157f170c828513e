"""rotate-openai-key: replace the OpenAI API key without downtime, following AWS's rotation steps.

When it runs: on demand, after an operator created a new key in OpenAI's dashboard.
What it does, in order: read the current version -> audit `started` -> stage the new key as the pending
version -> test it with a cheap authenticated call (GET /v1/models at OPENAI_BASE_URL) -> promote it to
current (the old one stays readable as previous) -> audit `completed`. If the test fails the pending
version is discarded, the old key stays current, and the run fails with the reason. Values never appear in
logs, artifacts or the audit table: only version ids.

Runbook: runbooks/secret-rotation.md.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import SecretStr

from app.secret_source import openai_api_key_secret_name
from app.settings import get_settings
from flows.cli import ON_THE_SERVER, run_cli
from flows.parameters import BlockName
from tasks.openai_api import verify_openai_key
from tasks.postgres import audit_rotation_finish, audit_rotation_start
from tasks.reports import rotation_report
from tasks.secrets import (
    SecretStoreError,
    current_version_id,
    discard_pending_secret,
    promote_secret,
    secret_store_for,
    stage_secret,
)


@flow(name="rotate-openai-key", log_prints=True)
def rotate_openai_key(new_key: SecretStr | None = None, new_key_block: BlockName | None = None) -> dict:
    """Stage, verify and promote a new OpenAI key (given directly, or in a Prefect Secret block by name)."""
    logger = get_run_logger()
    settings = get_settings()
    if new_key is None:
        if not new_key_block:
            raise ValueError("give the new key (new_key) or the name of a Secret block holding it (new_key_block)")
        from prefect.blocks.system import Secret

        new_key = SecretStr(str(Secret.load(new_key_block).get()))
    store = secret_store_for(settings)
    name = openai_api_key_secret_name(settings)
    try:
        old_version = current_version_id(store, name)
    except SecretStoreError:
        old_version = None  # first key
    audit_id = audit_rotation_start(settings, secret_name=name, backend=store.backend, old_version_id=old_version,
                                    flow_run_id=str(flow_run.id) if flow_run.id else None)
    new_version = None
    try:
        new_version = stage_secret(store, name, new_key)
        models = verify_openai_key(settings.openai_base_url, store.pending(name).value)
        promote_secret(store, name, new_version)
    except Exception as exc:
        discard_pending_secret(store, name)
        audit_rotation_finish(settings, audit_id, status="failed", new_version_id=new_version,
                              error=f"{exc.__class__.__name__}: {exc}")
        rotation_report(name, store.backend, old_version, new_version, f"failed: {exc}")
        raise
    audit_rotation_finish(settings, audit_id, status="completed", new_version_id=new_version)
    logger.info("rotated %s: version %s is current (it sees %d models); %s is previous", name, new_version, models,
                old_version or "-")
    rotation_report(name, store.backend, old_version, new_version, "completed")
    return {"secret": name, "old_version_id": old_version, "new_version_id": new_version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.rotate_secrets", description=__doc__.split("\n")[0],
                                     epilog=ON_THE_SERVER)
    parser.add_argument("--new-key-block", help="a Prefect Secret block holding the new key (else read from stdin)")
    args = parser.parse_args(argv)
    key = None if args.new_key_block else SecretStr(getpass.getpass("new OpenAI key: ").strip())
    result = rotate_openai_key(new_key=key, new_key_block=args.new_key_block)
    print(f"{result['secret']}: version {result['new_version_id']} is current")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
