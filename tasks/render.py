"""Render's REST API for one service's deploys (https://api-docs.render.com), with a Bearer API key.

Used endpoints: trigger a deploy (`POST /services/{id}/deploys`, body `commitId` or `imageUrl`), read one
(`GET /services/{id}/deploys/{deployId}`), list them newest first (`GET /services/{id}/deploys?limit=N`, items
`{"deploy": ..., "cursor": ...}`), cancel one (`POST .../deploys/{deployId}/cancel`) and roll back to an earlier
one (`POST /services/{id}/rollback`, body `deployId`). Errors come as `{"id", "message"}`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from app.settings import Settings

LIVE = "live"
FAILED_STATUSES = frozenset({"build_failed", "update_failed", "pre_deploy_failed", "canceled", "deactivated"})
IN_PROGRESS_STATUSES = frozenset({"created", "queued", "build_in_progress", "update_in_progress",
                                  "pre_deploy_in_progress"})


class RenderApiError(RuntimeError):
    """Render answered with an error (or not at all). `retryable` for rate limits, 5xx and network errors."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


class DeployTimeout(RuntimeError):
    """A deploy was neither live nor failed within the timeout."""


@dataclass(frozen=True)
class RenderDeploy:
    id: str
    status: str
    commit_id: str | None = None
    commit_message: str | None = None
    image_ref: str | None = None
    trigger: str | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> "RenderDeploy":
        commit, image = body.get("commit") or {}, body.get("image") or {}
        return cls(id=body["id"], status=body.get("status", "created"), commit_id=commit.get("id"),
                   commit_message=(commit.get("message") or "").split("\n")[0] or None, image_ref=image.get("ref"),
                   trigger=body.get("trigger"), created_at=body.get("createdAt"), finished_at=body.get("finishedAt"))

    @property
    def version(self) -> str:
        return self.commit_id or self.image_ref or self.id


class RenderClient:
    def __init__(self, base_url: str, api_key: SecretStr, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key.get_secret_value()}", "Accept": "application/json"}
        self._timeout = timeout_s

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(method, f"{self.base_url}{path}", headers=self._headers, timeout=self._timeout,
                                     **kwargs)
        except httpx.HTTPError as exc:
            raise RenderApiError(f"Render API {method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            raise RenderApiError(f"Render API {method} {path} -> {response.status_code}: {message[:300]}",
                                 response.status_code)
        return response.json() if response.content else None

    def trigger_deploy(self, service_id: str, *, commit_id: str | None = None,
                       image_url: str | None = None) -> RenderDeploy:
        body: dict[str, str] = {"clearCache": "do_not_clear"}
        if commit_id:
            body["commitId"] = commit_id
        if image_url:
            body["imageUrl"] = image_url
        created = self._request("POST", f"/services/{service_id}/deploys", json=body)
        if created is None:  # 202 Queued: Render accepted it without a body; the newest deploy is ours
            return self.list_deploys(service_id, limit=1)[0]
        return RenderDeploy.from_api(created)

    def get_deploy(self, service_id: str, deploy_id: str) -> RenderDeploy:
        return RenderDeploy.from_api(self._request("GET", f"/services/{service_id}/deploys/{deploy_id}"))

    def list_deploys(self, service_id: str, limit: int = 20, status: str | None = None) -> list[RenderDeploy]:
        params: dict[str, str | int] = {"limit": limit} | ({"status": status} if status else {})
        items = self._request("GET", f"/services/{service_id}/deploys", params=params)
        return [RenderDeploy.from_api(item["deploy"]) for item in items or []]

    def cancel_deploy(self, service_id: str, deploy_id: str) -> RenderDeploy:
        return RenderDeploy.from_api(self._request("POST", f"/services/{service_id}/deploys/{deploy_id}/cancel"))

    def rollback(self, service_id: str, deploy_id: str) -> RenderDeploy:
        return RenderDeploy.from_api(self._request("POST", f"/services/{service_id}/rollback",
                                                   json={"deployId": deploy_id}))


def render_client(settings: Settings) -> RenderClient:
    if settings.render_api_key is None:
        raise ValueError("RENDER_API_KEY is not set: deploys go through Render's API")
    return RenderClient(settings.render_api_url, settings.render_api_key)


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except RenderApiError as exc:
        return exc.retryable
    except Exception:  # noqa: BLE001 - anything else is not Render's hiccup
        return False
    return False


@task(name="render-live-deploy", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30],
      retry_condition_fn=_retry_if_transient)
def find_live_deploy(client: RenderClient, service_id: str) -> RenderDeploy | None:
    """The deploy serving now (Render keeps one `live` deploy per service; the rest are `deactivated`)."""
    return next((d for d in client.list_deploys(service_id, limit=1, status=LIVE) if d.status == LIVE), None)


@task(name="render-trigger-deploy", cache_policy=NO_CACHE)
def trigger_deploy(client: RenderClient, service_id: str, commit_id: str | None, image_url: str | None) -> RenderDeploy:
    """Never retried: a retry after a lost response could start a second deploy."""
    deploy = client.trigger_deploy(service_id, commit_id=commit_id, image_url=image_url)
    get_run_logger().info("Render deploy %s triggered (%s)", deploy.id, commit_id or image_url or "branch head")
    return deploy


@task(name="render-rollback", cache_policy=NO_CACHE)
def rollback_to(client: RenderClient, service_id: str, deploy_id: str) -> RenderDeploy:
    deploy = client.rollback(service_id, deploy_id)
    get_run_logger().warning("rollback to %s started as Render deploy %s", deploy_id, deploy.id)
    return deploy


@task(name="render-cancel-deploy", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=_retry_if_transient)
def cancel_deploy(client: RenderClient, service_id: str, deploy_id: str) -> RenderDeploy:
    return client.cancel_deploy(service_id, deploy_id)


@task(name="render-wait-for-deploy", cache_policy=NO_CACHE)
def wait_for_deploy(client: RenderClient, service_id: str, deploy_id: str, *, timeout_s: float,
                    poll_s: float) -> RenderDeploy:
    """Poll until `live` or a failure status; transient API errors are polled through. DeployTimeout after timeout_s."""
    logger = get_run_logger()
    deadline = time.monotonic() + timeout_s
    last_status = None
    while True:
        try:
            deploy = client.get_deploy(service_id, deploy_id)
        except RenderApiError as exc:
            if not exc.retryable:
                raise
            logger.warning("reading deploy %s failed (%s); polling on", deploy_id, exc)
        else:
            if deploy.status != last_status:
                logger.info("Render deploy %s: %s", deploy_id, deploy.status)
                last_status = deploy.status
            if deploy.status == LIVE or deploy.status in FAILED_STATUSES:
                return deploy
        if time.monotonic() >= deadline:
            raise DeployTimeout(f"Render deploy {deploy_id} was still {last_status or 'unknown'} after {timeout_s:g} s")
        time.sleep(poll_s)
