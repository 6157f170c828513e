"""Reading a flow's artifacts back from Prefect's API (the test harness)."""

from __future__ import annotations

import asyncio
from typing import Any


def latest_artifact(key: str) -> Any:
    """The newest artifact with `key`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> Any:
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return max(artifacts, key=lambda a: a.created)

    return asyncio.run(read())
