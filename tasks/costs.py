"""Cost tasks: price `query_log` with the versioned price table in one set-based pass, store `cost_daily`."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from app.core.pricing import PRICE_TABLE
from app.settings import Settings
from tasks.databases import connect, retry_unless_rejected

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


# The price table (app/core/pricing.py) travels as arrays into a temporary table inside Postgres: the price in force on
# each day of the period, per model (days x models rows, analyzed, so the planner hashes it). Costs are linear in
# tokens, so the month is summed per (day, model, embedding model) in one scan and priced after that; only the p95
# of the cost per query needs each row's own price.
DAY_PRICE_SQL = """
CREATE TEMP TABLE day_price ON COMMIT DROP AS
SELECT d::date AS day, p.model, p.input_per_m, p.output_per_m
FROM generate_series(%(first_day)s::date, %(as_of)s::date, interval '1 day') AS d
JOIN unnest(%(models)s::text[], %(froms)s::date[], %(tos)s::date[], %(ins)s::numeric[], %(outs)s::numeric[])
     AS p(model, valid_from, valid_to, input_per_m, output_per_m)
  ON d::date >= p.valid_from AND d::date < p.valid_to
"""
# A month has few (day, model, embedding model) groups, but the planner cannot tell from `created_at::date`: it
# expects a million, then JIT-compiles the query (seconds on a busy machine) and sorts on disk (4 MB work_mem).
# The report's transaction turns JIT off and gives the hash and the p95's sort room in memory.
REPORT_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")

PRICED_USAGE = """
SELECT u.*,
       (u.prompt_tokens * coalesce(g.input_per_m, 0) + u.completion_tokens * coalesce(g.output_per_m, 0)) / 1000000
           AS generation_cost,
       u.embedding_tokens * coalesce(e.input_per_m, 0) / 1000000 AS embedding_cost,
       (u.model IS NOT NULL AND g.model IS NULL) AS model_unpriced,
       (u.embedding_model IS NOT NULL AND e.model IS NULL) AS embedding_unpriced
FROM usage u
LEFT JOIN day_price g ON g.day = u.day AND g.model = u.model
LEFT JOIN day_price e ON e.day = u.day AND e.model = u.embedding_model"""

USAGE_SUMS = """count(*) AS queries, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(embedding_tokens) AS embedding_tokens"""

MONTH = "created_at >= %(start)s AND created_at < %(end)s"

# One scan of the month: tokens per day and model pair (hashed on its own: MATERIALIZED), then priced.
USAGE_SQL = (f"WITH usage AS MATERIALIZED (SELECT created_at::date AS day, model, embedding_model, {USAGE_SUMS} "  # nosec B608: only this module's constants are interpolated; values are bound parameters
             f"FROM query_log WHERE {MONTH} GROUP BY 1, 2, 3) {PRICED_USAGE} ORDER BY day, model, embedding_model")

# The costliest sessions: their rows summed per day and model pair, priced, summed per session.
SESSIONS_SQL = (
    f"WITH usage AS MATERIALIZED (SELECT session_id, created_at::date AS day, model, embedding_model, {USAGE_SUMS} "  # nosec B608: only this module's constants are interpolated; values are bound parameters
    f"FROM query_log WHERE {MONTH} AND session_id IS NOT NULL GROUP BY 1, 2, 3, 4), priced AS ({PRICED_USAGE}) "
    "SELECT session_id, sum(queries) AS queries, sum(generation_cost + embedding_cost) AS cost_usd FROM priced "
    "GROUP BY session_id ORDER BY cost_usd DESC, session_id LIMIT 10")

# The 95th percentile of one query's cost: the one figure that needs every row's own price. Rows meet the price
# periods by model (a hash) and by their timestamp (no per-row date); in float8: a percentile shown to the
# millionth of a dollar, while the sums above stay exact numerics.
P95_SQL = """
WITH price AS MATERIALIZED (
    SELECT model, valid_from::timestamptz AS valid_from, valid_to::timestamptz AS valid_to,
           input_per_m::float8 / 1000000 AS input_per_token, output_per_m::float8 / 1000000 AS output_per_token
    FROM unnest(%(models)s::text[], %(froms)s::date[], %(tos)s::date[], %(ins)s::numeric[], %(outs)s::numeric[])
         AS p(model, valid_from, valid_to, input_per_m, output_per_m)
)
SELECT coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY
    q.prompt_tokens * coalesce(g.input_per_token, 0) + q.completion_tokens * coalesce(g.output_per_token, 0)
    + q.embedding_tokens * coalesce(e.input_per_token, 0)), 0)
