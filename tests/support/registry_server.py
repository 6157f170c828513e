"""A small local server following GHCR's pull API (the OCI distribution spec and GHCR's token service).

  GET  /token?scope=repository:<name>:pull  -> {"token": ...}; with `private=True` only for basic auth with the
                                              configured user and password (401 otherwise), as GHCR does
  HEAD|GET /v2/<name>/manifests/<reference> -> 200 with `Docker-Content-Digest` (reference: a tag or a digest),
                                              an OCI manifest whose `org.opencontainers.image.revision`
                                              annotation is the commit (as release.yml's `annotations` set it),
                                              404 `MANIFEST_UNKNOWN`; 401 with a `WWW-Authenticate: Bearer`
                                              challenge without a valid token
`push(tag)` stores an image manifest as the release workflow's push would, and returns its digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.http_fakes import QuietHandler
from tests.support.render_server import LocalServer

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


class FakeRegistry(LocalServer):
    def __init__(self, name: str = "textbook-ops/textbook-ops", *, private: bool = False, username: str = "ci",
                 password: str = "ghcr-test-token") -> None:  # pragma: allowlist secret
        self.name, self.private, self.username, self.password = name, private, username, password
        self.manifests: dict[str, bytes] = {}  # digest -> manifest
        self.tags: dict[str, str] = {}  # tag -> digest
        self.requests: list[tuple[str, str]] = []
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def repository(self) -> str:
        """IMAGE_REPOSITORY for the flow: host:port/name (the API is REGISTRY_API_URL, plain HTTP here)."""
        return f"{self.root_url.removeprefix('http://')}/{self.name}"

    def push(self, tag: str) -> str:
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "annotations": {
            "org.opencontainers.image.revision": tag}, "layers": []}, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        with self._lock:
            self.manifests[digest] = manifest
            self.tags[tag] = digest
        return digest

    def tag_of(self, digest: str) -> str | None:
        return next((tag for tag, d in self.tags.items() if d == digest), None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def _send(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None,
                      head: bool = False) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _errors(self, status: int, code: str, message: str, head: bool = False,
                        headers: dict[str, str] | None = None) -> None:
                self._send(status, {"errors": [{"code": code, "message": message}]},
                           {"content-type": "application/json", **(headers or {})}, head)

            def _token(self, url: Any) -> None:
                scope = parse_qs(url.query).get("scope", [""])[0]
                if scope != f"repository:{fake.name}:pull":
                    self._errors(403, "DENIED", f"requested access to the resource is denied: {scope}")
                    return
                if fake.private:
                    expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
                    if self.headers.get("authorization", "") != f"Basic {expected}":
                        self._errors(401, "UNAUTHORIZED", "authentication required")
                        return
                token = secrets.token_urlsafe(16)
                fake._tokens.add(token)
                self._send(200, {"token": token}, {"content-type": "application/json"})

            def _manifest(self, url: Any, head: bool) -> None:
                prefix = f"/v2/{fake.name}/manifests/"
                if not url.path.startswith(prefix):
                    self._errors(404, "NAME_UNKNOWN", "repository name not known to registry", head)
                    return
                token = self.headers.get("authorization", "").removeprefix("Bearer ")
                if token not in fake._tokens:
                    challenge = (f'Bearer realm="{fake.root_url}/token",service="registry",'
                                 f'scope="repository:{fake.name}:pull"')
                    self._errors(401, "UNAUTHORIZED", "authentication required", head,
                                 {"www-authenticate": challenge})
                    return
                reference = url.path[len(prefix):]
                digest = reference if reference.startswith("sha256:") else fake.tags.get(reference)
                manifest = fake.manifests.get(digest or "")
                if manifest is None:
                    self._errors(404, "MANIFEST_UNKNOWN", "manifest unknown", head)
                    return
                self._send(200, manifest, {"content-type": MANIFEST_TYPE, "docker-content-digest": str(digest)}, head)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                fake.requests.append((method, url.path))
                if url.path == "/token" and method == "GET":
                    self._token(url)
                else:
                    self._manifest(url, head=method == "HEAD")

            def do_GET(self) -> None:
                self._route("GET")

            def do_HEAD(self) -> None:
                self._route("HEAD")

        return Handler
