"""deploy-docs: build the textbook site for production, publish it to the gh-pages branch, verify, re-index.

When it runs: on demand, after docs changes are merged (the Prefect UI, `prefect deployment run
'deploy-docs/deploy-docs'`, or `python -m flows.deploy_docs`).
What it does, in order: take a commit of the checkout (HEAD by default) -> export its site folder ->
`npm run build` with the production API URL (Docusaurus fails on broken links) -> make the output the new
tip of the `gh-pages` branch of DOCS_GIT_REMOTE (a commit only when the output changed, carrying the source
commit) and push -> fetch the home page and every chapter in both locales from DOCS_PUBLIC_URL until the
host serves exactly this build -> run `ingest-textbook` on the same commit, so the assistant never cites a
page the site no longer has. If verification fails, the branch goes back to the previous gh-pages commit
and the run fails with the pages that failed.

When it fails: read the `deploy-docs` artifact and runbooks/deploy-docs.md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from app.settings import PROJECT_ROOT, Settings, SettingsError, get_settings
from flows.cli import flow_parser, run_cli
from flows.ingest_textbook import ingest_textbook
from flows.parameters import CollectionName, GitRef, HttpUrl, PositiveSeconds, RelativePath
from tasks.concurrency import exclusive
from tasks.pages import (
    DeployDocsError,
    Publish,
    SourceRevision,
    Verification,
    VerificationFailed,
    build_site,
    deploy_message,
    export_site_source,
    pages_to_verify,
    prune_work_dirs,
    publish_site,
    redact,
    resolve_source_commit,
    rollback_branch,
    verify_published_site,
)
from tasks.textbook import discover_chapters

KEEP_WORK_DIRS = 3


@dataclass
class DeployReport:
    status: str = "running"
    source: SourceRevision | None = None
    build_seconds: float | None = None
    build_reused: bool = False
    publish: Publish | None = None
    verification: Verification | None = None
    rolled_back_to: str | None = None
    ingest: dict | None = None
    error: str | None = None
    steps: list[str] = field(default_factory=list)


def publish_target(settings: Settings, *, remote: str | None, public_url: str | None,
                   api_url: str | None) -> tuple[str, str, str]:
    """Where the site goes (remote, public URL ending in /, the API its widget calls): parameters, else settings.
    SettingsError naming every missing one."""
    remote = remote or settings.docs_git_remote
    public_url = public_url or settings.docs_public_url
    api_url = api_url or settings.docs_api_url
    missing = [name for name, value in (("DOCS_GIT_REMOTE", remote), ("DOCS_PUBLIC_URL", public_url),
                                        ("DOCS_API_URL", api_url)) if not value]
    if missing:
        raise SettingsError(f"deploy-docs needs {', '.join(missing)} (settings, or the flow's parameters)")
    assert remote and public_url and api_url
    return remote, public_url.rstrip("/") + "/", api_url


@flow(name="deploy-docs", log_prints=True)
def deploy_docs(
    ref: GitRef = "HEAD",
    checkout: str = str(PROJECT_ROOT),
    site_subdir: RelativePath = "website",
    remote: str | None = None,
    branch: GitRef | None = None,
    public_url: HttpUrl | None = None,
    api_url: HttpUrl | None = None,
    collection: CollectionName | None = None,
    verify_timeout_s: PositiveSeconds | None = None,
    verify_interval_s: PositiveSeconds = 5.0,
    work_dir: str | None = None,
) -> dict:
    """Build, publish to gh-pages, verify (rolling back on failure), then re-index the published commit."""
    logger = get_run_logger()
    settings = get_settings()
    remote, public_url, api_url = publish_target(settings, remote=remote, public_url=public_url, api_url=api_url)
    branch = branch or settings.docs_branch
    work = Path(work_dir) if work_dir else settings.resolved_docs_work_dir
    report = DeployReport()
    with exclusive("deploy-docs"):  # one deploy at a time: they share the publish repository
        try:
            # 1. The commit to deploy, exported as it is in git.
            report.source = resolve_source_commit(Path(checkout).resolve(), ref)
            commit = report.source.commit
            site_dir = export_site_source(report.source.checkout, commit, site_subdir, work / "sources" / commit)
            # 2. The production build; Docusaurus refuses broken links.
            build = build_site(site_dir, work / "builds" / commit, commit=commit, api_url=api_url, public_url=public_url)
            report.build_seconds, report.build_reused = build.seconds, build.reused
            pages = pages_to_verify(discover_chapters(site_dir), build.out_dir)
            # 3. Publish: a commit on the branch only when the output changed.
            report.publish = publish_site(build.out_dir, remote=remote, branch=branch, repo_dir=work / "publish.git",
                                          message=deploy_message(commit, report.source.subject, api_url))
            # 4. Verify what the host serves; roll back what this run pushed if it does not serve it.
            report.verification = verify_published_site(
                public_url, pages, build.out_dir, timeout_s=verify_timeout_s or settings.docs_verify_timeout_s,
                interval_s=verify_interval_s,
            )
            if not report.verification.ok:
                failures = "; ".join(f"{p.path}: {p.problem}" for p in report.verification.failures[:10])
                reason = f"{len(report.verification.failures)} of {len(pages)} pages failed verification ({failures})"
                if report.publish.changed:
                    report.rolled_back_to = rollback_branch(remote=remote, branch=branch, repo_dir=work / "publish.git",
                                                            failed=report.publish.commit, previous=report.publish.previous)
                    target = report.rolled_back_to[:12] or "no branch (there was none before)"
                    reason += f"; {branch} rolled back to {target}"
                raise VerificationFailed(reason)
            # 5. The index follows the site: the same commit's chapters, removed ones deleted.
            try:
                report.ingest = ingest_textbook(source=str(site_dir), collection=collection or settings.collection)
            except Exception as exc:
                raise DeployDocsError(f"{branch} serves {commit[:12]} (verified), but the index was not updated: "
                                      f"{exc.__class__.__name__}: {exc}; see runbooks/ingest-textbook.md, then "
                                      "re-run deploy-docs") from exc
            report.status = "published" if report.publish.changed else "unchanged"
            prune_work_dirs(work / "sources", keep=_recent(work / "sources", commit))
            prune_work_dirs(work / "builds", keep=_recent(work / "builds", commit))
        except Exception as exc:
            report.status = "failed"
            report.error = redact(f"{exc.__class__.__name__}: {exc}")
            raise
        finally:
            publish_report(report, redact(remote), branch, public_url)
    logger.info("deploy-docs %s: %s at %s", report.status, commit[:12], report.publish.commit[:12])
    return {
        "status": report.status, "source_commit": commit, "branch": branch, "pages_commit": report.publish.commit,
        "previous_commit": report.publish.previous, "changed": report.publish.changed,
        "pages_verified": len(report.verification.pages), "build_seconds": report.build_seconds,
        "build_reused": report.build_reused, "ingest": report.ingest,
    }


def _recent(parent: Path, current: str) -> set[str]:
    """The current commit's folder and the newest few others (a quick re-deploy of the previous commit)."""
    folders = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    return {current, *[p.name for p in folders[:KEEP_WORK_DIRS]]}


