"""Game day tasks: the runbook's own commands, the alert read from Alertmanager, the recovery check, the record.

A scenario's mitigation is never written here: it is the fenced block of a runbook tagged for it,
```bash game-day=<scenario>[,<scenario>...]
one command per line (a trailing backslash continues it)
```
so an edit that breaks a runbook command fails the game day that runs it.
"""

from __future__ import annotations

import os
import re
import subprocess  # nosec B404: runs the runbook's own commands
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import text

from app.core.db import session_scope
from app.core.models import GameDay
from app.observability.logging_setup import scrub
from app.settings import PROJECT_ROOT, Settings
from tasks.databases import engine_for

RUNBOOKS_DIR = PROJECT_ROOT / "runbooks"
TAGGED_BLOCK = re.compile(r"^[ \t]*```bash[ \t]+game-day=([\w,-]+)[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)
MTTR_TARGET_S = 15 * 60


class RunbookStepFailed(RuntimeError):
    """A runbook command a scenario runs exited non-zero (the runbook is broken, or the fix did not work)."""


class NotDetected(RuntimeError):
    """None of the scenario's alerts reached Alertmanager in time."""


class NotRecovered(RuntimeError):
    """The probe did not pass, or the alert did not resolve, in time after the runbook's steps."""


@dataclass
class RunbookStep:
    runbook: str
    command: str


@dataclass
class StepResult:
    runbook: str
    command: str
    exit_code: int | None
    seconds: float
    by: str  # "flow" or "person"
    output_tail: str = ""

    def as_row(self) -> dict:
        return asdict(self)


def runbook_steps(scenario: str, runbooks_dir: Path = RUNBOOKS_DIR) -> list[RunbookStep]:
    """The commands of every fenced block tagged `game-day=<scenario>`, in runbook-name and document order."""
    steps: list[RunbookStep] = []
    for path in sorted(runbooks_dir.glob("*.md")):
        for tags, body in TAGGED_BLOCK.findall(path.read_text()):
            if scenario not in tags.split(","):
                continue
            joined = re.sub(r"[ \t]*\\\n\s*", " ", body)
            steps += [RunbookStep(path.name, line.strip()) for line in joined.splitlines()
                      if line.strip() and not line.strip().startswith("#")]
    return steps


def command_environment(variables: dict[str, str]) -> dict[str, str]:
    """The flow's environment, this interpreter first on PATH (`python` is the project's), the Prefect API the flow
    itself talks to (so CLI flows the runbook starts are recorded there), and the scenario's variables."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return {**env, **variables}


@task(name="run-runbook-step", cache_policy=NO_CACHE)
def run_runbook_step(step: RunbookStep, variables: dict[str, str], timeout_s: float = 600) -> StepResult:
    """Run one runbook command with bash from the project root; a non-zero exit fails the step (not retried: a
    game day measures the runbook as written)."""
    started = time.perf_counter()
    try:
        result = subprocess.run(["bash", "-c", step.command], cwd=PROJECT_ROOT, env=command_environment(variables),  # nosec B603: runbook commands, by design
                                capture_output=True, text=True, timeout=timeout_s)
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, f"timed out after {timeout_s:.0f} s: {exc.output or ''}"
    outcome = StepResult(step.runbook, step.command, code, time.perf_counter() - started, "flow",
                         scrub(output[-1500:]) if code != 0 else "")
    if code != 0:
        raise RunbookStepFailed(f"{step.runbook}: `{step.command}` exited {code}: {outcome.output_tail[-600:]}")
    return outcome


def active_alerts(alertmanager_url: str, alertnames: set[str]) -> list[str]:
    """The names of the given alerts Alertmanager holds as active (firing, not resolved), silenced or inhibited too."""
    response = httpx.get(f"{alertmanager_url.rstrip('/')}/api/v2/alerts", params={"active": "true"}, timeout=5)
    response.raise_for_status()
    return sorted({a["labels"]["alertname"] for a in response.json() if a["labels"].get("alertname") in alertnames})


@task(name="wait-for-alert", cache_policy=NO_CACHE)
def wait_for_alert(settings: Settings, alertnames: list[str], timeout_s: float) -> str:
    """Until one of the alerts is active at Alertmanager; returns its name."""
    if not settings.alertmanager_url:
        raise NotDetected("ALERTMANAGER_URL is not set: a game day detects through the real alert")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = active_alerts(settings.alertmanager_url, set(alertnames))
        except httpx.HTTPError:
            found = []
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise NotDetected(f"none of {alertnames} reached Alertmanager within {timeout_s:.0f} s")
        time.sleep(settings.game_day_poll_s)


def service_ready(base_url: str) -> bool:
    try:
        with httpx.Client(base_url=base_url, timeout=5) as client:
            return client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


@task(name="wait-until-recovered", cache_policy=NO_CACHE)
def wait_until_recovered(settings: Settings, base_url: str, alertnames: list[str], timeout_s: float) -> None:
    """Until /health and /ready answer 200 and none of the alerts is active at Alertmanager."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = service_ready(base_url)
        try:
            still = active_alerts(settings.alertmanager_url, set(alertnames)) if settings.alertmanager_url else []
        except httpx.HTTPError:
            still = ["(Alertmanager unreachable)"]
        if ready and not still:
            return
        if time.monotonic() > deadline:
            raise NotRecovered(f"after {timeout_s:.0f} s: service ready={ready}, alerts still active: {still or '-'}")
        time.sleep(settings.game_day_poll_s)


@task(name="start-game-day-record", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def start_game_day_record(settings: Settings, scenario: str, mode: str, flow_run_id: str | None) -> int:
    with session_scope(engine_for(settings)) as db:
        row = GameDay(scenario=scenario, environment=settings.environment, mode=mode, status="running",
                      flow_run_id=flow_run_id)
        db.add(row)
        db.flush()
        return int(row.id)


@task(name="finish-game-day-record", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5)
def finish_game_day_record(settings: Settings, record_id: int, measured: dict) -> None:
    with session_scope(engine_for(settings)) as db:
        row = db.get(GameDay, record_id)
        for name, value in measured.items():
            setattr(row, name, value)
        row.finished_at = datetime.now(UTC)
        db.add(row)


@task(name="last-passed-game-day", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def last_passed_at(settings: Settings, scenario: str) -> datetime | None:
    query = text("SELECT max(finished_at) FROM game_day WHERE scenario = :scenario AND status = 'passed'")
    with engine_for(settings).connect() as conn:
        return conn.execute(query, {"scenario": scenario}).scalar()


@dataclass
class ScenarioReport:
    scenario: str
    runs: int
    passed: int
    mttr_p50_s: float | None
    mttr_max_s: float | None

    @property
    def success_rate(self) -> float | None:
        return self.passed / self.runs if self.runs else None

    @property
    def meets_targets(self) -> bool:
        return bool(self.runs) and self.passed == self.runs and (self.mttr_max_s or 0) <= MTTR_TARGET_S


@task(name="game-day-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def game_day_history(settings: Settings, as_of: datetime, days: int) -> list[ScenarioReport]:
    """Per scenario over the window: runs, passes, median and worst MTTR of the passed runs."""
    query = text(
        "SELECT scenario, count(*) AS runs, count(*) FILTER (WHERE status = 'passed') AS passed, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY mttr_seconds) FILTER (WHERE status = 'passed') AS p50, "
        "max(mttr_seconds) FILTER (WHERE status = 'passed') AS worst FROM game_day "
        "WHERE started_at > :since AND started_at <= :as_of AND status <> 'running' GROUP BY scenario ORDER BY scenario"
    )
    with engine_for(settings).connect() as conn:
        rows = conn.execute(query, {"since": as_of - timedelta(days=days), "as_of": as_of}).mappings().all()
    return [ScenarioReport(r["scenario"], r["runs"], r["passed"], r["p50"], r["worst"]) for r in rows]
