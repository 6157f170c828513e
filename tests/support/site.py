"""The docs site for tests: a git repository with a copy of `website/`, its production build (once per
session), and a stand-in for GitHub Pages: a static server over a branch of a (bare) git repository.

The server reads files with `git cat-file` from the branch's tip at each request, so it serves what was just
pushed, like a host that has caught up; `missing` paths answer 404 and `pinned` serves an older commit (a
host that has not caught up), for verification failures. URL rules follow GitHub Pages (`static_file_for`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from mimetypes import guess_type
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.settings import PROJECT_ROOT, get_settings
from tasks.pages import SiteBuild, build_site, export_site_source, static_file_for

GIT_USER = {"GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.invalid",
            "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.invalid"}
SITE_COPY_EXCLUDES = {"node_modules", "build", ".docusaurus", ".cache-loader"}


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, binary: bool = False):
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, text=not binary,
                            env={**os.environ, **GIT_USER, **(env or {})})
    return result.stdout if binary else result.stdout.strip()


class GitPagesHost:
    """Serve `branch` of the repository at `repo` over HTTP on 127.0.0.1 (port 0: a free one)."""

    def __init__(self, port: int = 0) -> None:
        self.repo: Path | None = None
        self.branch = "gh-pages"
        self.missing: set[str] = set()
        self.pinned: str | None = None
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                status, headers, body = host.respond(unquote(urlsplit(self.path).path))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="pages-host", daemon=True)
        self.thread.start()

    def serve(self, repo: Path, branch: str = "gh-pages") -> None:
        self.repo, self.branch, self.missing, self.pinned = repo, branch, set(), None

    def respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        if path.lstrip("/") in {m.lstrip("/") for m in self.missing}:
            return HTTPStatus.NOT_FOUND, {"Content-Type": "text/plain"}, b"not found (test)"
        try:
            commit = self.pinned or git("rev-parse", "--verify", f"refs/heads/{self.branch}", cwd=self.repo)
        except subprocess.CalledProcessError:
            return HTTPStatus.NOT_FOUND, {"Content-Type": "text/plain"}, b"no site published"
        files = self.tree(commit)
        found, redirect = static_file_for(path, files.__contains__)
        if redirect:
            return HTTPStatus.MOVED_PERMANENTLY, {"Location": redirect}, b""
        if found is None:
            return HTTPStatus.NOT_FOUND, {"Content-Type": "text/html"}, b"<html><title>404</title></html>"
        body = git("cat-file", "blob", f"{commit}:{found}", cwd=self.repo, binary=True)
        return HTTPStatus.OK, {"Content-Type": guess_type(found)[0] or "application/octet-stream"}, body

    def tree(self, commit: str) -> frozenset[str]:
        return _tree(self.repo, commit)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@cache
def _tree(repo: Path, commit: str) -> frozenset[str]:
    return frozenset(git("ls-tree", "-r", "--name-only", commit, cwd=repo).splitlines())


def bare_remote(path: Path) -> Path:
    path.mkdir(parents=True)
    git("init", "--bare", "--quiet", cwd=path)
    return path


def make_site_repo(dest: Path, extra_files: dict[str, str] | None = None) -> tuple[Path, str]:
    """A git repository holding a copy of the project's `website/` (its working tree) and `extra_files`;
    node_modules is linked, not copied. Returns (repo, commit)."""
    source = PROJECT_ROOT / "website"
    dest.mkdir(parents=True)
    shutil.copytree(source, dest / "website", ignore=lambda _dir, names: [n for n in names if n in SITE_COPY_EXCLUDES])
    for relative, text in (extra_files or {}).items():
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / relative).write_text(text)
    (dest / "website" / "node_modules").symlink_to((source / "node_modules").resolve(), target_is_directory=True)
    (dest / ".gitignore").write_text("node_modules\nbuild\n.docusaurus*\n")
    git("init", "--quiet", "-b", "main", cwd=dest)
    return dest, commit_all(dest, "Textbook site")


def commit_all(repo: Path, message: str) -> str:
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--allow-empty", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


# Headings that trip naive slug rules, added to the test copy of the site (never to the real textbook):
# the anchor test checks them against the ids Docusaurus really writes.
ANCHOR_CASES = {
    "website/docs/anchor-cases.md": """---
