"""Tasks that build the docs site and publish it to a static host through a git branch (GitHub Pages).

The publish repository is a bare repository under the flow's work folder, used only as an object
store: the built folder becomes a tree with a throw-away index (`git add` against the build folder as
work tree), so nothing is ever checked out and an unchanged site makes no commit.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.rag.chunking import doc_page_url
from app.rag.markdown import MalformedDocument, parse_document
from tasks.textbook import DEFAULT_LOCALE, SourceFile

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "textbook-ops deploy-docs", "GIT_AUTHOR_EMAIL": "deploy-docs@textbook-ops.invalid",
    "GIT_COMMITTER_NAME": "textbook-ops deploy-docs", "GIT_COMMITTER_EMAIL": "deploy-docs@textbook-ops.invalid",
}
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)
HTML_TAG_RE = re.compile(r"<html\b([^>]*)>", re.I)


class DeployDocsError(RuntimeError):
    """A step of deploy-docs failed; the message says which and what to do."""


class GitCommandFailed(DeployDocsError):
    pass


class SiteBuildFailed(DeployDocsError):
    pass


class VerificationFailed(DeployDocsError):
    pass


def redact(text: str) -> str:
    """Remote URLs may carry a token (https://x-access-token:...@github.com/...): never log it."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", text)


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    if result.returncode != 0:
        raise GitCommandFailed(redact(f"git {args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"))
    return result.stdout.strip()


# ---- the source ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRevision:
    checkout: Path
    commit: str
    subject: str


@task(name="resolve-source-commit", cache_policy=NO_CACHE)
def resolve_source_commit(checkout: Path, ref: str = "HEAD") -> SourceRevision:
    """The commit that is deployed: `git rev-parse` of `ref` in the checkout (the working tree is not used)."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=checkout)
    return SourceRevision(checkout=checkout, commit=commit, subject=git("log", "-1", "--format=%s", commit, cwd=checkout))


@task(name="export-site-source", cache_policy=NO_CACHE)
def export_site_source(checkout: Path, commit: str, site_subdir: str, dest: Path) -> Path:
    """Export the site folder at `commit` (`git archive`), so the build and the ingest read exactly that commit.

    node_modules is not in git: the export links the checkout's (installed with `npm ci`). An export that
    is already complete is reused.
    """
    site_dir = dest / site_subdir
    done = dest / ".exported"
    modules = (checkout / site_subdir / "node_modules").resolve()
    if not modules.is_dir():
        raise SiteBuildFailed(f"{checkout / site_subdir}/node_modules is missing: run `npm ci` in {site_subdir}/ first")
    if not done.exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", commit, "--", site_subdir], cwd=checkout,
                                 capture_output=True, timeout=600)
        if archive.returncode != 0:
            raise GitCommandFailed(f"git archive {commit} {site_subdir} failed: {archive.stderr.decode(errors='replace')}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(dest, filter="data")
        if not (site_dir / "docusaurus.config.js").exists():
            raise SiteBuildFailed(f"{site_subdir}/docusaurus.config.js is not in commit {commit[:12]}")
        (site_dir / "node_modules").symlink_to(modules, target_is_directory=True)
        done.write_text(commit + "\n")
    return site_dir


def prune_work_dirs(parent: Path, keep: set[str]) -> None:
    """Exports and builds of older commits are not needed once a newer one is published."""
    for child in parent.iterdir() if parent.is_dir() else []:
        if child.name not in keep and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


# ---- the build ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteBuild:
    out_dir: Path
    commit: str
    api_url: str
    public_url: str
    seconds: float
    reused: bool


def build_environment(api_url: str, public_url: str) -> dict[str, str]:
    """What docusaurus.config.js reads: the API the widget calls, the site's origin and the path it is served under."""
    parts = urlsplit(public_url)
    return {
        "TEXTBOOK_API_URL": api_url,
        "TEXTBOOK_SITE_URL": f"{parts.scheme}://{parts.netloc}",
        "TEXTBOOK_BASE_URL": parts.path or "/",
        "NO_COLOR": "1", "FORCE_COLOR": "0", "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false",
    }


def build_error_summary(output: str, limit: int = 60) -> str:
    """Docusaurus prints its reason (broken links with their pages, an MDX error with file and line) after [ERROR]."""
    lines = [ANSI_RE.sub("", line).rstrip() for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if "[ERROR]" in line), max(0, len(lines) - limit))
    picked = [line for line in lines[start:] if line.strip() and not line.lstrip().startswith("at ")]
    return "\n".join(picked[:limit])


