"""Cost tasks: price `query_log` with the versioned price table in one set-based pass, store `cost_daily`."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from app.pricing import PRICE_TABLE
from app.settings import Settings
from tasks.postgres import connect, retry_unless_rejected

FAR_FUTURE = date(9999, 12, 31)


class UnpricedModel(LookupError):
    """query_log rows name a model the price table has no price for on that date."""


@dataclass
class CostFacts:
    start: date
    as_of: date
    daily: list[dict[str, Any]] = field(default_factory=list)
    per_model: list[dict[str, Any]] = field(default_factory=list)
    costliest_sessions: list[dict[str, Any]] = field(default_factory=list)
    queries: int = 0
    cost_per_query_mean: Decimal = Decimal(0)
    cost_per_query_p95: Decimal = Decimal(0)


def price_rows() -> list[tuple[str, date, date, Decimal, Decimal]]:
    """The price table as validity intervals: (model, valid_from, valid_to, input/M, output/M)."""
    rows = []
    for model, prices in PRICE_TABLE.items():
        ordered = sorted(prices, key=lambda p: p.effective)
        for i, price in enumerate(ordered):
            valid_to = ordered[i + 1].effective if i + 1 < len(ordered) else FAR_FUTURE
            rows.append((model, price.effective, valid_to, price.input_per_million, price.output_per_million))
    return rows


PRICED_SQL = """
CREATE TEMP TABLE priced ON COMMIT DROP AS
WITH prices(model, valid_from, valid_to, input_per_m, output_per_m) AS (
    SELECT * FROM unnest(%(models)s::text[], %(froms)s::date[], %(tos)s::date[], %(ins)s::numeric[], %(outs)s::numeric[])
)
SELECT q.created_at::date AS day, q.session_id, q.model, q.embedding_model,
       q.prompt_tokens, q.completion_tokens, q.embedding_tokens,
       (q.prompt_tokens * coalesce(p.input_per_m, 0) + q.completion_tokens * coalesce(p.output_per_m, 0)) / 1000000
           AS generation_cost,
       q.embedding_tokens * coalesce(e.input_per_m, 0) / 1000000 AS embedding_cost,
       (q.model IS NOT NULL AND p.model IS NULL) AS model_unpriced,
       (q.embedding_model IS NOT NULL AND e.model IS NULL) AS embedding_unpriced
FROM query_log q
LEFT JOIN prices p ON p.model = q.model AND q.created_at::date >= p.valid_from AND q.created_at::date < p.valid_to
LEFT JOIN prices e ON e.model = q.embedding_model
     AND q.created_at::date >= e.valid_from AND q.created_at::date < e.valid_to
