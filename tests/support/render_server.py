"""A small local server following Render's documented deploy API, and the query service as its deployed target.

`FakeRender` serves the endpoints of https://api-docs.render.com the deploy flow uses, with Bearer-key
authentication (401 otherwise) and Render's error shape `{"id", "message"}`:
  GET  /v1/services/{serviceId}/deploys?limit=N   -> [{"deploy": {...}, "cursor": "..."}], newest first
  POST /v1/services/{serviceId}/deploys           {"commitId"?, "imageUrl"?, "clearCache"?} -> 201 deploy
                                                  (an imageUrl deploy pulls the image: no build step)
  GET  /v1/services/{serviceId}/deploys/{deployId}
  POST /v1/services/{serviceId}/deploys/{deployId}/cancel
  POST /v1/services/{serviceId}/rollback          {"deployId"} -> 201 deploy (trigger "rollback")
A deploy moves `created` -> `build_in_progress` -> `update_in_progress` -> `live` (a rollback reuses the build:
`created` -> `update_in_progress` -> `live`), one step every `step_s`; going live calls `activate(deploy)`, which
switches the target to that version, and the previously live deploy becomes `deactivated`. Commits in
`build_failures` end `build_failed`, those in `stuck` stay `build_in_progress`; `activate` raising ends the
deploy `update_failed`, with the old one live.

`ServiceThread` is the real query service (`create_app`) under uvicorn in a thread, on one fixed port, restarted
with other settings for each version: in one process the embedding model and the index shards are shared, so a
switch takes a fraction of a second.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.http_fakes import QuietHandler
from tests.support.webhook import PostRecorder

FAILED = {"build_failed", "update_failed", "pre_deploy_failed", "canceled", "deactivated"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class LocalServer:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeRender(LocalServer):
    def __init__(self, *, api_key: str = "rnd_test_key", service_id: str = "srv-textbook-ops", step_s: float = 0.1,
                 activate: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.api_key, self.service_id, self.step_s = api_key, service_id, step_s
        self.activate = activate or (lambda deploy: None)
        self.build_failures: set[str] = set()
        self.stuck: set[str] = set()  # commits whose build, or image URLs whose update, never finishes
        self.deploys: list[dict[str, Any]] = []  # newest first
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def seed_live(self, commit_id: str | None = None, image_url: str | None = None) -> dict[str, Any]:
        """A deploy that was live before the test: activates the target with it."""
        deploy = self._new(commit_id=commit_id, image_url=image_url, trigger="manual")
        self.activate(deploy)
        deploy.update(status="live", finishedAt=_now(), updatedAt=_now())
        return deploy

    def deploy(self, deploy_id: str) -> dict[str, Any]:
        return next(d for d in self.deploys if d["id"] == deploy_id)

    def live(self) -> dict[str, Any] | None:
        return next((d for d in self.deploys if d["status"] == "live"), None)

    def _new(self, *, commit_id: str | None, image_url: str | None, trigger: str) -> dict[str, Any]:
        deploy: dict[str, Any] = {"id": f"dep-{uuid.uuid4().hex[:20]}", "status": "created", "trigger": trigger,
                                  "createdAt": _now(), "updatedAt": _now(), "startedAt": _now()}
        if commit_id:
            deploy["commit"] = {"id": commit_id, "message": f"commit {commit_id[:8]}", "createdAt": _now()}
        if image_url:  # Render reports the digest it pulled: the pinned one, or the tag's current one
            pinned = image_url.rsplit("@", 1)[1] if "@" in image_url else None
            deploy["image"] = {"ref": image_url, "sha": pinned or "sha256:" + uuid.uuid4().hex * 2}
        with self._lock:
            self.deploys.insert(0, deploy)
        return deploy

    def _progress(self, deploy: dict[str, Any], plan: list[str]) -> None:
        for status in plan:
            time.sleep(self.step_s)
            if deploy["status"] == "canceled":
                return
            if status == "live":
                try:
                    self.activate(deploy)
                except Exception:  # noqa: BLE001 - Render: the new instances never became healthy
                    deploy.update(status="update_failed", finishedAt=_now(), updatedAt=_now())
                    return
                with self._lock:
                    for other in self.deploys:
                        if other is not deploy and other["status"] == "live":
                            other.update(status="deactivated", updatedAt=_now())
            deploy.update(status=status, updatedAt=_now())
            if status == "live" or status in FAILED:
                deploy["finishedAt"] = _now()

    def _start(self, deploy: dict[str, Any], plan: list[str]) -> None:
        threading.Thread(target=self._progress, args=(deploy, plan), daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def _error(self, status: int, message: str) -> None:
                self._json(status, {"id": uuid.uuid4().hex, "message": message})

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                fake.requests.append((method, url.path, body))
                if self.headers.get("authorization", "") != f"Bearer {fake.api_key}":
                    self._error(401, "Unauthorized")
                    return
                match = re.fullmatch(r"/v1/services/([^/]+)(/.*)", url.path)
                if not match:
                    self._error(404, "Not Found")
                    return
                service_id, rest = match.groups()
                if service_id != fake.service_id:
                    self._error(404, "service not found")
                    return
                query = parse_qs(url.query)
                if rest == "/deploys" and method == "GET":
                    limit = int(query.get("limit", ["20"])[0])
                    if not 1 <= limit <= 100:
                        self._error(400, "limit must be between 1 and 100")
                        return
                    statuses = {s for value in query.get("status", []) for s in value.split(",")}
                    items = [d for d in fake.deploys if not statuses or d["status"] in statuses][:limit]
                    self._json(200, [{"deploy": d, "cursor": d["id"]} for d in items])
                elif rest == "/deploys" and method == "POST":
                    if body.get("commitId") and body.get("imageUrl"):
                        self._error(400, "commitId and imageUrl cannot be combined")
                        return
                    deploy = fake._new(commit_id=body.get("commitId"), image_url=body.get("imageUrl"), trigger="api")
                    commit = body.get("commitId")
                    if body.get("imageUrl"):  # a prebuilt image: pulled, no build
                        fake._start(deploy, ["update_in_progress"] if body["imageUrl"] in fake.stuck else
                                    ["update_in_progress", "live"])
                    else:
                        fake._start(deploy, ["build_in_progress"] if commit in fake.stuck else
                                    ["build_in_progress", "build_failed"] if commit in fake.build_failures
                                    else ["build_in_progress", "update_in_progress", "live"])
                    self._json(201, deploy)
                elif rest == "/rollback" and method == "POST":
                    if not body.get("deployId"):
                        self._error(400, "deployId is required")
                        return
                    try:
                        target = fake.deploy(body["deployId"])
                    except StopIteration:
                        self._error(404, "deploy not found")
                        return
                    deploy = fake._new(commit_id=(target.get("commit") or {}).get("id"),
                                       image_url=(target.get("image") or {}).get("ref"), trigger="rollback")
                    fake._start(deploy, ["update_in_progress", "live"])
                    self._json(201, deploy)
                elif (found := re.fullmatch(r"/deploys/([^/]+)(/cancel)?", rest)) is not None:
                    try:
                        deploy = fake.deploy(found.group(1))
                    except StopIteration:
                        self._error(404, "deploy not found")
                        return
                    if found.group(2) and method == "POST":
                        if deploy["status"] == "live" or deploy["status"] in FAILED:
                            self._error(400, f"deploy is already {deploy['status']}")
                            return
                        deploy.update(status="canceled", finishedAt=_now(), updatedAt=_now())
                    elif found.group(2) or method != "GET":
                        self._error(405, "Method Not Allowed")
                        return
                    self._json(200, deploy)
                else:
                    self._error(404, "Not Found")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler


class ServiceThread:
    """The query service under uvicorn in this process, restartable on the same port with other settings."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, settings: Any, timeout_s: float = 120) -> None:
        import uvicorn

        from app.main import create_app

        self.stop()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the query service did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None


