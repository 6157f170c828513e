"""deploy-docs end to end: the real Docusaurus build, a local bare repository as the remote, a local static
host serving its gh-pages branch (GitHub Pages' URL rules), Prefect's harness, the real ingest and service.

Builds are the slow part (~30 s each): the session builds the site once (`tests/support/site.py`, shared
with the anchor test); only the broken-link and removed-chapter commits build again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from app.main import create_app
from app.rag.vector_index import open_index_writer
from app.settings import PROJECT_ROOT, SettingsError
from flows.deploy_docs import deploy_docs, main
from tasks.pages import SiteBuildFailed, VerificationFailed
from tests.support.artifacts import latest_artifact
from tests.support.site import SITE_API_URL, bare_remote, git, pages_host, shared_site, site_build

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "settings")]
COLLECTION = "deploy-docs-test"
REMOVED = "vision-language-action.md"
ONLY_IN_REMOVED = "How do models like RT-2 and OpenVLA turn continuous robot actions into tokens a transformer can predict?"


def deploy(remote: Path, ref: str | None = None, **overrides) -> dict:
    site = shared_site()
    options = {"verify_timeout_s": 30.0, "verify_interval_s": 0.2, **overrides}
    return deploy_docs(ref=ref or site.commit, checkout=str(site.repo), remote=str(remote), public_url=pages_host().url,
                       api_url=SITE_API_URL, collection=COLLECTION, work_dir=str(site.work_dir), **options)


def variant(name: str, edit) -> str:
    """A commit on top of the site's commit, made in a throw-away worktree (the shared checkout never moves)."""
    site = shared_site()
    tree = site.work_dir.parent / f"variant-{name}"
    git("worktree", "add", "--quiet", "--detach", str(tree), site.commit, cwd=site.repo)
    try:
        edit(tree / "website")
        git("add", "--all", cwd=tree)
        git("commit", "--quiet", "-m", f"variant: {name}", cwd=tree)
        return git("rev-parse", "HEAD", cwd=tree)
    finally:
        git("worktree", "remove", "--force", str(tree), cwd=site.repo)


def branch_tip(remote: Path) -> str | None:
    out = git("for-each-ref", "--format=%(objectname)", "refs/heads/gh-pages", cwd=remote)
    return out or None


@pytest.fixture(scope="module")
def first_publish(tmp_path_factory) -> tuple[Path, dict]:
    site_build()  # the session's build: the flow reuses it
    remote = bare_remote(tmp_path_factory.mktemp("remote") / "pages.git")
    pages_host().serve(remote)
    return remote, deploy(remote)


def test_first_publish_is_verified_and_its_commit_names_the_source(first_publish):
    remote, result = first_publish
    site = shared_site()
    assert result["status"] == "published" and result["changed"] and result["previous_commit"] is None
    assert result["build_reused"] and branch_tip(remote) == result["pages_commit"]
    message = git("log", "-1", "--format=%B", "gh-pages", cwd=remote)
    assert f"source-commit: {site.commit}" in message and f"api-url: {SITE_API_URL}" in message
    files = set(git("ls-tree", "-r", "--name-only", "gh-pages", cwd=remote).splitlines())
    assert {".nojekyll", "index.html", "docs/ros2-fundamentals.html", "ur/index.html", "ur/docs/ros2-fundamentals.html"} <= files
    chapters = {p.name for p in (site.repo / "website" / "docs").iterdir()}
    urdu = {p.name for p in (site.repo / "website" / "i18n" / "ur" / "docusaurus-plugin-content-docs" / "current").iterdir()}
    assert result["pages_verified"] == 2 + len(chapters) + len(urdu)  # two home pages, every chapter in both locales
    assert result["ingest"]["status"] == "completed" and result["ingest"]["chunks_total"] > 300
    report = latest_artifact("deploy-docs").data
    assert site.commit in report and f"Pages verified: {result['pages_verified']} of {result['pages_verified']}" in report


def test_redeploying_the_same_commit_makes_no_new_commit(first_publish):
    remote, first = first_publish
    pages_host().serve(remote)
    again = deploy(remote)
    assert again["status"] == "unchanged" and not again["changed"] and again["build_reused"]
    assert again["pages_commit"] == first["pages_commit"] == branch_tip(remote)
    assert git("rev-list", "--count", "gh-pages", cwd=remote) == "1"
    assert again["ingest"]["status"] == "unchanged"


