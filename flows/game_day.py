"""game-day: inject a real incident, detect it through the real alert, mitigate by the runbook, measure MTTR.

When it runs: on demand from the Prefect UI (`game-day`, parameter `scenario`), and weekly (`game-days-weekly`)
on the staging-like local stack of `make up` + `make monitoring-up` (real Prometheus, Alertmanager, Pushgateway).
It refuses ENVIRONMENT=production unless `allow_production` names it.
What it does, in order: check the stack is healthy -> inject the scenario's fault for real -> wait until one of
its alerts reaches Alertmanager (read from its API) -> run the runbook's own commands (the fenced blocks tagged
`game-day=<scenario>`; in practice mode, pause before each so a person does it and the flow measures them) ->
wait until /health and /ready pass and the alerts resolve -> always undo what it injected (a `finally`) ->
record a `game_day` row, a `game-day-<scenario>` markdown artifact with the timeline, and push
`game_day_success{scenario}`, `game_day_mttr_seconds{scenario}`, `game_day_last_success_timestamp_seconds`.

Scenarios: service-down, database-down, error-burst, latency, backup-broken, secret-leaked.
When it fails: the artifact names the step; a failed runbook command means the runbook is wrong: fix the runbook.
runbooks/on-call.md#game-days.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from app.core.secret_source import api_key_secret_name
from app.settings import Settings, get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import Days, EnvironmentName, FolderPath, GameDayScenario, IsoDateTime
from flows.restore_drill import restore_drill
from tasks import faults
from tasks.game_day import (
    MTTR_TARGET_S,
    RUNBOOKS_DIR,
    NotRecovered,
    RunbookStep,
    RunbookStepFailed,
    StepResult,
    finish_game_day_record,
    game_day_history,
    last_passed_at,
    run_runbook_step,
    runbook_steps,
    start_game_day_record,
    wait_for_alert,
    wait_until_recovered,
)
from tasks.notify import push_metrics
from tasks.secrets import secret_store_for


class GameDayRefused(RuntimeError):
    """The game day will not run here: production without allow_production, an unknown scenario, a sick stack."""


class GameDaysFailed(RuntimeError):
    """At least one scenario of a weekly run failed; `outcomes` has every scenario's."""

    def __init__(self, outcomes: dict[str, str]) -> None:
        self.outcomes = outcomes
        failed = {name: outcome for name, outcome in outcomes.items() if outcome != "passed"}
        super().__init__(f"game days failed: {failed}")


class RecoveryCheckFailed(RuntimeError):
    """The alert resolved, but the scenario's own proof of recovery does not hold."""


@dataclass
class Injected:
    """What a scenario broke: the variables its runbook commands read, and what its restore needs."""

    variables: dict[str, str] = field(default_factory=dict)
    state: object = None
    traffic: faults.Traffic | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    alerts: tuple[str, ...]  # detected when the first of these is active at Alertmanager; recovered when none is
    inject: Callable[[Settings, str], Injected]
    restore: Callable[[Settings, Injected], None]
    verify: Callable[[Settings, Injected], None] | None = None
    readers: bool = False  # drive readers' chat requests until detection (error and burn alerts need traffic)
    readers_until_recovered: bool = False  # on through mitigation: latency alerts resolve on requests that are fast
    reader_timeout_s: float = 10.0


def _inject_service_down(settings: Settings, run_tag: str) -> Injected:
    faults.stop_api_process(settings)
    return Injected()


def _inject_database_down(settings: Settings, run_tag: str) -> Injected:
    faults.stop_postgres(settings)
    return Injected()


def _inject_error_burst(settings: Settings, run_tag: str) -> Injected:
    return Injected(state=faults.point_index_at_missing_generation(settings))


def _inject_backup_broken(settings: Settings, run_tag: str) -> Injected:
    damaged = faults.damage_newest_backup(settings)
    try:  # the next scheduled drill, run now: it must fail on the damaged dump
        restore_drill(backup_id=damaged.backup_id)
    except Exception as exc:  # noqa: BLE001 - the expected outcome; the alert is what the game day measures
        get_run_logger().info("the drill failed as injected: %s", exc)
    else:
        faults.restore_backup_object(settings, damaged)
        raise GameDayRefused(f"the drill verified the damaged backup {damaged.backup_id}: the fault did not take")
    return Injected(variables={"BACKUP_ID": damaged.backup_id}, state=damaged)


def _inject_secret_leaked(settings: Settings, run_tag: str) -> Injected:
    keys = faults.issue_game_day_keys(settings, run_tag)
    base = settings.resolved_probe_base_url
    if _chat_status(base, keys.leaked_key) != 200:
        faults.revoke_game_day_keys(settings, run_tag)
        raise GameDayRefused("the key declared leaked does not work before the leak: nothing to contain")
    traffic = faults.Traffic(base, api_key=keys.bystander_key, interval_s=0.2).start()  # another client, all along
    get_run_logger().warning("API key %s declared leaked (game day)", keys.leaked_id)
    return Injected(variables={"LEAKED_KEY_ID": str(keys.leaked_id)}, state=(keys, run_tag), traffic=traffic)


