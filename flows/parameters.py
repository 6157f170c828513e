"""The types of the deployments' parameters: each one says what a valid value is.

Prefect turns them into each deployment's parameter schema. The server refuses a run whose parameters do not
match (`prefect deployment run -p storage=S3` answers "Validation failed for field 'storage'"), the UI offers
the choices, and a flow called from Python (`python -m flows.X`) fails before any work with a
ParameterTypeError naming the parameter.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, SecretStr, WithJsonSchema

from flows.cli import InvalidParameter

StorageKind = Literal["local", "s3"]
GameDayScenario = Literal["service-down", "database-down", "error-burst", "latency", "backup-broken",
                          "secret-leaked"]
EnvironmentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$",
                                       description="an ENVIRONMENT value, e.g. production")]
FolderPath = Annotated[str, Field(pattern=r"^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$",
                                  description="a folder (absolute, or relative to the checkout)")]
IsoDateText = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="a day, YYYY-MM-DD")]
IsoDateTimeText = Annotated[str, Field(
    pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$",
    description="a time, YYYY-MM-DD[THH:MM[:SS][+00:00]]")]
Days = Annotated[int, Field(ge=1, le=3650, description="a number of days, 1 to 3650")]
Locale = Literal["en", "ur"]

BackupId = Annotated[str, Field(pattern=r"^\d{8}T\d{12}Z$",
                                description="a backup_catalog id, e.g. 20261128T020000123456Z")]
DatabaseName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                                    description="a Postgres database name: lower case letters, digits, _")]
CollectionName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
                                      description="an index collection: lower case letters, digits, - and _")]
BlockName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,127}$",
                                 description="the name of a Prefect block (lower case, digits, -)")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", description="an http(s) URL")]
GitRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/~^-]{0,199}$",
                              description="a git commit, branch or tag")]
CommitSha = Annotated[str, Field(pattern=r"^[0-9a-f]{7,40}$", description="a git commit sha (7 to 40 hex digits)")]
RenderServiceId = Annotated[str, Field(pattern=r"^srv-[a-z0-9-]+$", description="a Render service id (srv-...)")]
ImageDigest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$",
                                   description="an image digest: sha256: and 64 hex digits")]
ApiKeyId = Annotated[int, Field(ge=1, description="the id of a service API key (api_key.id)")]
GraceHours = Annotated[float, Field(ge=0, le=720, description="hours the old key stays valid (0 to 720)")]
PositiveHours = Annotated[float, Field(gt=0, description="a number of hours above 0")]
RelativePath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$",
                                    description="a path inside the checkout (no leading /, no segment starting with .)")]
PositiveSeconds = Annotated[float, Field(gt=0, description="a number of seconds above 0")]
# The server checks patterns, not formats: a date gets both, so `as_of=yesterday` is refused before a run exists.
IsoDate = Annotated[date, WithJsonSchema({"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                                          "description": "a day, YYYY-MM-DD"})]
IsoDateTime = Annotated[datetime, WithJsonSchema({
    "type": "string", "format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}",
    "description": "a time, YYYY-MM-DDTHH:MM[:SS][+00:00]"})]


def secret_block_value(parameter: str, block_name: str) -> SecretStr:
    """The value of the Prefect Secret block a `*_block` parameter names. A missing or empty block is refused with
    the parameter's name, before the flow does any work."""
    from prefect.blocks.system import Secret

    try:
        value = str(Secret.load(block_name).get())
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        raise InvalidParameter(f"{parameter}: there is no Prefect Secret block named {block_name!r} "
                               "(create it: Prefect UI -> Blocks -> Secret)") from exc
    if not value.strip():
        raise InvalidParameter(f"{parameter}: the Secret block {block_name!r} is empty")
    return SecretStr(value.strip())
