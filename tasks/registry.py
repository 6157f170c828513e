"""The container registry the release workflow pushes to (GHCR), read through the OCI distribution API.

deploy-backend deploys images by digest: a digest names exactly the bytes CI built and tested, where a tag
(the commit) can be pushed again. Used endpoints (https://github.com/opencontainers/distribution-spec):
`GET /token?scope=repository:<name>:pull` (GHCR's token service: a bearer token, anonymous for public images,
with basic auth for private ones) and `GET /v2/<name>/manifests/<tag or digest>`, whose
`Docker-Content-Digest` header is the manifest's digest and whose `org.opencontainers.image.revision` annotation
is the commit it was built from; 404 when the registry has no such manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.settings import Settings

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
REVISION_ANNOTATION = "org.opencontainers.image.revision"
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


class RegistryError(RuntimeError):
    """The registry could not be read (network, authentication, server error)."""


class ImageNotFound(ValueError):
    """The registry has no image for this digest or commit: nothing to deploy."""


@dataclass(frozen=True)
class ImageRef:
    repository: str  # ghcr.io/owner/name
    digest: str  # sha256:...
    commit_id: str | None = None  # the commit it was built from (its tag, or its revision annotation)

    @property
    def url(self) -> str:
        """The pull reference Render deploys: repository@digest (immutable)."""
        return f"{self.repository}@{self.digest}"


def digest_of(image_url: str | None) -> str | None:
    """The digest of a `repository@sha256:...` reference, None for tag references."""
    if image_url and "@" in image_url:
        digest = image_url.rsplit("@", 1)[1]
        return digest if DIGEST.match(digest) else None
    return None


class RegistryClient:
    def __init__(self, api_url: str, repository: str, *, username: str | None = None, password: str | None = None,
                 timeout_s: float = 20.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.name = repository.split("/", 1)[1]  # the path under the registry host
        self._auth = (username, password) if username and password else None
        self._timeout = timeout_s

    def _token(self) -> str:
        try:
            response = httpx.get(f"{self.api_url}/token", params={"scope": f"repository:{self.name}:pull"},
                                 auth=self._auth, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise RegistryError(f"registry {self.api_url} unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code in (401, 403):
            raise RegistryError(f"registry {self.api_url} refused a pull token for {self.name} "
                                f"({response.status_code}): check REGISTRY_USERNAME / REGISTRY_TOKEN")
        if response.status_code >= 400:
            raise RegistryError(f"registry {self.api_url} token -> {response.status_code}")
        return response.json()["token"]

    def manifest(self, reference: str) -> tuple[str, str | None]:
        """The digest of the manifest a tag or digest names, and the commit it was built from (the
        `org.opencontainers.image.revision` annotation the release workflow sets). ImageNotFound when there is none."""
        url = f"{self.api_url}/v2/{self.name}/manifests/{reference}"
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": MANIFEST_TYPES}
        try:
            response = httpx.get(url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise RegistryError(f"registry {self.api_url} unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 404:
            raise ImageNotFound(f"{self.repository} has no image {reference}")
        if response.status_code >= 400:
            raise RegistryError(f"registry GET {url} -> {response.status_code}")
        digest = response.headers.get("docker-content-digest", "")
        if not DIGEST.match(digest):
            raise RegistryError(f"registry answered {url} without a sha256 Docker-Content-Digest")
        try:
            annotations = response.json().get("annotations") or {}
        except ValueError:
            annotations = {}
        return digest, annotations.get(REVISION_ANNOTATION)

    def manifest_digest(self, reference: str) -> str:
        return self.manifest(reference)[0]


def registry_client(settings: Settings) -> RegistryClient:
    token = settings.registry_token.get_secret_value() if settings.registry_token else None
    return RegistryClient(settings.resolved_registry_api_url, settings.image_repository,
                          username=settings.registry_username, password=token)


def _retry_if_registry_error(task: Any, task_run: Any, state: Any) -> bool:
    """A registry hiccup is retried; an image that is not there is an answer, not a hiccup."""
    try:
        state.result()
    except RegistryError:
        return True
    except Exception:  # noqa: BLE001 - ImageNotFound and bugs are final
        return False
    return False


@task(name="resolve-image", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_if_registry_error)
def resolve_image(client: RegistryClient, *, digest: str | None, commit_id: str | None) -> ImageRef:
    """The image to deploy, checked in the registry before anything is deployed: a digest must exist there; a
    commit resolves through its tag (the release workflow tags each image with its full commit SHA)."""
    if digest:
        if not DIGEST.match(digest):
            raise ImageNotFound(f"{digest!r} is not an image digest (sha256: and 64 hex digits)")
        found, built_from = client.manifest(digest)
        ref = ImageRef(client.repository, found, commit_id=built_from)
    else:
        if not commit_id or not COMMIT.match(commit_id):
            raise ImageNotFound(f"{commit_id!r} is not a commit SHA")
        ref = ImageRef(client.repository, client.manifest_digest(commit_id), commit_id=commit_id)
    get_run_logger().info("image %s%s", ref.url, f" (commit {ref.commit_id})" if ref.commit_id else "")
    return ref