def test_a_broken_link_fails_the_build_and_pushes_nothing(first_publish):
    remote, first = first_publish
    pages_host().serve(remote)

    def add_broken_link(website: Path) -> None:
        chapter = website / "docs" / "ros2-fundamentals.md"
        chapter.write_text(chapter.read_text() + "\nSee [the missing chapter](/docs/no-such-chapter).\n")

    broken = variant("broken-link", add_broken_link)
    state = deploy(remote, ref=broken, return_state=True)
    assert state.is_failed()
    with pytest.raises(SiteBuildFailed, match="nothing was published") as failure:
        state.result()
    assert "/docs/no-such-chapter" in str(failure.value) and "/docs/ros2-fundamentals" in str(failure.value)
    assert branch_tip(remote) == first["pages_commit"]


@pytest.mark.parametrize("fault", ["a page answers 404", "the host serves the old site"])
def test_failed_verification_rolls_back_to_the_previous_commit(tmp_path, fault):
    remote = bare_remote(tmp_path / "pages.git")
    old_site = tmp_path / "old-site"
    old_site.mkdir()
    (old_site / "index.html").write_text("<html lang=\"en\"><title>Old site</title></html>")
    git("init", "--quiet", "-b", "gh-pages", cwd=old_site)
    git("add", "--all", cwd=old_site)
    git("commit", "--quiet", "-m", "the site before this deploy", cwd=old_site)
    git("push", "--quiet", str(remote), "gh-pages", cwd=old_site)
    previous = branch_tip(remote)
    host = pages_host()
    host.serve(remote)
    if fault == "a page answers 404":
        host.missing = {"ur/docs/ros2-fundamentals"}
    else:
        host.pinned = previous

    state = deploy(remote, verify_timeout_s=1.0, return_state=True)

    assert state.is_failed()
    with pytest.raises(VerificationFailed, match=f"gh-pages rolled back to {previous[:12]}") as failure:
        state.result()
    expected = "ur/docs/ros2-fundamentals: HTTP 404" if fault == "a page answers 404" else "serves other content"
    assert expected in str(failure.value)
    assert branch_tip(remote) == previous
    assert git("rev-list", "--count", "gh-pages", cwd=remote) == "1"
    report = latest_artifact("deploy-docs").data
    assert "**rolled back**" in report and previous in report


def eval_questions() -> list[dict]:
    questions = []
    for path in sorted((PROJECT_ROOT / "bench" / "eval").glob("questions-*.yaml")):
        questions += [q for q in yaml.safe_load(path.read_text()) if isinstance(q, dict) and q.get("question")]
    return questions


def test_a_removed_chapter_leaves_the_index_and_answers_cite_only_live_pages(first_publish, settings):
    remote, first = first_publish
    host = pages_host()
    host.serve(remote)

    def remove_chapter(website: Path) -> None:
        (website / "docs" / REMOVED).unlink()
        (website / "i18n" / "ur" / "docusaurus-plugin-content-docs" / "current" / REMOVED).unlink()
        for page in (website / "src" / "pages").glob("*.js"):  # the home page's chapter list links it too
            lines = page.read_text().splitlines(keepends=True)
            page.write_text("".join(line for line in lines if Path(REMOVED).stem not in line))

    result = deploy(remote, ref=variant("removed-chapter", remove_chapter))

    assert result["status"] == "published" and result["previous_commit"] == first["pages_commit"]
    assert result["ingest"]["status"] == "completed" and result["ingest"]["chunks_deleted"] > 0
    assert httpx.get(urljoin(host.url, "docs/vision-language-action")).status_code == 404
    records = open_index_writer(settings, COLLECTION).state().records
    assert REMOVED not in {r.source_path for r in records.values()} and records

    with TestClient(create_app(settings.model_copy(update={"collection": COLLECTION}))) as client:
        answer = client.post("/v1/chat", json={"question": ONLY_IN_REMOVED}).json()
        assert answer["covered"] is False and answer["sources"] == [], answer
        dead, checked = [], 0
        for question in eval_questions():
            response = client.post("/v1/chat", json={"question": question["question"], "locale": question["locale"]})
            assert response.status_code == 200, response.text
            for source in response.json()["sources"]:
                checked += 1
                page = httpx.get(urljoin(host.url, source["url"].lstrip("/")), follow_redirects=True)
                anchor = urlsplit(source["url"]).fragment
                if page.status_code != 200 or (anchor and f'id="{anchor}"' not in page.text):
                    dead.append(f"{question['question'][:40]}... -> {source['url']} ({page.status_code})")
    assert checked > 30 and not dead, dead


def test_cli_help_names_the_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "DOCS_GIT_REMOTE" in out and "DOCS_PUBLIC_URL" in out and "--ref" in out


def test_missing_configuration_is_named(tmp_path):
    state = deploy_docs(remote=None, public_url=None, api_url=None, work_dir=str(tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(SettingsError, match="DOCS_GIT_REMOTE, DOCS_PUBLIC_URL, DOCS_API_URL"):
        state.result()
    assert shutil.which("git")
