"""The built site and the real service, driven by Debian's Chromium through Playwright (never `playwright install`).

Once per session: the site is built (en + ur) with the API URL of a service started here on a free port, the
build is served by the same static server `make up` uses on another free port, and the service allows that
origin through CORS. The build starts first and runs while the textbook is ingested and the service starts.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.rag.vector_index.sparse_copy import copy_index_tree
from app.settings import PROJECT_ROOT, Settings
from devenv.site import build_site, site_server
from tests.conftest import free_port
from tests.support.service_process import run_service
from tests.support.waiting import wait_for_http

SCREENSHOTS = PROJECT_ROOT / "test-output" / "screenshots"
AXE = PROJECT_ROOT / "website" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@dataclass(frozen=True)
class Site:
    url: str
    api_url: str
    build_dir: Path
    settings: Settings


@pytest.fixture(scope="session")
def site_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="session")
def site_build(site_ports: tuple[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Path]]:
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run devenv/install-system-packages.sh (make install does)")
    api_port, site_port = site_ports
    out_dir = tmp_path_factory.mktemp("site") / "build"
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(build_site, api_url=f"http://127.0.0.1:{api_port}", out_dir=out_dir,
                          site_url=f"http://127.0.0.1:{site_port}")


@pytest.fixture(scope="session")
def live_api(site_build: Future[Path], ingested_textbook: dict, settings: Settings, site_ports: tuple[int, int],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """The real service over HTTP (`python -m app serve` on the site's API port), allowing the test site's origin.

    It reads a copy of the session's index: Qdrant Edge locks a shard's WAL for the process that opened it, and the
    in-process test client of tests/app may hold the session's index open."""
    api_port, site_port = site_ports
    origin = f"http://127.0.0.1:{site_port}"
    api_settings = settings.model_copy(update={"cors_allowed_origins": [origin]})
    root = tmp_path_factory.mktemp("live-api")
    copy_index_tree(settings.resolved_index_dir, root / "index")
    env = {"CORS_ALLOWED_ORIGINS": origin, "INDEX_DIR": str(root / "index")}
    with run_service(env, root / "api.log", port=api_port, timeout_s=120) as service:
        yield service.base, api_settings


@pytest.fixture(scope="session")
def site(live_api: tuple[str, Settings], site_build: Future[Path], site_ports: tuple[int, int]) -> Iterator[Site]:
    build_dir = site_build.result(timeout=600)
    api_url, api_settings = live_api
    server = site_server(build_dir, "127.0.0.1", site_ports[1])
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{site_ports[1]}"
    try:
        wait_for_http(url, timeout_s=60)
        yield Site(url=url, api_url=api_url, build_dir=build_dir, settings=api_settings)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator:
    # Module scope: Playwright's sync API runs an event loop in this thread until it stops, and later tests that
    # call Prefect's sync API in the same thread would see that loop as "running".
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, site: Site) -> Iterator:
    """A fresh browser profile (empty localStorage) per test; console errors are collected."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def serious_axe_violations(page) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [node["target"] for node in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]