@task(name="build-site", cache_policy=NO_CACHE, timeout_seconds=1800)
def build_site(site_dir: Path, out_dir: Path, *, commit: str, api_url: str, public_url: str) -> SiteBuild:
    """`npm run build` with the production API URL; Docusaurus fails on broken links (onBrokenLinks: 'throw').

    A build of the same commit for the same URLs is reused (its stamp sits beside the folder), so re-running
    a deploy after a failed verification or push does not build again.
    """
    logger = get_run_logger()
    stamp = out_dir.with_name(out_dir.name + ".json")
    wanted = {"commit": commit, "api_url": api_url, "public_url": public_url}
    if out_dir.is_dir() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        logger.info("reusing the build of %s for %s", commit[:12], api_url)
        return SiteBuild(out_dir=out_dir, commit=commit, api_url=api_url, public_url=public_url, seconds=0.0, reused=True)
    stamp.unlink(missing_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(["npm", "run", "build", "--", "--out-dir", str(out_dir)], cwd=site_dir,
                            env={**os.environ, **build_environment(api_url, public_url)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise SiteBuildFailed(f"the site build of {commit[:12]} failed (exit {result.returncode}); nothing was "
                              f"published:\n{build_error_summary(result.stdout)}")
    stamp.write_text(json.dumps(wanted))
    logger.info("built %s in %.1f s", commit[:12], seconds)
    return SiteBuild(out_dir=out_dir, commit=commit, api_url=api_url, public_url=public_url, seconds=seconds, reused=False)


# ---- the pages a publish must serve -------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCheck:
    """A page the published site must serve: its path under the public URL and what it must look like."""

    path: str
    locale: str
    title: str | None = None
    source: str | None = None


def static_file_for(path: str, exists: Callable[[str], bool]) -> tuple[str | None, str | None]:
    """How GitHub Pages maps a request path to a file: (file, None), (None, redirect path) or (None, None).

    `/docs/x` serves `docs/x`, else `docs/x.html`, else redirects to `/docs/x/` when that folder has an
    index.html; `/docs/x/` serves `docs/x/index.html` only. `exists` answers for a path relative to the root.
    """
    relative = path.lstrip("/")
    if relative == "" or relative.endswith("/"):
        candidate = f"{relative}index.html"
        return (candidate, None) if exists(candidate) else (None, None)
    for candidate in (relative, f"{relative}.html"):
        if exists(candidate):
            return candidate, None
    if exists(f"{relative}/index.html"):
        return None, f"/{relative}/"
    return None, None


def built_file(build_dir: Path, path: str) -> Path | None:
    """The file of the build a page path is served from (following a folder redirect)."""
    def exists(relative: str) -> bool:
        return (build_dir / relative).is_file()

    found, redirect = static_file_for(path, exists)
    if redirect is not None:
        found, _ = static_file_for(redirect, exists)
    return build_dir / found if found else None


@task(name="list-pages-to-verify", cache_policy=NO_CACHE)
def pages_to_verify(files: list[SourceFile], build_dir: Path) -> list[PageCheck]:
    """The home page of every locale and every chapter in every locale, each with the title its source gives.

    Fails before anything is published when the build lacks one of them.
    """
    locales = sorted({f.locale for f in files}, key=lambda loc: (loc != DEFAULT_LOCALE, loc))
    pages = [PageCheck(path="" if loc == DEFAULT_LOCALE else f"{loc}/", locale=loc) for loc in locales]
    for source_file in files:
        try:
            document = parse_document(source_file.path.read_bytes(), fallback_title=source_file.path.stem)
        except MalformedDocument as exc:
            raise SiteBuildFailed(f"{source_file.locale}:{source_file.relative_path} cannot be read: {exc}") from None
        url = doc_page_url(source_file.relative_path, locale=source_file.locale, front_matter=document.front_matter)
        pages.append(PageCheck(path=url.lstrip("/"), locale=source_file.locale, title=document.title,
                               source=f"{source_file.locale}:{source_file.relative_path}"))
    missing = [p.path or "/" for p in pages if built_file(build_dir, p.path) is None]
    if missing:
        raise SiteBuildFailed(f"the build has no page for {', '.join(missing)}; nothing was published")
    return pages


# ---- publishing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    remote: str
    branch: str
    previous: str | None
    commit: str
    changed: bool


def remote_tip(remote: str, branch: str) -> str | None:
    out = git("ls-remote", "--heads", remote, f"refs/heads/{branch}")
    return out.split()[0] if out else None


def deploy_message(commit: str, subject: str, api_url: str) -> str:
    return (f"Deploy docs from {commit[:12]}: {subject}\n\nsource-commit: {commit}\napi-url: {api_url}\n"
            "published-by: textbook-ops deploy-docs\n")


@task(name="publish-site", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, timeout_seconds=1800)
def publish_site(build_dir: Path, *, remote: str, branch: str, repo_dir: Path, message: str) -> Publish:
    """Make the build folder (plus `.nojekyll`) the new tip of `branch`, only when the output changed, and push it.

    The push is a plain fast-forward on top of the tip read just before: a concurrent publisher makes it fail
    rather than being overwritten (the retry then builds on the new tip).
    """
    logger = get_run_logger()
    if not (repo_dir / "HEAD").exists():
        repo_dir.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--quiet", str(repo_dir))
    previous = remote_tip(remote, branch)
    if previous:
        git("fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{branch}:refs/deploy/previous", cwd=repo_dir)
    (build_dir / ".nojekyll").touch()  # GitHub Pages: serve the files as they are (no Jekyll)
    index = repo_dir / "deploy-index"
    index.unlink(missing_ok=True)
    tree_env = {"GIT_DIR": str(repo_dir), "GIT_WORK_TREE": str(build_dir), "GIT_INDEX_FILE": str(index)}
    git("-c", "core.excludesFile=/dev/null", "add", "--all", "--force", ".", cwd=build_dir, env=tree_env)
    tree = git("write-tree", cwd=build_dir, env=tree_env)
    index.unlink(missing_ok=True)
    if previous and git("rev-parse", f"{previous}^{{tree}}", cwd=repo_dir) == tree:
        logger.info("%s already holds this output (%s): no commit", branch, previous[:12])
        return Publish(remote=redact(remote), branch=branch, previous=previous, commit=previous, changed=False)
    parents = ["-p", previous] if previous else []
    commit = git("commit-tree", tree, *parents, "-m", message, cwd=repo_dir, env=GIT_IDENTITY)
    git("push", "--quiet", remote, f"{commit}:refs/heads/{branch}", cwd=repo_dir)
    logger.info("pushed %s to %s (previous %s)", commit[:12], branch, previous[:12] if previous else "none")
    return Publish(remote=redact(remote), branch=branch, previous=previous, commit=commit, changed=True)


@task(name="rollback-branch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def rollback_branch(*, remote: str, branch: str, repo_dir: Path, failed: str, previous: str | None) -> str:
    """Put `branch` back on the commit that was live before (delete it if there was none).

    A force push with lease: it moves the branch only while it still points at the failed commit, so a
    newer publish by someone else is never thrown away. The failed commit stays in the report.
    """
    lease = f"--force-with-lease=refs/heads/{branch}:{failed}"
    target = f"{previous}:refs/heads/{branch}" if previous else f":refs/heads/{branch}"
    git("push", "--quiet", lease, remote, target, cwd=repo_dir)
    get_run_logger().warning("rolled %s back from %s to %s", branch, failed[:12], previous[:12] if previous else "nothing")
    return previous or ""


# ---- verification -----------------------------------------------------------------------------------------------


@dataclass
class PageResult:
    path: str
    url: str
    ok: bool = False
    status: int | None = None
    problem: str = ""


@dataclass
class Verification:
    ok: bool
    attempts: int
    seconds: float
    pages: list[PageResult] = field(default_factory=list)

    @property
    def failures(self) -> list[PageResult]:
        return [p for p in self.pages if not p.ok]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "attempts": self.attempts, "seconds": round(self.seconds, 2),
                "pages": [asdict(p) for p in self.pages]}


def check_page(client: httpx.Client, public_url: str, page: PageCheck, build_dir: Path) -> PageResult:
    """200, byte-identical to this build (not a stale copy), the chapter's title, and right-to-left for Urdu."""
    url = urljoin(public_url, page.path)
    result = PageResult(path=page.path or "/", url=url)
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        result.problem = f"{exc.__class__.__name__}: {exc}"
        return result
    result.status = response.status_code
    if response.status_code != 200:
        result.problem = f"HTTP {response.status_code}"
        return result
    built = built_file(build_dir, page.path)
    if built is not None and hashlib.sha256(response.content).digest() != hashlib.sha256(built.read_bytes()).digest():
        result.problem = "serves other content than this build (stale or rewritten)"
        return result
    text = response.text
    title = TITLE_RE.search(text)
    served_title = html.unescape(title.group(1)).strip() if title else ""
    if page.title and not served_title.startswith(page.title):
        result.problem = f"title is {served_title!r}, expected {page.title!r}"
        return result
    attributes = HTML_TAG_RE.search(text)
    attributes_text = attributes.group(1) if attributes else ""
    if f'lang="{page.locale}"' not in attributes_text:
        result.problem = f"<html> has no lang=\"{page.locale}\""
        return result
    rtl = 'dir="rtl"' in attributes_text
    if rtl != (page.locale == "ur"):
        result.problem = "not right-to-left" if page.locale == "ur" else "right-to-left in a left-to-right locale"
        return result
    result.ok = True
    return result


@task(name="verify-published-site", cache_policy=NO_CACHE, timeout_seconds=3700)
def verify_published_site(public_url: str, pages: list[PageCheck], build_dir: Path, *, timeout_s: float,
                          interval_s: float = 5.0) -> Verification:
    """Fetch every page from the host until all pass or `timeout_s` runs out (hosts take a while to catch up)."""
    logger = get_run_logger()
    started = time.monotonic()
    results = {p.path: PageResult(path=p.path or "/", url=urljoin(public_url, p.path)) for p in pages}
    pending = list(pages)
    attempts = 0
    delay = interval_s
    with httpx.Client(follow_redirects=True, timeout=20, headers={"Cache-Control": "no-cache"}) as client:
        while True:
            attempts += 1
            for page in pending:
                results[page.path] = check_page(client, public_url, page, build_dir)
            pending = [p for p in pending if not results[p.path].ok]
            elapsed = time.monotonic() - started
            if not pending or elapsed + delay > timeout_s:
                break
            logger.info("attempt %d: %d of %d pages not served yet (%s); next check in %.0f s", attempts, len(pending),
                        len(pages), results[pending[0].path].problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 60.0)
    verification = Verification(ok=not pending, attempts=attempts, seconds=time.monotonic() - started,
                                pages=[results[p.path] for p in pages])
    logger.info("verification %s after %d attempt(s): %d pages", "passed" if verification.ok else "FAILED", attempts,
                len(pages))
    return verification