def _inject_latency(settings: Settings, run_tag: str) -> Injected:
    return Injected(state=faults.hold_query_log_lock(settings))


def _verify_latency(settings: Settings, injected: Injected) -> None:
    if injected.state.ended_by != "terminated":
        raise RecoveryCheckFailed(f"the session locking query_log was not terminated (backend "
                                  f"{injected.state.backend_pid}: {injected.state.ended_by or 'still running'})")


def _chat_status(base_url: str, api_key: str) -> int:
    response = httpx.post(f"{base_url}/v1/chat", json={"question": faults.CHAT_QUESTION},
                          headers={"x-api-key": api_key}, timeout=30)
    return response.status_code


def _verify_secret_leaked(settings: Settings, injected: Injected) -> None:
    keys, _ = injected.state
    base = settings.resolved_probe_base_url
    old = _chat_status(base, keys.leaked_key)
    successor_secret = api_key_secret_name(settings, f"game-day-leaked-{injected.state[1]}")
    new_key = secret_store_for(settings).current(successor_secret).value.get_secret_value()
    new = _chat_status(base, new_key)
    codes = injected.traffic.stop() if injected.traffic else {}
    failed = injected.traffic.failed if injected.traffic else 0
    if old != 401 or new != 200 or failed or not codes:
        raise RecoveryCheckFailed(f"old key answered {old} (want 401), the new key {new} (want 200), "
                                  f"the other client saw {failed} failed of {sum(codes.values())} requests (want 0)")


def _restore_secret_leaked(settings: Settings, injected: Injected) -> None:
    if injected.traffic:
        injected.traffic.stop()
    faults.revoke_game_day_keys(settings, injected.state[1])


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("service-down", ("ServiceDown",), _inject_service_down,
             lambda settings, _: faults.restore_api_process(settings)),
    Scenario("database-down", ("HighErrorRate", "SloAvailabilityBurnRateFast", "ServiceDown"),
             _inject_database_down, lambda settings, _: faults.restore_postgres(settings), readers=True),
    Scenario("error-burst", ("HighErrorRate", "SloAvailabilityBurnRateFast"), _inject_error_burst,
             lambda settings, injected: faults.restore_index_pointer(settings, injected.state), readers=True),
    # A lock on query_log makes every chat request wait for seconds; the holder takes it again and again, so the
    # slow requests complete (a latency histogram only sees completed requests) and the readers find it blocking.
    Scenario("latency", ("HighLatencyP95", "SloLatencyE2eBurnRateFast"), _inject_latency,
             lambda settings, injected: faults.release_query_log_lock(settings, injected.state),
             verify=_verify_latency, readers=True, readers_until_recovered=True, reader_timeout_s=60),
    Scenario("backup-broken", ("RestoreDrillFailed",), _inject_backup_broken,
             lambda settings, injected: faults.restore_backup_object(settings, injected.state)),
    # No alert is specific to a leak (runbooks/security-incident.md): it is detected when it is declared.
    Scenario("secret-leaked", (), _inject_secret_leaked, _restore_secret_leaked, verify=_verify_secret_leaked),
]}
WEEKLY_ORDER = list(get_args(GameDayScenario))  # the parameter's choices, in the order the weekly run takes them


class StepDone(RunInput):
    """What the person on call answers when a practice step is done."""

    done: bool = True
    notes: str = ""


def refuse_production(settings: Settings, allow_production: str | None) -> None:
    if settings.environment == "production" and allow_production != settings.environment:
        raise GameDayRefused("ENVIRONMENT=production: a game day breaks things for real; pass "
                             "allow_production='production' to mean it")


@dataclass
class Timeline:
    started: float = field(default_factory=time.perf_counter)
    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> float:
        at = time.perf_counter() - self.started
        self.events.append((at, what))
        get_run_logger().info("%+.1f s: %s", at, what)
        return at


def practice_step(step: RunbookStep, scenario: str, timeout_s: int) -> StepResult:
    """Pause until the person on call says the step is done; the time they took is the step's time."""
    started = time.perf_counter()
    answer = pause_flow_run(
        wait_for_input=StepDone.with_initial_data(
            description=f"**Game day `{scenario}`: do this step by hand** ({step.runbook}):\n\n```bash\n{step.command}\n```"
                        "\n\nThen resume with `done` checked (uncheck it if the step did not work).",
            done=True),
        timeout=timeout_s, poll_interval=2, key=f"game-day-step-{uuid.uuid4().hex[:8]}")
    result = StepResult(step.runbook, step.command, 0 if answer.done else 1, time.perf_counter() - started, "person",
                        answer.notes[-500:])
    if not answer.done:
        raise RunbookStepFailed(f"{step.runbook}: `{step.command}` reported not done: {answer.notes}")
    return result


