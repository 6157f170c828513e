"""Where secrets live: Prefect Secret blocks (default) or AWS Secrets Manager (through prefect-aws).

Both follow AWS's rotation steps: stage a pending version, test it, then promote it to current while the
previous one stays readable. Version ids identify values in logs and the audit table; values never leave here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from app.core.secret_source import quiet_aws_loggers
from app.settings import Settings
from tasks.aws import aws_credentials


class SecretStoreError(RuntimeError):
    """The secret store is unreachable, or the secret is missing or malformed."""


class CredentialRejected(RuntimeError):
    """The target system refused the new credential."""


def unless_rejected(task: object, run: object, state: Any) -> bool:
    """A retry condition: retry transient failures, never a refused credential."""
    return not isinstance(state.result(raise_on_failure=False), CredentialRejected)


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    value: SecretStr


class SecretStore(Protocol):
    backend: str

    def current(self, name: str) -> SecretVersion: ...

    def stage(self, name: str, value: SecretStr) -> str: ...

    def pending(self, name: str) -> SecretVersion: ...

    def previous(self, name: str) -> SecretVersion: ...

    def promote(self, name: str, version_id: str) -> None: ...

    def discard_pending(self, name: str) -> None: ...


class PrefectSecretStore:
    """One Secret block per stage: `<name>` (current), `<name>-pending`, `<name>-previous`."""

    backend = "prefect"

    def _load(self, block_name: str) -> SecretVersion:
        from prefect.blocks.system import Secret

        try:
            raw = Secret.load(block_name).get()
        except ValueError as exc:
            raise SecretStoreError(f"secret {block_name!r} does not exist in Prefect's Secret blocks") from exc
        document = raw if isinstance(raw, dict) else _json(raw, block_name)
        if not isinstance(document, dict) or not {"value", "version_id"} <= set(document):
            raise SecretStoreError(f"secret {block_name!r} is malformed: expected {{value, version_id}}")
        return SecretVersion(version_id=str(document["version_id"]), value=SecretStr(str(document["value"])))

    def _save(self, block_name: str, version: SecretVersion) -> None:
        from prefect.blocks.system import Secret

        Secret(value={"value": version.value.get_secret_value(), "version_id": version.version_id}).save(
            block_name, overwrite=True)

    def current(self, name: str) -> SecretVersion:
        return self._load(name)

    def stage(self, name: str, value: SecretStr) -> str:
        version_id = str(uuid.uuid4())
        self._save(f"{name}-pending", SecretVersion(version_id, value))
        return version_id

    def pending(self, name: str) -> SecretVersion:
        return self._load(f"{name}-pending")

    def previous(self, name: str) -> SecretVersion:
        return self._load(f"{name}-previous")

    def promote(self, name: str, version_id: str) -> None:
        pending = self.pending(name)
        if pending.version_id != version_id:
            raise SecretStoreError(f"the pending version of {name!r} is {pending.version_id}, not {version_id}")
        try:
            self._save(f"{name}-previous", self.current(name))
        except SecretStoreError:
            pass  # first value: nothing to keep
        self._save(name, pending)
        self.discard_pending(name)

    def discard_pending(self, name: str) -> None:
        from prefect.blocks.core import Block

        try:
            Block.delete(f"secret/{name}-pending")
        except (ValueError, Exception):  # noqa: BLE001 - already gone is fine
            pass


def _json(raw: str, name: str) -> object:
    try:
        return json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise SecretStoreError(f"secret {name!r} is malformed: not JSON") from None


class AwsSecretsManagerStore:
    """AWS Secrets Manager stages: AWSPENDING -> AWSCURRENT (the old one becomes AWSPREVIOUS)."""

    backend = "aws"

    def __init__(self, client: object) -> None:
        self._client = client
        quiet_aws_loggers()

    def _get(self, name: str, stage: str) -> SecretVersion:
        from botocore.exceptions import ClientError, EndpointConnectionError

        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage=stage)  # type: ignore[attr-defined]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise SecretStoreError(f"secret {name!r} ({stage}) is not readable in AWS Secrets Manager: {code}") from None
        except EndpointConnectionError as exc:
            raise SecretStoreError(f"AWS Secrets Manager is unreachable: {exc}") from None
        if "SecretString" not in response:
            raise SecretStoreError(f"secret {name!r} is malformed: no SecretString")
        return SecretVersion(version_id=response["VersionId"], value=SecretStr(response["SecretString"]))

    def current(self, name: str) -> SecretVersion:
        return self._get(name, "AWSCURRENT")

    def pending(self, name: str) -> SecretVersion:
        return self._get(name, "AWSPENDING")

    def previous(self, name: str) -> SecretVersion:
        return self._get(name, "AWSPREVIOUS")

    def stage(self, name: str, value: SecretStr) -> str:
        from botocore.exceptions import ClientError

        token = str(uuid.uuid4())
        try:
            self._client.put_secret_value(  # type: ignore[attr-defined]
                SecretId=name, ClientRequestToken=token, SecretString=value.get_secret_value(),
                VersionStages=["AWSPENDING"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            self._client.create_secret(Name=name, Description="managed by textbook-ops rotation flows")  # type: ignore[attr-defined]
            self._client.put_secret_value(  # type: ignore[attr-defined]
                SecretId=name, ClientRequestToken=token, SecretString=value.get_secret_value(),
                VersionStages=["AWSPENDING"])
        return token

    def promote(self, name: str, version_id: str) -> None:
        try:
            moves = {"RemoveFromVersionId": self.current(name).version_id}
        except SecretStoreError:
            moves = {}  # the first value
        self._client.update_secret_version_stage(  # type: ignore[attr-defined]
            SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=version_id, **moves)
        self._client.update_secret_version_stage(  # type: ignore[attr-defined]
            SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version_id)

    def discard_pending(self, name: str) -> None:
        try:
            pending = self.pending(name)
        except SecretStoreError:
            return
        self._client.update_secret_version_stage(  # type: ignore[attr-defined]
            SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=pending.version_id)


def secret_store_for(settings: Settings) -> SecretStore:
    if settings.secret_backend == "aws":
        # Few, quick attempts: the flow's tasks retry on their own, with delays an operator can see in the UI.
        credentials = aws_credentials(settings, botocore_config={
            "connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2, "mode": "standard"}})
        return AwsSecretsManagerStore(credentials.get_secrets_manager_client())
    return PrefectSecretStore()


@task(name="stage-secret", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def stage_secret(store: SecretStore, name: str, value: SecretStr) -> str:
    return store.stage(name, value)


@task(name="read-current-secret-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def current_version_id(store: SecretStore, name: str) -> str:
    return store.current(name).version_id


@task(name="promote-secret", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def promote_secret(store: SecretStore, name: str, version_id: str) -> None:
    store.promote(name, version_id)


@task(name="discard-pending-secret", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def discard_pending_secret(store: SecretStore, name: str) -> None:
    store.discard_pending(name)
