"""The static server `make up` runs for the built site: clean URLs, locale 404 pages, nothing outside the build."""

from __future__ import annotations

import threading

import httpx
import pytest

from devenv.site import build_is_current, site_server, source_stamp


@pytest.fixture
def served(tmp_path):
    build = tmp_path / "build"
    for path, body in {"index.html": "home", "404.html": "not found", "docs/ros2-fundamentals.html": "chapter",
                       "ur/index.html": "ur home", "ur/404.html": "ur not found", "ur/docs/ros2-fundamentals.html": "ur chapter",
                       "assets/js/main.0123abcd.js": "js", ".source-stamp": "x"}.items():
        (build / path).parent.mkdir(parents=True, exist_ok=True)
        (build / path).write_text(body)
    (tmp_path / "secret.txt").write_text("outside the build")
    server = site_server(build, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}") as client:
        yield client
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/", 200, "home"),
    ("/docs/ros2-fundamentals", 200, "chapter"),
    ("/docs/ros2-fundamentals.html", 200, "chapter"),
    ("/ur", 200, "ur home"),
    ("/ur/", 200, "ur home"),
    ("/ur/docs/ros2-fundamentals?x=1#h", 200, "ur chapter"),
    ("/docs/missing", 404, "not found"),
    ("/ur/docs/missing", 404, "ur not found"),
    ("/.source-stamp", 404, "not found"),
    ("/../secret.txt", 404, "not found"),
    ("/%2e%2e/secret.txt", 404, "not found"),
])
def test_pages_are_served_at_clean_urls_with_real_404s(served, path, status, body):
    response = served.get(path)
    assert (response.status_code, response.text) == (status, body)
    assert response.headers["content-type"].startswith("text/html")


def test_hashed_assets_are_cached_and_pages_are_not(served):
    assert "immutable" in served.get("/assets/js/main.0123abcd.js").headers["cache-control"]
    assert served.get("/docs/ros2-fundamentals").headers["cache-control"] == "no-cache"


def test_the_build_stamp_follows_sources_and_the_api_url(tmp_path):
    site = tmp_path / "website"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "a.md").write_text("# A")
    out = tmp_path / "build"
    out.mkdir()
    (out / ".source-stamp").write_text(source_stamp(site, "http://127.0.0.1:8000"))
    assert build_is_current(site, out, "http://127.0.0.1:8000")
    assert not build_is_current(site, out, "https://api.example.org")
    (site / "docs" / "a.md").write_text("# A, edited")
    assert not build_is_current(site, out, "http://127.0.0.1:8000")
