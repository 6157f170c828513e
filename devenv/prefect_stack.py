"""A local Prefect server and a process worker for the work pool `ops`, with the deployments registered.

Used by `make up` (the development stack, state under `.data/prefect`) and by the end-to-end tests (a
throwaway stack). One SIGTERM does not stop a worker, so `stop` sends a second; the worker is stopped
before the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from app.settings import PROJECT_ROOT
from devenv.processes import running, stop_process

WORK_POOL = "ops"
AUTOMATIONS_FILE = PROJECT_ROOT / "deployments" / "prefect-automations.yaml"

# The runs' own loggers (get_run_logger, log_prints) send INFO to the server whatever PREFECT_LOGGING_LEVEL says:
# the Makefile's WARNING keeps the processes' consoles quiet, but every run's Logs tab must show its steps.
RUN_LOG_LEVELS = {
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
    "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",
}


class PrefectStackError(RuntimeError):
    """The Prefect server or worker did not start, or the deployments could not be registered."""


@dataclass
class PrefectStack:
    home: Path
    port: int = 4200
    host: str = "127.0.0.1"
    log_dir: Path | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
            **RUN_LOG_LEVELS,
            "TEXTBOOK_OPS_ROOT": str(PROJECT_ROOT),
            **(extra or {}),
        }

    def _pid_file(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def _log(self, name: str) -> Path:
        folder = self.log_dir or self.home
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"prefect-{name}.log"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self._log(name), "ab") as log:
            process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env(extra_env), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self._pid_file(name).write_text(str(process.pid))
        return process.pid

    def start_server(self, timeout_s: float = 120) -> None:
        if self.healthy():
            return
        self._spawn("server", [sys.executable, "-m", "prefect", "server", "start", "--host", self.host,
                               "--port", str(self.port)], None)
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline or not running(self._pid_file("server")):
                raise PrefectStackError(f"the Prefect server did not become healthy; see {self._log('server')}")
            time.sleep(0.5)

    def prefect(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=PROJECT_ROOT,
                                env=self.env(extra_env), capture_output=True, text=True)
        if result.returncode != 0:
            raise PrefectStackError(f"prefect {' '.join(args)} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        return result.stdout

    def register_deployments(self) -> None:
        pools = self.prefect("work-pool", "ls")
        if WORK_POOL not in pools:
            self.prefect("work-pool", "create", WORK_POOL, "--type", "process")
        self.prefect("deploy", "--all", "--no-prompt")
        self.register_automations()

    def register_automations(self, *, within_s: int | None = None) -> list[str]:
        """Create deployments/prefect-automations.yaml's automations on the server, or update them by name; their
        names. `within_s` shortens every proactive trigger's window (the tests' zombie runs)."""
        from prefect.client.orchestration import get_client
        from prefect.events.schemas.automations import AutomationCore
        from prefect.settings import PREFECT_API_URL, temporary_settings

        definitions = yaml.safe_load(AUTOMATIONS_FILE.read_text())["automations"]
        with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            for definition in definitions:
                if within_s is not None:
                    definition["trigger"]["within"] = within_s
                automation = AutomationCore.model_validate(definition)
                existing = client.read_automations_by_name(automation.name)
                if existing:
                    client.update_automation(existing[0].id, automation)
                else:
                    client.create_automation(automation)
        return [d["name"] for d in definitions]

    def start_worker(self, extra_env: dict[str, str] | None = None) -> None:
        if running(self._pid_file("worker")):
            return
        self._spawn("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
                               "--type", "process"], extra_env)

    def stop(self) -> None:
        stop_process(self._pid_file("worker"), signals=2)
        stop_process(self._pid_file("server"), signals=1)