WHERE q.created_at >= %(start)s AND q.created_at < %(end)s
"""


def _retry_unless_unpriced(task: Any, task_run: Any, state: Any) -> bool:
    """Retry database hiccups, not a missing price (that needs a code change) nor a refused login."""
    return not isinstance(state.result(raise_on_failure=False), UnpricedModel) and retry_unless_rejected(
        task, task_run, state)


@task(name="price-query-log", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, timeout_seconds=600,
      retry_condition_fn=_retry_unless_unpriced)
def price_query_log(settings: Settings, as_of: date) -> CostFacts:
    """Every query of the month up to `as_of`, priced at the price in force on its own day."""
    start = as_of.replace(day=1)
    end = datetime.combine(as_of + timedelta(days=1), time.min)
    prices = price_rows()
    params = {
        "models": [p[0] for p in prices], "froms": [p[1] for p in prices], "tos": [p[2] for p in prices],
        "ins": [p[3] for p in prices], "outs": [p[4] for p in prices],
        "start": datetime.combine(start, time.min), "end": end,
    }
    facts = CostFacts(start=start, as_of=as_of)
    with connect(settings.resolved_database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(PRICED_SQL, params)
        unpriced = conn.execute(
            "SELECT CASE WHEN model_unpriced THEN model ELSE embedding_model END, count(*) FROM priced "
            "WHERE model_unpriced OR embedding_unpriced GROUP BY 1 ORDER BY 1"
        ).fetchall()
        if unpriced:
            listed = ", ".join(f"{model!r} ({count} rows)" for model, count in unpriced)
            raise UnpricedModel(f"no price in app/pricing.py for {listed}: add a ModelPrice row, then re-run")
        facts.daily = _dicts(conn.execute(
            "SELECT day, count(*) AS queries, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, sum(embedding_tokens) AS embedding_tokens, "
            "sum(generation_cost + embedding_cost) AS variable_cost_usd FROM priced GROUP BY day ORDER BY day"))
        facts.per_model = _dicts(conn.execute(
            "SELECT model, kind, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
            "sum(cost) AS cost_usd FROM ("
            "  SELECT model, 'generation' AS kind, prompt_tokens AS input_tokens, completion_tokens AS output_tokens,"
            "         generation_cost AS cost FROM priced WHERE model IS NOT NULL"
            "  UNION ALL"
            "  SELECT embedding_model, 'embedding', embedding_tokens, 0, embedding_cost FROM priced"
            "  WHERE embedding_model IS NOT NULL) AS usage GROUP BY model, kind ORDER BY cost_usd DESC, model"))
        facts.costliest_sessions = _dicts(conn.execute(
            "SELECT session_id, count(*) AS queries, sum(generation_cost + embedding_cost) AS cost_usd FROM priced "
            "WHERE session_id IS NOT NULL GROUP BY session_id ORDER BY cost_usd DESC, session_id LIMIT 10"))
        queries, mean, p95 = conn.execute(
            "SELECT count(*), coalesce(avg(generation_cost + embedding_cost), 0), "
            "coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY generation_cost + embedding_cost), 0) FROM priced"
        ).fetchone()
        facts.queries, facts.cost_per_query_mean, facts.cost_per_query_p95 = queries, Decimal(mean), Decimal(p95)
    return facts


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    columns = [c.name for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def fixed_monthly_usd(settings: Settings) -> Decimal:
    return sum((Decimal(str(v)) for v in (settings.cost_fixed_render_usd, settings.cost_fixed_neon_usd,
                                          settings.cost_fixed_qdrant_usd)), Decimal(0))


@task(name="upsert-cost-daily", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def upsert_cost_daily(settings: Settings, facts: CostFacts) -> int:
    """One row per day of the month so far; re-running the same day rewrites the same rows."""
    fixed_daily = fixed_monthly_usd(settings) / days_in_month(facts.as_of)
    by_day = {row["day"]: row for row in facts.daily}
    rows = []
    day = facts.start
    while day <= facts.as_of:
        row = by_day.get(day, {})
        variable = Decimal(row.get("variable_cost_usd") or 0)
        rows.append((day, row.get("queries", 0), row.get("prompt_tokens") or 0, row.get("completion_tokens") or 0,
                     row.get("embedding_tokens") or 0, variable, fixed_daily, variable + fixed_daily))
        day += timedelta(days=1)
    with connect(settings.resolved_database_url) as conn:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO cost_daily (day, queries, prompt_tokens, completion_tokens, embedding_tokens, "
                "variable_cost_usd, fixed_cost_usd, total_cost_usd, computed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (day) DO UPDATE SET "
                "queries = EXCLUDED.queries, prompt_tokens = EXCLUDED.prompt_tokens, "
                "completion_tokens = EXCLUDED.completion_tokens, embedding_tokens = EXCLUDED.embedding_tokens, "
                "variable_cost_usd = EXCLUDED.variable_cost_usd, fixed_cost_usd = EXCLUDED.fixed_cost_usd, "
                "total_cost_usd = EXCLUDED.total_cost_usd, computed_at = EXCLUDED.computed_at",
                rows,
            )
        conn.commit()
    return len(rows)