FROM query_log q
LEFT JOIN price g ON g.model = q.model AND q.created_at >= g.valid_from AND q.created_at < g.valid_to
LEFT JOIN price e ON e.model = q.embedding_model AND q.created_at >= e.valid_from AND q.created_at < e.valid_to
WHERE q.created_at >= %(start)s AND q.created_at < %(end)s"""


def _retry_unless_unpriced(task: Any, task_run: Any, state: Any) -> bool:
    """Retry database hiccups, not a missing price (that needs a code change) nor a refused login."""
    return not isinstance(state.result(raise_on_failure=False), UnpricedModel) and retry_unless_rejected(
        task, task_run, state)


@task(name="price-query-log", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, timeout_seconds=600,
      retry_condition_fn=_retry_unless_unpriced)
def price_query_log(settings: Settings, as_of: date) -> CostFacts:
    """Every query of the month up to `as_of`, priced at the price in force on its own day."""
    start = as_of.replace(day=1)
    # Aware bounds: compared with the timestamptz column as they are (naive ones would convert every row).
    end = datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    prices = price_rows()
    params = {
        "models": [p[0] for p in prices], "froms": [p[1] for p in prices], "tos": [p[2] for p in prices],
        "ins": [p[3] for p in prices], "outs": [p[4] for p in prices],
        "start": datetime.combine(start, time.min, tzinfo=UTC), "end": end,
    }
    facts = CostFacts(start=start, as_of=as_of)
    params["first_day"], params["as_of"] = start, as_of
    with connect(settings.resolved_database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for setting in REPORT_SETTINGS:
            conn.execute(setting)
        conn.execute(DAY_PRICE_SQL, params)
        conn.execute("ANALYZE day_price")
        usage = _dicts(conn.execute(USAGE_SQL, params))
        unpriced: dict[str, int] = {}
        for row in usage:
            if row["model_unpriced"] or row["embedding_unpriced"]:
                model = row["model"] if row["model_unpriced"] else row["embedding_model"]
                unpriced[model] = unpriced.get(model, 0) + row["queries"]
        if unpriced:
            listed = ", ".join(f"{model!r} ({count} rows)" for model, count in sorted(unpriced.items()))
            raise UnpricedModel(f"no price in app/core/pricing.py for {listed}: add a ModelPrice row, then re-run")
        facts.costliest_sessions = _dicts(conn.execute(SESSIONS_SQL, params))
        (p95,) = conn.execute(P95_SQL, params).fetchone()
    facts.daily = _daily(usage)
    facts.per_model = _per_model(usage)
    facts.queries = sum(row["queries"] for row in usage)
    total = sum((row["generation_cost"] + row["embedding_cost"] for row in usage), Decimal(0))
    facts.cost_per_query_mean = total / facts.queries if facts.queries else Decimal(0)
    facts.cost_per_query_p95 = Decimal(str(p95))
    return facts


def _daily(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The priced usage summed per day (a few hundred rows at most)."""
    days: dict[date, dict[str, Any]] = {}
    for row in usage:
        day = days.setdefault(row["day"], {"day": row["day"], "queries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                           "embedding_tokens": 0, "variable_cost_usd": Decimal(0)})
        for name in ("queries", "prompt_tokens", "completion_tokens", "embedding_tokens"):
            day[name] += row[name]
        day["variable_cost_usd"] += row["generation_cost"] + row["embedding_cost"]
    return list(days.values())


def _per_model(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tokens and dollars per model and kind (generation, embedding), costliest first."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for row in usage:
        for model, kind, input_tokens, output_tokens, cost in (
            (row["model"], "generation", row["prompt_tokens"], row["completion_tokens"], row["generation_cost"]),
            (row["embedding_model"], "embedding", row["embedding_tokens"], 0, row["embedding_cost"]),
        ):
            if model is None:
                continue
            entry = models.setdefault((model, kind), {"model": model, "kind": kind, "input_tokens": 0,
                                                      "output_tokens": 0, "cost_usd": Decimal(0)})
            entry["input_tokens"] += input_tokens
            entry["output_tokens"] += output_tokens
            entry["cost_usd"] += cost
    return sorted(models.values(), key=lambda m: (-m["cost_usd"], m["model"]))


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    columns = [c.name for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def fixed_monthly_usd(settings: Settings) -> Decimal:
    return sum((Decimal(str(v)) for v in (settings.cost_fixed_render_usd, settings.cost_fixed_neon_usd,
                                          settings.cost_fixed_qdrant_usd)), Decimal(0))


UPSERT_DAILY_SQL = """
INSERT INTO cost_daily (day, queries, prompt_tokens, completion_tokens, embedding_tokens, variable_cost_usd,
                        fixed_cost_usd, total_cost_usd, computed_at)
SELECT d::date, coalesce(u.queries, 0), coalesce(u.prompt_tokens, 0), coalesce(u.completion_tokens, 0),
       coalesce(u.embedding_tokens, 0), coalesce(u.variable, 0), %(fixed)s, coalesce(u.variable, 0) + %(fixed)s, now()
FROM generate_series(%(first_day)s::date, %(as_of)s::date, interval '1 day') AS d
LEFT JOIN unnest(%(days)s::date[], %(queries)s::bigint[], %(prompt)s::bigint[], %(completion)s::bigint[],
                 %(embedding)s::bigint[], %(variable)s::numeric[])
     AS u(day, queries, prompt_tokens, completion_tokens, embedding_tokens, variable) ON u.day = d::date
ON CONFLICT (day) DO UPDATE SET
    queries = EXCLUDED.queries, prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens,
    embedding_tokens = EXCLUDED.embedding_tokens, variable_cost_usd = EXCLUDED.variable_cost_usd,
    fixed_cost_usd = EXCLUDED.fixed_cost_usd, total_cost_usd = EXCLUDED.total_cost_usd, computed_at = EXCLUDED.computed_at
"""


@task(name="upsert-cost-daily", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def upsert_cost_daily(settings: Settings, facts: CostFacts) -> int:
    """One row per day of the month so far, in one statement; re-running the same day rewrites the same rows."""
    daily = facts.daily
    with connect(settings.resolved_database_url) as conn:
        written = conn.execute(UPSERT_DAILY_SQL, {
            "first_day": facts.start, "as_of": facts.as_of,
            "fixed": fixed_monthly_usd(settings) / days_in_month(facts.as_of),
            "days": [r["day"] for r in daily], "queries": [int(r["queries"]) for r in daily],
            "prompt": [int(r["prompt_tokens"] or 0) for r in daily],
            "completion": [int(r["completion_tokens"] or 0) for r in daily],
            "embedding": [int(r["embedding_tokens"] or 0) for r in daily],
            "variable": [Decimal(r["variable_cost_usd"] or 0) for r in daily],
        }).rowcount
        conn.commit()
    return written