class WebhookRecorder:
    """Records JSON POSTs (the notification block's webhook calls). Started on creation."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._server = PostRecorder(lambda _path, body: self.received.append(json.loads(body or b"{}")))
        self.url = f"{self._server.base_url}/hook"

    def stop(self) -> None:
        self._server.stop()


def main(argv: list[str] | None = None) -> int:
    """A Render and GHCR emulator for trying deploy-backend from the Prefect UI against the `make up` service:
    the registry holds an image for each of the last 20 commits; deploys go live without switching anything (the
    gates check the running service); `--image-fails SHA` makes that commit's image fail to start."""
    import argparse
    import subprocess

    from tests.support.registry_server import FakeRegistry

    parser = argparse.ArgumentParser(prog="python -m tests.support.render_server", description=main.__doc__)
    parser.add_argument("--target", default="http://127.0.0.1:8000", help="the service the gates check")
    parser.add_argument("--image-fails", action="append", default=[], metavar="SHA")
    args = parser.parse_args(argv)
    registry = FakeRegistry().start()
    commits = subprocess.run(["git", "rev-list", "--max-count=20", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.split()
    for commit in commits:
        registry.push(commit)
    failing = {registry.tags[c] for c in args.image_fails if c in registry.tags}

    def activate(deploy: dict[str, Any]) -> None:
        if (deploy.get("image") or {}).get("sha") in failing:
            raise RuntimeError("the image's instances never became healthy")

    fake = FakeRender(step_s=2.0, activate=activate).start()
    live = commits[1]
    fake.seed_live(image_url=f"{registry.repository}@{registry.tags[live]}")
    env = {"RENDER_API_URL": fake.base_url, "RENDER_API_KEY": fake.api_key, "RENDER_SERVICE_ID": fake.service_id,
           "SERVICE_BASE_URL": args.target, "IMAGE_REPOSITORY": registry.repository,
           "REGISTRY_API_URL": registry.root_url}
    print(f"Render emulator at {fake.base_url}, registry at {registry.root_url}; live deploy {fake.deploys[0]['id']} "
          f"= image of {live}")
    print("Prefect UI -> deploy-backend -> Run -> Custom run; parameters: commit_id = one of the last 20 SHAs (or "
          "image_digest); job variables:")
    print(json.dumps({"env": env}, indent=2))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
        registry.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
