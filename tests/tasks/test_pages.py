"""The publish, rollback and verification steps of deploy-docs on real git and a real HTTP host, without a
Docusaurus build (a small hand-made site): fast, so they run in `make test-fast` too."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from tasks.pages import (
    GitCommandFailed,
    PageCheck,
    build_error_summary,
    publish_site,
    redact,
    rollback_branch,
    static_file_for,
    verify_published_site,
)
from tests.support.site import GitPagesHost, bare_remote, git

PAGE = '<html lang="{lang}"{rtl}><head><title>{title} | Book</title></head><body>{body}</body></html>'


def write_site(root: Path, version: str) -> Path:
    pages = {"index.html": ("en", "", "Book"), "docs/intro.html": ("en", "", "Intro"),
             "ur/index.html": ("ur", ' dir="rtl"', "کتاب"), "ur/docs/intro.html": ("ur", ' dir="rtl"', "تعارف")}
    for path, (lang, rtl, title) in pages.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(PAGE.format(lang=lang, rtl=rtl, title=title, body=version))
    return root


CHECKS = [PageCheck(path="", locale="en"), PageCheck(path="docs/intro", locale="en", title="Intro"),
          PageCheck(path="ur/", locale="ur"), PageCheck(path="ur/docs/intro", locale="ur", title="تعارف")]


@pytest.fixture
def host():
    server = GitPagesHost()
    yield server
    server.close()


def publish(build: Path, remote: Path, repo: Path, message: str = "Deploy docs from abc"):
    with disable_run_logger():
        return publish_site.fn(build, remote=str(remote), branch="gh-pages", repo_dir=repo, message=message)


def test_publish_commits_only_when_the_output_changed(tmp_path):
    remote, repo = bare_remote(tmp_path / "remote.git"), tmp_path / "publish.git"
    first = publish(write_site(tmp_path / "v1", "one"), remote, repo, "Deploy docs from aaa\n\nsource-commit: aaa\n")
    assert first.changed and first.previous is None
    assert "source-commit: aaa" in git("log", "-1", "--format=%B", "gh-pages", cwd=remote)
    assert ".nojekyll" in git("ls-tree", "--name-only", "gh-pages", cwd=remote).split()
    same = publish(write_site(tmp_path / "v1-again", "one"), remote, repo)
    assert not same.changed and same.commit == first.commit
    second = publish(write_site(tmp_path / "v2", "two"), remote, repo)
    assert second.changed and second.previous == first.commit
    assert git("rev-parse", "gh-pages^", cwd=remote) == first.commit


def test_rollback_restores_the_previous_commit_but_never_a_newer_publish(tmp_path):
    remote, repo = bare_remote(tmp_path / "remote.git"), tmp_path / "publish.git"
    first = publish(write_site(tmp_path / "v1", "one"), remote, repo)
    second = publish(write_site(tmp_path / "v2", "two"), remote, repo)
    with disable_run_logger():
        assert rollback_branch.fn(remote=str(remote), branch="gh-pages", repo_dir=repo, failed=second.commit,
                                  previous=first.commit) == first.commit
        assert git("rev-parse", "gh-pages", cwd=remote) == first.commit
        third = publish(write_site(tmp_path / "v3", "three"), remote, tmp_path / "someone-else.git")
        with pytest.raises(GitCommandFailed, match="stale info|rejected"):
            rollback_branch.fn(remote=str(remote), branch="gh-pages", repo_dir=repo, failed=second.commit,
                               previous=first.commit)
    assert git("rev-parse", "gh-pages", cwd=remote) == third.commit


def test_rollback_of_a_first_publish_deletes_the_branch(tmp_path):
    remote, repo = bare_remote(tmp_path / "remote.git"), tmp_path / "publish.git"
    first = publish(write_site(tmp_path / "v1", "one"), remote, repo)
    with disable_run_logger():
        rollback_branch.fn(remote=str(remote), branch="gh-pages", repo_dir=repo, failed=first.commit, previous=None)
    assert git("for-each-ref", "refs/heads/gh-pages", cwd=remote) == ""


def test_verification_passes_on_the_live_site_and_names_each_failing_page(tmp_path, host):
    remote, repo = bare_remote(tmp_path / "remote.git"), tmp_path / "publish.git"
    build = write_site(tmp_path / "v1", "one")
    publish(build, remote, repo)
    host.serve(remote)
    with disable_run_logger():
        ok = verify_published_site.fn(host.url, CHECKS, build, timeout_s=5, interval_s=0.05)
        assert ok.ok and ok.attempts == 1 and all(p.status == 200 for p in ok.pages)
        host.missing = {"docs/intro"}
        newer = write_site(tmp_path / "v2", "two")  # built but not what the host serves
        failed = verify_published_site.fn(host.url, CHECKS, newer, timeout_s=0.3, interval_s=0.05)
    assert not failed.ok and failed.attempts >= 2
    problems = {p.path: p.problem for p in failed.failures}
    assert problems["docs/intro"] == "HTTP 404" and "stale" in problems["ur/docs/intro"]


def test_verification_checks_title_language_and_direction(tmp_path, host):
    remote, repo = bare_remote(tmp_path / "remote.git"), tmp_path / "publish.git"
    build = write_site(tmp_path / "v1", "one")
    (build / "ur/docs/intro.html").write_text(PAGE.format(lang="ur", rtl="", title="تعارف", body="one"))
    publish(build, remote, repo)
    host.serve(remote)
    wrong_title = [*CHECKS[:1], PageCheck(path="docs/intro", locale="en", title="Kinematics"), *CHECKS[2:]]
    with disable_run_logger():
        result = verify_published_site.fn(host.url, wrong_title, build, timeout_s=0.1, interval_s=0.05)
    problems = {p.path: p.problem for p in result.failures}
    assert problems == {"docs/intro": "title is 'Intro | Book', expected 'Kinematics'", "ur/docs/intro": "not right-to-left"}


def test_static_paths_follow_github_pages():
    files = {"index.html", "docs/a.html", "docs/b/index.html", "assets/x.js"}.__contains__
    assert static_file_for("/", files) == ("index.html", None)
    assert static_file_for("/docs/a", files) == ("docs/a.html", None)
    assert static_file_for("/docs/b", files) == (None, "/docs/b/")
    assert static_file_for("/docs/b/", files) == ("docs/b/index.html", None)
    assert static_file_for("/docs/a/", files) == (None, None)
    assert static_file_for("/assets/x.js", files) == ("assets/x.js", None)


def test_tokens_in_remote_urls_are_redacted_and_build_errors_summarised():
    assert redact("git push https://x-access-token:ghs_secret@github.com/o/r.git failed") == \
        "git push https://***@github.com/o/r.git failed"
    output = "[INFO] Creating an optimized production build...\n\x1b[31m[ERROR]\x1b[39m Error: Unable to build website\n" \
             "    at foo (file.js:1:2)\n  - Broken link on source page path = /docs/a:\n     -> linking to /docs/nope\n"
    summary = build_error_summary(output)
    assert summary.startswith("[ERROR] Error: Unable to build website") and "-> linking to /docs/nope" in summary
    assert "at foo" not in summary and "\x1b" not in summary
