"""The docs site: build `website/` with Docusaurus and serve the static build on loopback.

`python -m devenv.site build [--api-url URL] [--out-dir DIR]` builds (English and Urdu) with the chat widget
pointed at the API; `python -m devenv.site serve --directory website/build --port 3000` serves a build the way
a static host does: `/docs/<id>` is `docs/<id>.html` (the site is built with `trailingSlash: false`), a folder
is its `index.html`, and an unknown path gets the locale's `404.html` with status 404.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.settings import PROJECT_ROOT

WEBSITE_DIR = PROJECT_ROOT / "website"
LOCALES = ("ur",)  # the non-default locales: their pages live under /<locale>/
SOURCES = ("docusaurus.config.js", "sidebars.js", "package-lock.json", "src", "docs", "i18n", "static")
STAMP_NAME = ".source-stamp"


class SiteBuildError(RuntimeError):
    """npm or Docusaurus failed; the message carries the end of their output."""


def source_stamp(website_dir: Path, api_url: str) -> str:
    """A hash of everything the build reads, and the API URL baked into it."""
    digest = hashlib.sha256(api_url.encode())
    for name in SOURCES:
        root = website_dir / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.exists() else []
        for path in files:
            digest.update(path.relative_to(website_dir).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_is_current(website_dir: Path, out_dir: Path, api_url: str) -> bool:
    stamp = out_dir / STAMP_NAME
    return stamp.exists() and stamp.read_text().strip() == source_stamp(website_dir, api_url)


def build_site(*, api_url: str, website_dir: Path = WEBSITE_DIR, out_dir: Path | None = None,
               site_url: str | None = None, base_url: str | None = None, timeout_s: float = 600) -> Path:
    """`docusaurus build` for every locale; fails on a broken link. Returns the output folder.

    api_url is what the chat widget calls; site_url the public origin; base_url the path the site is served under
    (default `/`). The output holds `<out>/.source-stamp` (what `build_is_current` compares).

    Each build gets its own generated-files folder, so builds into different output folders (a test's, the
    deploy flow's, make up's) never write over each other's intermediate files.
    """
    out_dir = (out_dir or website_dir / "build").resolve()
    if not (website_dir / "node_modules" / ".bin" / "docusaurus").exists():
        raise SiteBuildError(f"{website_dir}/node_modules is missing: run `npm ci` in {website_dir} (make install does)")
    generated = website_dir / f".docusaurus-{hashlib.sha256(str(out_dir).encode()).hexdigest()[:12]}"
    env = {**os.environ, "TEXTBOOK_API_URL": api_url, "DOCUSAURUS_GENERATED_FILES_DIR_NAME": str(generated)}
    if site_url:
        env["TEXTBOOK_SITE_URL"] = site_url
    if base_url:
        env["TEXTBOOK_BASE_URL"] = base_url
    try:
        result = subprocess.run(
            ["npx", "--no-install", "docusaurus", "build", "--out-dir", str(out_dir)], cwd=website_dir, env=env,
            capture_output=True, text=True, timeout=timeout_s,
        )
    finally:
        shutil.rmtree(generated, ignore_errors=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise SiteBuildError(f"the site build failed (exit {result.returncode}):\n{tail}")
    (out_dir / STAMP_NAME).write_text(source_stamp(website_dir, api_url) + "\n")
    return out_dir


class SiteRequestHandler(SimpleHTTPRequestHandler):
    """Static files with Docusaurus's clean URLs and real 404s; quiet, no directory listings."""

    def _resolve(self, url_path: str) -> tuple[Path | None, Path | None]:
        """The file for a URL path, or (None, the locale's 404 page)."""
        root = Path(self.directory).resolve()
        relative = unquote(url_path).lstrip("/")
        candidate = (root / relative).resolve()
        if candidate == root or candidate.is_relative_to(root):
            for option in (candidate, candidate / "index.html", candidate.with_name(candidate.name + ".html")):
                if option.is_file() and option.name != STAMP_NAME:
                    return option, None
        locale = relative.split("/", 1)[0]
        not_found = root / locale / "404.html" if locale in LOCALES else root / "404.html"
        return None, not_found

    def send_head(self):
        path, not_found = self._resolve(urlsplit(self.path).path)
        status = HTTPStatus.OK
        if path is None:
            status = HTTPStatus.NOT_FOUND
            if not_found is None or not not_found.is_file():
                self.send_error(HTTPStatus.NOT_FOUND)
                return None
            path = not_found
        body = path.open("rb")
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(path.stat().st_size))
        hashed_asset = "/assets/" in self.path and path.suffix in {".js", ".css", ".woff2", ".svg", ".png"}
        self.send_header("Cache-Control", "public, max-age=31536000, immutable" if hashed_asset else "no-cache")
        self.end_headers()
        return body

    def log_message(self, format: str, *args: object) -> None:
        if os.environ.get("SITE_ACCESS_LOG") == "1":
            super().log_message(format, *args)


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a browser that closed the connection early (a new page, a closed tab): not a server error
        super().handle_error(request, client_address)


def site_server(directory: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A server for `directory` bound to host:port (port 0: any free port); call serve_forever()."""
    server = SiteServer((host, port), partial(SiteRequestHandler, directory=str(directory)))
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.site", description="build or serve the docs site")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="docusaurus build (en + ur) with the API URL baked in")
    build.add_argument("--api-url", default="http://127.0.0.1:8000", help="the query service the widget calls")
    build.add_argument("--out-dir", type=Path, default=None, help="default: website/build")
    build.add_argument("--site-url", default=None, help="the public origin (canonical URLs, sitemap)")
    serve = commands.add_parser("serve", help="serve a build on loopback")
    serve.add_argument("--directory", type=Path, default=WEBSITE_DIR / "build")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            out = build_site(api_url=args.api_url, out_dir=args.out_dir, site_url=args.site_url)
        except SiteBuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"built {out}")
        return 0
    if not (args.directory / "index.html").is_file():
        print(f"error: {args.directory} holds no build (python -m devenv.site build)", file=sys.stderr)
        return 2
    server = site_server(args.directory, args.host, args.port)
    print(f"serving {args.directory} on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