@flow(name="game-day", log_prints=True)
def game_day(scenario: GameDayScenario, allow_production: EnvironmentName | None = None, practice: bool = False,
             runbooks_dir: FolderPath | None = None) -> dict:
    """Run one scenario end to end and measure it; fails when any phase fails, after undoing the fault."""
    settings = get_settings()
    refuse_production(settings, allow_production)  # before anything else: nothing is touched when it refuses
    logger = get_run_logger()
    if scenario not in SCENARIOS:
        raise GameDayRefused(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    spec = SCENARIOS[scenario]
    steps = runbook_steps(scenario, Path(runbooks_dir) if runbooks_dir else RUNBOOKS_DIR)
    if not steps:
        raise GameDayRefused(f"no runbook block is tagged game-day={scenario}: nothing to practise")
    base_url = settings.resolved_probe_base_url
    try:  # a previous incident (or game day) may still be resolving: give it the recovery time, no more
        wait_until_recovered(settings, base_url, list(spec.alerts), settings.game_day_recover_timeout_s)
    except NotRecovered as exc:
        raise GameDayRefused(f"the stack is not healthy before the game day: {exc}; fix it first") from exc

    run_id = str(flow_run.id) if flow_run.id else None
    record_id = start_game_day_record(settings, scenario, "practice" if practice else "automatic", run_id)
    timeline = Timeline()
    measured: dict = {"status": "failed"}
    results: list[StepResult] = []
    injected: Injected | None = None
    readers: faults.Traffic | None = None
    try:
        # The incident starts when the injection starts (a stopping process is already refusing): detection and
        # MTTR count from there; inject_seconds says how long the injection itself took.
        injected_at = timeline.mark(f"injecting {scenario}")
        injected = spec.inject(settings, uuid.uuid4().hex[:8])
        measured["inject_seconds"] = timeline.mark("fault injected") - injected_at
        if spec.readers:
            readers = faults.Traffic(base_url, timeout_s=spec.reader_timeout_s).start()
        if spec.alerts:
            measured["detected_by"] = wait_for_alert(settings, list(spec.alerts), settings.game_day_detect_timeout_s)
        else:
            measured["detected_by"] = "declared (no alert covers it)"
        detected_at = timeline.mark(f"detected: {measured['detected_by']}")
        measured["detect_seconds"] = detected_at - injected_at
        if readers and not spec.readers_until_recovered:
            timeline.mark(f"readers' requests stopped: {readers.stop()}")
        for step in steps:
            timeline.mark(f"runbook step ({step.runbook}): {step.command}")
            result = (practice_step(step, scenario, int(settings.game_day_recover_timeout_s)) if practice
                      else run_runbook_step(step, injected.variables))
            results.append(result)
            timeline.mark(f"step done by {result.by} in {result.seconds:.1f} s")
        mitigated_at = timeline.mark("runbook steps done")
        measured["mitigate_seconds"] = mitigated_at - detected_at
        wait_until_recovered(settings, base_url, list(spec.alerts), settings.game_day_recover_timeout_s)
        if spec.verify:
            spec.verify(settings, injected)
        recovered_at = timeline.mark("recovered: /health and /ready 200, alerts resolved")
        measured.update(recover_seconds=recovered_at - mitigated_at, mttr_seconds=recovered_at - injected_at,
                        status="passed")
        if readers and spec.readers_until_recovered:
            timeline.mark(f"readers' requests stopped: {readers.stop()}")
    except BaseException as exc:
        measured["failure_reason"] = f"{exc.__class__.__name__}: {exc}"
        timeline.mark(f"FAILED: {measured['failure_reason']}")
        raise
    finally:
        if readers:
            readers.stop()
        if injected is not None:
            try:
                spec.restore(settings, injected)
                timeline.mark("what the game day injected is restored")
            except Exception as exc:  # noqa: BLE001 - report it with the result; the original error wins
                measured["failure_reason"] = (measured.get("failure_reason") or "") + f"; RESTORE FAILED: {exc}"
                measured["status"] = "failed"
                timeline.mark(f"RESTORE FAILED: {exc}")
                logger.error("could not undo the %s fault: %s", scenario, exc)
        measured["steps"] = [r.as_row() for r in results]
        finish_game_day_record(settings, record_id, measured)
        publish(settings, scenario, measured, timeline, steps)
    return {"scenario": scenario, **{k: v for k, v in measured.items() if k != "steps"}, "steps": len(results)}


def publish(settings: Settings, scenario: str, measured: dict, timeline: Timeline, steps: list[RunbookStep]) -> None:
    passed = measured["status"] == "passed"
    last_pass = last_passed_at(settings, scenario)
    values = {"game_day_success": 1.0 if passed else 0.0,
              "game_day_last_success_timestamp_seconds": last_pass.timestamp() if last_pass else 0.0}
    if passed:
        values["game_day_mttr_seconds"] = measured["mttr_seconds"]
    try:
        push_metrics(settings, "game_day", values, grouping_key={"scenario": scenario})
    except Exception as exc:  # noqa: BLE001 - a metrics outage must not hide the game day's own result
        get_run_logger().warning("could not push game day metrics: %s", exc)

    def seconds(name: str) -> str:
        return "-" if measured.get(name) is None else f"{measured[name]:.1f}"

    ran = {(s["runbook"], s["command"]): s for s in measured.get("steps", [])}
    lines = [
        f"# Game day `{scenario}`: {'PASSED' if passed else 'FAILED'}", "",
        "| inject s | detect s | mitigate s | recover s | MTTR s | target | detected by |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| {seconds('inject_seconds')} | {seconds('detect_seconds')} | {seconds('mitigate_seconds')} | "
        f"{seconds('recover_seconds')} | {seconds('mttr_seconds')} | {MTTR_TARGET_S} | {measured.get('detected_by', '-')} |",
        "", "## Runbook steps", "", "| runbook | command | by | exit | seconds |", "|---|---|---|---:|---:|",
    ]
    for step in steps:
        done = ran.get((step.runbook, step.command))
        cells = [done["by"], str(done["exit_code"]), f"{done['seconds']:.1f}"] if done else ["-", "not run", "-"]
        lines.append(f"| {step.runbook} | `{step.command}` | {' | '.join(cells)} |")
    lines += ["", "## Timeline", "", *[f"- +{at:.1f} s: {what}" for at, what in timeline.events]]
    if not passed:
        lines += ["", f"Failure: {measured.get('failure_reason')}", "", "See runbooks/on-call.md#game-days."]
    create_markdown_artifact(key=f"game-day-{scenario}", markdown="\n".join(lines), description="game day timeline")


@flow(name="game-day-report", log_prints=True)
def game_day_report(days: Days = 90, as_of: IsoDateTime | None = None) -> dict:
    """Per scenario over the last `days`: success rate against 100%, MTTR against 15 minutes, as an artifact."""
    reports = game_day_history(get_settings(), as_of or datetime.now(UTC), days)
    seen = {r.scenario for r in reports}
    rows = [{
        "scenario": r.scenario, "runs": r.runs, "passed": r.passed,
        "success rate": f"{r.success_rate:.0%}", "target": "100%",
        "MTTR p50 s": "-" if r.mttr_p50_s is None else f"{r.mttr_p50_s:.0f}",
        "MTTR max s": "-" if r.mttr_max_s is None else f"{r.mttr_max_s:.0f}", "MTTR target s": MTTR_TARGET_S,
        "result": "met" if r.meets_targets else "MISSED",
    } for r in reports] + [{"scenario": name, "runs": 0, "passed": 0, "success rate": "-", "target": "100%",
                            "MTTR p50 s": "-", "MTTR max s": "-", "MTTR target s": MTTR_TARGET_S,
                            "result": "NOT RUN"} for name in WEEKLY_ORDER if name not in seen]
    create_table_artifact(key="game-day-report", table=rows,
                          description=f"game days over {days} days: success rate vs 100%, MTTR vs 15 min")
    return {row["scenario"]: row for row in rows}


@flow(name="game-days-weekly", log_prints=True)
def game_days_weekly(scenarios: list[GameDayScenario] | None = None,
                     allow_production: EnvironmentName | None = None) -> dict:
    """Every scenario one after another, then the 90-day report; fails when any scenario failed."""
    outcomes: dict[str, str] = {}
    for name in scenarios or WEEKLY_ORDER:
        try:
            outcomes[name] = game_day(scenario=name, allow_production=allow_production)["status"]
        except Exception as exc:  # noqa: BLE001 - the next scenarios still run; the run fails at the end
            outcomes[name] = f"failed: {exc.__class__.__name__}: {exc}"
    game_day_report()
    if any(outcome != "passed" for outcome in outcomes.values()):
        raise GameDaysFailed(outcomes)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.game_day", __doc__)
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), help="one scenario (default: --report)")
    parser.add_argument("--report", action="store_true", help="print the 90-day report instead")
    args = parser.parse_args(argv)
    if args.report or not args.scenario:
        for name, row in game_day_report().items():
            print(f"{name}: {row['runs']} runs, success {row['success rate']}, MTTR max {row['MTTR max s']} s: {row['result']}")
        return 0
    result = game_day(scenario=args.scenario)
    print(f"{args.scenario}: {result['status']}; MTTR {result.get('mttr_seconds', 0):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