def report_markdown(report: DeployReport, remote: str, branch: str, public_url: str) -> str:
    source = report.source
    lines = [f"# Docs deploy: {report.status}", ""]
    lines += [f"- source commit: `{source.commit}` ({source.subject})" if source else "- source commit: -",
              f"- remote: `{remote}`, branch `{branch}`, served at {public_url}"]
    if report.build_seconds is not None:
        lines.append(f"- build: {'reused' if report.build_reused else f'{report.build_seconds:.1f} s'}")
    if report.publish:
        pushed = f"new commit `{report.publish.commit}`" if report.publish.changed else "unchanged, no commit"
        lines.append(f"- {branch}: {pushed} (previous `{report.publish.previous or '-'}`)")
    if report.rolled_back_to is not None:
        lines.append(f"- **rolled back** to `{report.rolled_back_to or '(branch deleted: there was none before)'}`")
    if report.ingest:
        i = report.ingest
        lines.append(f"- ingest: {i['status']}, +{i['chunks_added']} ~{i['chunks_updated']} -{i['chunks_deleted']} chunks, "
                     f"{i['files_seen']} files, generation `{i['generation']}`")
    if report.verification:
        v = report.verification
        lines += ["", f"## Pages verified: {sum(p.ok for p in v.pages)} of {len(v.pages)} "
                      f"({v.attempts} attempt(s), {v.seconds:.1f} s)", "", "| page | status | problem |", "|---|---|---|"]
        lines += [f"| `{p.path}` | {p.status or '-'} | {p.problem or 'ok'} |" for p in v.pages]
    if report.error:
        lines += ["", "## Error", "", f"```\n{report.error}\n```", "", "See runbooks/deploy-docs.md."]
    return "\n".join(lines)


def publish_report(report: DeployReport, remote: str, branch: str, public_url: str) -> None:
    try:
        create_markdown_artifact(key="deploy-docs", markdown=report_markdown(report, remote, branch, public_url),
                                 description="docs deploy: commit, pages verified, ingest")
    except Exception as exc:  # noqa: BLE001 - a report failure must not hide the run's own outcome
        get_run_logger().error("could not write the deploy-docs artifact: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.deploy_docs", __doc__)
    parser.add_argument("--ref", default="HEAD", help="the commit (or branch, tag) of the checkout to deploy (default HEAD)")
    parser.add_argument("--checkout", default=str(PROJECT_ROOT), help="the git checkout holding the site (default: this one)")
    parser.add_argument("--remote", help="git remote to push the built site to (default DOCS_GIT_REMOTE)")
    parser.add_argument("--branch", help="branch the host serves (default DOCS_BRANCH, gh-pages)")
    parser.add_argument("--public-url", help="where the host serves the branch (default DOCS_PUBLIC_URL)")
    parser.add_argument("--api-url", help="the API the published chat widget calls (default DOCS_API_URL)")
    parser.add_argument("--verify-timeout", type=float, help="seconds to wait for the host (default DOCS_VERIFY_TIMEOUT_S)")
    args = parser.parse_args(argv)
    publish_target(get_settings(), remote=args.remote, public_url=args.public_url, api_url=args.api_url)
    started = time.perf_counter()
    result = deploy_docs(ref=args.ref, checkout=args.checkout, remote=args.remote, branch=args.branch,
                         public_url=args.public_url, api_url=args.api_url, verify_timeout_s=args.verify_timeout)
    print(f"{result['status']}: {result['source_commit'][:12]} -> {result['branch']} {result['pages_commit'][:12]}, "
          f"{result['pages_verified']} pages verified, ingest {result['ingest']['status']} "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
