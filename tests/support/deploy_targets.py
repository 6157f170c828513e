"""Fixtures shared by the deploy-backend tests (flow under the harness, and end to end through a worker).

Versions are real commits of this repository (so release notes are real `git log` output), each with the image
the release workflow would have pushed for it (a FakeRegistry tag); each maps to the settings the target
service runs with: the good ones serve the ingested textbook, BAD serves a collection
holding only the introduction chapter (healthy and ready, but the canary question no longer cites its chapter).
Import the fixtures into a test module: `from tests.support.deploy_targets import deploy_target, deploy_versions`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.settings import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.registry_server import FakeRegistry
from tests.support.render_server import FakeRender, ServiceThread


def rev(ref: str) -> str:
    return subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


OLD, BAD, BROKEN_BUILD, NEW = rev("HEAD~3"), rev("HEAD~2"), rev("HEAD~1"), rev("HEAD")
BAD_COLLECTION = "deploy-bad-version"


@pytest.fixture(scope="session")
def deploy_versions(settings, ingested_textbook, tmp_path_factory) -> dict:
    from flows.ingest_textbook import ingest_textbook

    # One fixed folder: each conftest importing this fixture runs it once, and the collection remembers its source.
    tree = tmp_path_factory.getbasetemp() / "bad-version"
    tree.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "website" / "docs" / "intro-to-physical-ai.md", tree / "intro-to-physical-ai.md")
    result = ingest_textbook(source=str(tree), collection=BAD_COLLECTION)
    assert result["status"] in ("completed", "unchanged"), result
    good = settings.model_copy(update={"rate_limit_enabled": False})
    return {OLD: good, NEW: good, BROKEN_BUILD: good, BAD: good.model_copy(update={"collection": BAD_COLLECTION})}


@pytest.fixture(scope="session")
def deploy_target():
    service = ServiceThread(free_port())
    yield service
    service.stop()


class BrokenImage(RuntimeError):
    """BROKEN_BUILD's image: its instances never become healthy, so Render ends the deploy update_failed."""


def fake_registry() -> FakeRegistry:
    """A started FakeRegistry holding the image the release workflow pushed for each version's commit."""
    registry = FakeRegistry().start()
    for commit in (OLD, BAD, BROKEN_BUILD, NEW):
        registry.push(commit)
    return registry


def fake_render(versions: dict, target: ServiceThread, registry: FakeRegistry, step_s: float = 0.05,
                live: str = OLD) -> FakeRender:
    """A started FakeRender whose deploys switch `target` to the version of the deployed image's commit, with
    `live`'s image live; BROKEN_BUILD's image fails to start (update_failed)."""

    def activate(deploy: dict) -> None:
        image = (deploy.get("image") or {}).get("ref")
        commit = registry.tag_of(image.rsplit("@", 1)[1]) if image else (deploy.get("commit") or {}).get("id")
        if commit == BROKEN_BUILD:
            raise BrokenImage(commit)
        target.start(versions[commit])

    fake = FakeRender(activate=activate, step_s=step_s).start()
    fake.seed_live(image_url=f"{registry.repository}@{registry.tags[live]}")
    return fake


def deploy_env(fake: FakeRender, target: ServiceThread, registry: FakeRegistry) -> dict[str, str]:
    """The settings the flow needs to deploy through `fake` and gate on `target`, tuned for tests."""
    return {
        "RENDER_API_URL": fake.base_url, "RENDER_API_KEY": fake.api_key, "RENDER_SERVICE_ID": fake.service_id,
        "IMAGE_REPOSITORY": registry.repository, "REGISTRY_API_URL": registry.root_url,
        "SERVICE_BASE_URL": target.base_url, "DEPLOY_POLL_INTERVAL_S": "0.05", "DEPLOY_TIMEOUT_S": "60",
        "DEPLOY_HEALTH_WINDOW_S": "0.5", "DEPLOY_HEALTH_INTERVAL_S": "0.25", "DEPLOY_SMOKE_REQUESTS": "5",
        "DEPLOY_SMOKE_P95_MS": "5000",
    }
