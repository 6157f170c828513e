"""cost-report: what the assistant costs, against the monthly budget and the per-query target.

When it runs: daily at 06:00 UTC (prefect.yaml), or on demand for any day (`as_of`).
What it does, in order: with OPENAI_ADMIN_KEY, fetch the month's OpenAI bill (GET /organization/costs), to set it
against our estimate -> in one transaction, with set-based SQL next to the data: price every query of the month so
far with the versioned price table joined in Postgres (each row at the price in force on its day), add the fixed
monthly infrastructure costs and upsert one `cost_daily` row per day -> report today, month to date, projected month
end, cost per query (mean, p95), tokens and dollars per model and the costliest sessions as artifacts -> push the
metrics to a Pushgateway when configured -> notify the alert webhook on a projected overrun or a cost per query over
target.

When it fails: an unpriced model names itself and nothing is written; add its price to app/core/pricing.py and re-run
(idempotent). Runbook: runbooks/cost-report.md.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from app.ops.costs import CostSummary, cents, summarize_costs
from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import IsoDate
from tasks.costs import CostFacts, fixed_monthly_usd, price_and_record_month
from tasks.notify import push_metrics, pushgateway_for, send_notification
from tasks.openai_api import fetch_openai_costs


@flow(name="cost-report", log_prints=True)
def cost_report(as_of: IsoDate | None = None) -> dict:
    """Report the month's costs up to `as_of` (YYYY-MM-DD, default today UTC)."""
    logger = get_run_logger()
    settings = get_settings()
    day = as_of or datetime.now(UTC).date()

    billed = None  # optional: what OpenAI billed the organization, set against what we priced
    if settings.openai_admin_key:  # first: a refused key fails the run before anything is written
        billed = fetch_openai_costs(settings.openai_base_url, settings.openai_admin_key, day.replace(day=1),
                                    day + timedelta(days=1))
    facts = price_and_record_month(settings, day)
    summary = summarize_costs(
        as_of=day, daily=facts.daily, queries=facts.queries, mean=facts.cost_per_query_mean,
        p95=facts.cost_per_query_p95, fixed_monthly=fixed_monthly_usd(settings),
        budget=Decimal(str(settings.cost_monthly_budget_usd)),
        per_query_target=Decimal(str(settings.cost_per_query_target_usd)),
    )
    reconciliation = None
    if billed is not None:
        reconciliation = {"openai_billed_usd": billed, "our_estimate_usd": summary.variable_month_to_date_usd,
                          "difference_usd": billed - summary.variable_month_to_date_usd}
    publish_cost_report(summary, facts, reconciliation)
    if pushgateway_for(settings):
        push_metrics(settings, "cost_report", {
            "cost_usd_month_to_date": float(summary.month_to_date_usd),
            "cost_usd_projected_month": float(summary.projected_month_usd),
            "cost_per_query_usd": float(summary.cost_per_query_mean_usd),
        })
    if summary.alerts:
        for alert in summary.alerts:
            logger.warning("cost alert: %s", alert)
        if settings.cost_alert_webhook_url:
            send_notification(settings.cost_alert_webhook_url, f"textbook-ops cost alert for {day.isoformat()}",
                              "; ".join(summary.alerts))
    logger.info("month to date $%s, projected $%s (budget $%s)", cents(summary.month_to_date_usd),
                cents(summary.projected_month_usd), cents(summary.budget_usd))
    return {
        "as_of": day.isoformat(), "today_usd": str(cents(summary.today_usd)),
        "month_to_date_usd": str(cents(summary.month_to_date_usd)),
        "projected_month_usd": str(cents(summary.projected_month_usd)),
        "cost_per_query_mean_usd": str(summary.cost_per_query_mean_usd.quantize(Decimal("0.000001"))),
        "queries": summary.queries_month_to_date, "alerts": summary.alerts,
        "reconciliation": {k: str(v.quantize(Decimal("0.000001"))) for k, v in reconciliation.items()}
        if reconciliation else None,
    }


def publish_cost_report(summary: CostSummary, facts: CostFacts, reconciliation: dict[str, Decimal] | None) -> None:
    flag = lambda bad: "**over**" if bad else "ok"  # noqa: E731
    lines = [
        f"# Costs on {summary.as_of.isoformat()}",
        "",
        "| | USD | against | status |",
        "|---|---:|---:|---|",
        f"| today | {cents(summary.today_usd)} | | |",
        f"| month to date | {cents(summary.month_to_date_usd)} | | |",
        f"| projected month end | {cents(summary.projected_month_usd)} | budget {cents(summary.budget_usd)} | "
        f"{flag(summary.over_budget)} |",
        f"| cost per query, mean | {summary.cost_per_query_mean_usd:.6f} | target {summary.per_query_target_usd} | "
        f"{flag(summary.over_per_query_target)} |",
        f"| cost per query, p95 | {summary.cost_per_query_p95_usd:.6f} | | |",
        "",
        f"{summary.queries_month_to_date} queries this month; fixed infrastructure ${cents(summary.fixed_month_usd)} "
        "a month (Render, Neon, Qdrant).",
    ]
    if summary.alerts:
        lines += ["", "## Alerts", ""] + [f"- {alert}" for alert in summary.alerts]
    if reconciliation:
        lines += ["", "## Reconciliation with OpenAI's organization costs", "",
                  "| OpenAI billed, month to date | our estimate (query_log) | difference |", "|---:|---:|---:|",
                  f"| {reconciliation['openai_billed_usd']:.6f} | {reconciliation['our_estimate_usd']:.6f} | "
                  f"{reconciliation['difference_usd']:+.6f} |",
                  "", "OpenAI's figure covers every use of the organization's keys, not only this service."]
    if facts.costliest_sessions:
        lines += ["", "## Costliest sessions", "", "| session | queries | USD |", "|---|---:|---:|"]
        lines += [f"| {s['session_id']} | {s['queries']} | {Decimal(s['cost_usd']):.6f} |"
                  for s in facts.costliest_sessions]
    create_markdown_artifact(key="cost-report", markdown="\n".join(lines), description="costs against the budget")
    create_table_artifact(
        key="cost-per-model",
        table=[{"model": m["model"], "kind": m["kind"], "input_tokens": int(m["input_tokens"] or 0),
                "output_tokens": int(m["output_tokens"] or 0), "usd": f"{Decimal(m['cost_usd'] or 0):.6f}"}
               for m in facts.per_model] or [{"model": "-", "usd": "0"}],
        description="tokens and dollars per model, month to date",
    )


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.cost_report", __doc__)
    parser.add_argument("--as-of", help="YYYY-MM-DD (default: today, UTC)")
    args = parser.parse_args(argv)
    result = cost_report(as_of=args.as_of)
    print(f"{result['as_of']}: month to date ${result['month_to_date_usd']}, projected ${result['projected_month_usd']}, "
          f"{result['queries']} queries at ${result['cost_per_query_mean_usd']} each")
    for alert in result["alerts"]:
        print(f"ALERT: {alert}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
