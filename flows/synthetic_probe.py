"""synthetic-probe: check the query service the way a reader uses it, every 5 minutes.

When it runs: every 5 minutes (prefect.yaml), against PROBE_BASE_URL (default the local API), or on demand.
What it does, in order: GET /health -> GET /ready -> ask a canary question whose answer the book covers and
check that a cited source is the expected page -> write one `probe_result` row per check -> push
`probe_success{check}`, `probe_duration_seconds{check}` and `probe_last_run_timestamp_seconds` to the
Pushgateway -> push the operations facts the alert rules read (last rotation per secret, last ingest per
collection, the monthly budget) -> fail the run when a check failed, so Prefect shows it too.

probe-availability-report (daily): availability over 1, 7 and 30 days against the 99.5% SLO, as a
table artifact `probe-availability`, pushed as `probe_availability_ratio{window}`.

When it fails: runbooks/service-down.md (SyntheticProbeFailing); when it stops running: runbooks/on-call.md.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from app.observability.logging_setup import scrub
from app.settings import Settings, get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import HttpUrl, IsoDateTime
from tasks.notify import push_metrics, pushgateway_for
from tasks.probe import (
    AVAILABILITY_SLO,
    CANARY_EXPECTED_SOURCE,
    CANARY_QUESTION,
    CheckResult,
    probe_availability,
    probe_canary,
    probe_health_and_ready,
    read_operations_facts,
    record_probe_results,
)
from tasks.run_records import current_flow_run_id


class ProbeFailed(RuntimeError):
    """At least one check of the probe failed (the results are recorded and pushed before this is raised)."""


@flow(name="synthetic-probe", log_prints=True)
def synthetic_probe(base_url: HttpUrl | None = None, question: str = CANARY_QUESTION,
                    expected_source: str = CANARY_EXPECTED_SOURCE) -> dict:
    """Probe /health, /ready and a canary question; record, push, and fail when a check failed."""
    logger = get_run_logger()
    settings = get_settings()
    target = (base_url or settings.resolved_probe_base_url).rstrip("/")
    shown = scrub(target)  # a base URL may carry credentials: never store or log them
    results = [*probe_health_and_ready(settings, target), probe_canary(settings, target, question, expected_source)]
    round_id = record_probe_results(settings, results, shown, current_flow_run_id())
    push_probe_metrics(settings, results)
    push_operations_facts(settings)
    failed = [r for r in results if not r.success]
    for result in results:
        (logger.error if not result.success else logger.info)(
            "%s: %s in %.3f s (%s)", result.check_name, "ok" if result.success else "FAILED", result.seconds,
            result.detail)
    create_table_artifact(
        key="synthetic-probe",
        table=[{"check": r.check_name, "result": "ok" if r.success else "FAILED", "status_code": r.status_code,
                "seconds": round(r.seconds, 3), "detail": r.detail} for r in results],
        description=f"synthetic probe round {round_id} against {shown}"
                    + (" - see runbooks/service-down.md" if failed else ""),
    )
    if failed:
        raise ProbeFailed(f"{', '.join(r.check_name for r in failed)} failed against {shown}: {failed[0].detail}")
    return {"round_id": round_id, "base_url": shown, "checks": {r.check_name: r.success for r in results}}


def push_probe_metrics(settings: Settings, results: list[CheckResult]) -> None:
    for result in results:
        push_metrics(settings, "synthetic_probe", {
            "probe_success": 1.0 if result.success else 0.0, "probe_duration_seconds": result.seconds,
        }, grouping_key={"check": result.check_name})
    push_metrics(settings, "synthetic_probe", {"probe_last_run_timestamp_seconds": datetime.now(UTC).timestamp()})


def push_operations_facts(settings: Settings) -> None:
    """Rotation and ingest outcomes come from their audit tables, so every flow that writes them is covered."""
    if not pushgateway_for(settings):
        return
    facts = read_operations_facts(settings)
    for rotation in facts.rotations:
        values = {"secret_rotation_success": 0.0 if rotation["last_status"] in ("failed", "rolled_back") else 1.0}
        if rotation["last_success"] is not None:
            values["secret_rotation_last_success_timestamp_seconds"] = rotation["last_success"].timestamp()
        push_metrics(settings, "secret_rotation", values, grouping_key={"secret": rotation["name"]})
    for ingest in facts.ingests:
        values = {"ingest_last_run_success": 0.0 if ingest["last_status"] == "failed" else 1.0}
        if ingest["last_success"] is not None:
            values["ingest_last_success_timestamp_seconds"] = ingest["last_success"].timestamp()
        push_metrics(settings, "ingest_textbook", values, grouping_key={"collection": ingest["name"]})
    push_metrics(settings, "cost_report", {"cost_usd_monthly_budget": settings.cost_monthly_budget_usd})


@flow(name="probe-availability-report", log_prints=True)
def probe_availability_report(as_of: IsoDateTime | None = None) -> dict:
    """Availability of the probe rounds over 1, 7 and 30 days against the 99.5% SLO, as an artifact."""
    settings = get_settings()
    windows = probe_availability(settings, as_of or datetime.now(UTC))
    rows = [{
        "window": w.window, "rounds": w.rounds, "successful": w.successful,
        "availability": "-" if w.availability is None else f"{w.availability:.4%}",
        "slo": f"{AVAILABILITY_SLO:.1%}",
        "result": "no data" if w.meets_slo is None else ("met" if w.meets_slo else "MISSED"),
    } for w in windows]
    create_table_artifact(key="probe-availability", table=rows,
                          description=f"synthetic probe availability against the {AVAILABILITY_SLO:.1%} SLO")
    values = {w.window: w.availability for w in windows if w.availability is not None}
    for window, availability in values.items():
        push_metrics(settings, "synthetic_probe", {"probe_availability_ratio": availability},
                     grouping_key={"window": window})
    get_run_logger().info("probe availability: %s", ", ".join(f"{r['window']} {r['availability']}" for r in rows))
    return {w.window: {"rounds": w.rounds, "successful": w.successful, "availability": w.availability,
                       "meets_slo": w.meets_slo} for w in windows}


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.synthetic_probe", __doc__)
    parser.add_argument("--base-url", help="default: PROBE_BASE_URL, else the local API")
    parser.add_argument("--report", action="store_true", help="print availability over 1, 7 and 30 days instead")
    args = parser.parse_args(argv)
    if args.report:
        for window, facts in probe_availability_report().items():
            shown = "-" if facts["availability"] is None else f"{facts['availability']:.4%}"
            print(f"{window}: {shown} of {facts['rounds']} rounds")
        return 0
    try:
        result = synthetic_probe(base_url=args.base_url)
    except ProbeFailed as exc:
        print(f"probe failed: {exc}", file=sys.stderr)
        return 1
    print(f"probe ok against {result['base_url']}: {result['checks']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