title: Anchor cases
sidebar_position: 90
---

# Anchor cases

Headings whose ids are easy to get wrong. Each section has a sentence, so each gets a chunk.

## Summary

The first summary.

## `rclpy` Publishers & Subscribers

Inline code and an ampersand.

## What is `Vec<T>`?

Angle brackets inside code are not a tag.

## Setup {#install-first}

An explicit id wins over the text.

## The **Zero** *Moment* Point

Emphasis is not part of the id.

## [Links](https://example.org) and [ROS 2](./ros2-fundamentals.md) in headings

Only the link text counts.

## C# and F# ##

A closing sequence is not the language's hash.

## Résumé, ² and Ⓐ

Accents stay, superscripts go, circled letters stay.

## The `__init__` method and snake_case_names

Underscores are kept.

## Caf&eacute; &amp; bar

Entities are decoded before the slug.

## Escaped \\* star and \\_underscores\\_

Escapes are plain characters.

## A heading with a comment id <!-- #comment-id -->

In a CommonMark file this is not an explicit id: the comment just drops out.

## Summary

The second summary gets a suffix.

### Summary

And a third one, one level down.

## Anchor cases

A section named like the page: the page's h1 took the plain id.
""",
    "website/docs/anchor-cases-mdx.mdx": """---
title: Anchor cases in MDX
sidebar_position: 91
---

import Tabs from '@theme/Tabs';
import TabItem from '@theme/TabItem';

Headings in an MDX chapter.

## Setup \\{#mdx-install}

An escaped explicit id, as MDX needs it.

## A comment id {/* #mdx-comment-id */}

The MDX comment form.

## Heading with <span>inline JSX</span> text

JSX children are text.

<Tabs>
<TabItem value="a" label="A">

### Inside a tab

Headings inside components are headings too.

</TabItem>
</Tabs>

## Inside a tab

The same heading again, outside.
""",
    "website/i18n/ur/docusaurus-plugin-content-docs/current/anchor-cases.md": """---
title: اینکر کی مثالیں
sidebar_position: 90
---

اردو سرخیاں جن کی شناخت غلط بنانا آسان ہے۔

## ROS 2 گراف کیا ہے؟

سوالیہ نشان شناخت میں نہیں آتا۔

## خلاصہ۔

اردو کا ختمہ بھی نہیں۔

## ZMP (زیرو مومنٹ پوائنٹ) اور ۲ پاؤں

قوسین ہٹتی ہیں، اردو ہندسے رہتے ہیں۔

## نیم‌فاصلہ والی سرخی

نیم فاصلہ (ZWNJ) شناخت سے ہٹ جاتا ہے۔

## خلاصہ

دوسرا خلاصہ۔

## تنصیب {#urdu-install}

واضح شناخت۔
""",
}


@dataclass(frozen=True)
class SiteRepo:
    repo: Path
    commit: str
    work_dir: Path


SITE_API_URL = "https://api.textbook.example"  # the "production" API URL the test builds carry


@cache
def shared_site() -> SiteRepo:
    """One repository per test session: the working tree's `website/` plus the anchor cases, committed."""
    work_dir = get_settings().resolved_docs_work_dir
    repo, commit = make_site_repo(work_dir.parent / "site-repo", ANCHOR_CASES)
    return SiteRepo(repo=repo, commit=commit, work_dir=work_dir)


@cache
def pages_host() -> GitPagesHost:
    """One host per session, so every build of the same commit has the same public URL and is built once."""
    return GitPagesHost()


@cache
def site_build(commit: str | None = None, api_url: str = SITE_API_URL) -> SiteBuild:
    """The production build of a commit of the test site, exactly as deploy-docs builds it (same folders,
    so the flow reuses it)."""
    from prefect.logging import disable_run_logger

    site = shared_site()
    commit = commit or site.commit
    with disable_run_logger():
        site_dir = export_site_source.fn(site.repo, commit, "website", site.work_dir / "sources" / commit)
        return build_site.fn(site_dir, site.work_dir / "builds" / commit, commit=commit, api_url=api_url,
                             public_url=pages_host().url)
