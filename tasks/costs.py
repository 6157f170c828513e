"""Cost tasks: price the month of `query_log` with the versioned price table joined inside Postgres (set-based SQL)
and store `cost_daily`, in one transaction."""

from __future__ import annotations

import calendar
import json
import math
import uuid
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
    days_written: int = 0


def price_rows() -> list[tuple[str, date, date, Decimal, Decimal]]:
    """The price table as validity intervals: (model, valid_from, valid_to, input/M, output/M)."""
    rows = []
    for model, prices in PRICE_TABLE.items():
        ordered = sorted(prices, key=lambda p: p.effective)
        for i, price in enumerate(ordered):
            valid_to = ordered[i + 1].effective if i + 1 < len(ordered) else FAR_FUTURE
            rows.append((model, price.effective, valid_to, price.input_per_million, price.output_per_million))
    return rows


# The price table (app/core/pricing.py) travels as arrays into Postgres and is joined there. Two reads of the month,
# both parallel (measured: keeping the million priced rows for a second use costs more than reading query_log again):
# 1. USAGE_SQL sums the month per (session, UTC day, model, embedding model) without pricing a row (costs are linear in
#    tokens), then prices those sums exactly at the price in force on their day (in integers: prices as whole units
#    of 10^-decimals dollars per million tokens; numeric arithmetic on every group was the cost of months with many
#    sessions): the usage per day and model and the costliest sessions. Migration 0016's statistics on this grouping
#    tell the planner how few groups there are (else it expects a million and aggregates in one process): keep the
#    day expression as it is there.
# 2. P95_SQL prices each row (in float8: a percentile shown to the millionth of a dollar) at the price period it falls
#    in, by model and timestamp, and keeps only the costliest rows above the 95th percentile's position (a bounded
#    top-N sort, not a sort of the month); percentile_cont's interpolation is then done on the two rows around it.
# cost_daily is written by one INSERT ... ON CONFLICT over the month's days, in the same transaction.
USAGE_SQL = """
WITH groups AS (
    SELECT session_id, (day_start AT TIME ZONE 'UTC')::date AS day, model, embedding_model, queries, prompt_tokens,
           completion_tokens, embedding_tokens
    FROM (SELECT session_id, date_bin('1 day', created_at, '2000-01-01 00:00:00+00'::timestamptz) AS day_start,
                 model, embedding_model, count(*) AS queries, sum(prompt_tokens) AS prompt_tokens,
                 sum(completion_tokens) AS completion_tokens, sum(embedding_tokens) AS embedding_tokens
          FROM query_log WHERE created_at >= %(start)s AND created_at < %(end)s
          GROUP BY session_id, day_start, model, embedding_model) AS summed),
price AS MATERIALIZED (
    SELECT * FROM unnest(%(models)s::text[], %(froms)s::date[], %(tos)s::date[], %(input_units)s::bigint[],
                         %(output_units)s::bigint[])
                  AS p(model, valid_from, valid_to, input_units, output_units)),
priced AS MATERIALIZED (
    SELECT grp.*,
           grp.prompt_tokens * coalesce(g.input_units, 0) + grp.completion_tokens * coalesce(g.output_units, 0)
               AS generation_units,
           grp.embedding_tokens * coalesce(e.input_units, 0) AS embedding_units,
           (grp.model IS NOT NULL AND g.model IS NULL) AS model_unpriced,
           (grp.embedding_model IS NOT NULL AND e.model IS NULL) AS embedding_unpriced
    FROM groups grp
    LEFT JOIN price g ON g.model = grp.model AND grp.day >= g.valid_from AND grp.day < g.valid_to
    LEFT JOIN price e ON e.model = grp.embedding_model AND grp.day >= e.valid_from AND grp.day < e.valid_to),
usage AS (
    SELECT day, model, embedding_model, sum(queries) AS queries, sum(prompt_tokens) AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens, sum(embedding_tokens) AS embedding_tokens,
           sum(generation_units) * %(usd_per_unit)s AS generation_cost,
           sum(embedding_units) * %(usd_per_unit)s AS embedding_cost,
           bool_or(model_unpriced) AS model_unpriced, bool_or(embedding_unpriced) AS embedding_unpriced
    FROM priced GROUP BY day, model, embedding_model),
costliest_sessions AS (
    SELECT session_id, sum(queries) AS queries, sum(generation_units + embedding_units) * %(usd_per_unit)s AS cost_usd
    FROM priced WHERE session_id IS NOT NULL
    GROUP BY session_id ORDER BY sum(generation_units + embedding_units) DESC, session_id LIMIT 10)
SELECT json_build_object(
    'usage', (SELECT coalesce(json_agg(u ORDER BY u.day, u.model, u.embedding_model), '[]') FROM usage u),
    'costliest_sessions', (SELECT coalesce(json_agg(s ORDER BY s.cost_usd DESC, s.session_id), '[]')
                           FROM costliest_sessions s))::text
"""

P95_SQL = """
WITH price AS NOT MATERIALIZED (
    SELECT * FROM unnest(%(models)s::text[], %(from_ats)s::timestamptz[], %(to_ats)s::timestamptz[],
                         %(input_per_token)s::float8[], %(output_per_token)s::float8[])
                  AS p(model, valid_from_at, valid_to_at, input_per_token, output_per_token))
SELECT cost FROM (
    SELECT q.prompt_tokens * coalesce(g.input_per_token, 0) + q.completion_tokens * coalesce(g.output_per_token, 0)
           + q.embedding_tokens * coalesce(e.input_per_token, 0) AS cost
    FROM query_log q
    LEFT JOIN price g ON g.model = q.model AND q.created_at >= g.valid_from_at AND q.created_at < g.valid_to_at
    LEFT JOIN price e ON e.model = q.embedding_model AND q.created_at >= e.valid_from_at AND q.created_at < e.valid_to_at
    WHERE q.created_at >= %(start)s AND q.created_at < %(end)s
    ORDER BY cost DESC LIMIT %(top)s) AS costliest
ORDER BY cost LIMIT 2
"""

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
# The planner cannot judge the month's groups without migration 0016's statistics: it may JIT-compile the statement
# (seconds on a busy machine) and hash on disk (4 MB work_mem). The report's transaction turns JIT off and gives the
# hashes and the top-N sort room in memory.
REPORT_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")
P95 = 0.95


def _retry_unless_unpriced(task: Any, task_run: Any, state: Any) -> bool:
    """Retry database hiccups, not a missing price (that needs a code change) nor a refused login."""
    return not isinstance(state.result(raise_on_failure=False), UnpricedModel) and retry_unless_rejected(
        task, task_run, state)


@task(name="price-and-record-month", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, timeout_seconds=600,
      retry_condition_fn=_retry_unless_unpriced)
def price_and_record_month(settings: Settings, as_of: date) -> CostFacts:
    """Every query of the month up to `as_of`, priced at the price in force on its own day, and one `cost_daily` row
    per day of the month so far, in one transaction. Re-running the same day rewrites the same rows; an unpriced
    model writes nothing."""
    start = as_of.replace(day=1)
    prices = price_rows()
    decimals = max(-min(p[3].as_tuple().exponent, p[4].as_tuple().exponent, 0) for p in prices)
    params: dict[str, Any] = {
        "models": [p[0] for p in prices], "froms": [p[1] for p in prices], "tos": [p[2] for p in prices],
        # Exact integers for the sums: prices in units of 10^-decimals of a dollar per million tokens.
        "input_units": [int(p[3].scaleb(decimals)) for p in prices],
        "output_units": [int(p[4].scaleb(decimals)) for p in prices],
        "usd_per_unit": Decimal(1).scaleb(-decimals - 6),
        # The p95's copy: bounds as timestamptz and prices per token as float8, so that no row converts them.
        "from_ats": [_midnight_utc(p[1]) for p in prices], "to_ats": [_midnight_utc(p[2]) for p in prices],
        "input_per_token": [float(p[3]) / 1_000_000 for p in prices],
        "output_per_token": [float(p[4]) / 1_000_000 for p in prices],
        # Aware bounds: compared with the timestamptz column as they are (naive ones would convert every row).
        "start": _midnight_utc(start),
        "end": _midnight_utc(as_of + timedelta(days=1)),
    }
    facts = CostFacts(start=start, as_of=as_of)
    with connect(settings.resolved_database_url) as conn:
        for setting in REPORT_SETTINGS:
            conn.execute(setting)
        (month_json,) = conn.execute(USAGE_SQL, params).fetchone()
        month = json.loads(month_json, parse_float=Decimal)
        usage = [row | {"day": date.fromisoformat(row["day"])} for row in month["usage"]]
        _refuse_unpriced(usage)
        facts.queries = sum(row["queries"] for row in usage)
        facts.cost_per_query_p95 = _p95(conn, params, facts.queries)
        facts.daily = _daily(usage)
        facts.days_written = conn.execute(UPSERT_DAILY_SQL, {
            "first_day": start, "as_of": as_of, "fixed": fixed_monthly_usd(settings) / days_in_month(as_of),
            "days": [r["day"] for r in facts.daily], "queries": [r["queries"] for r in facts.daily],
            "prompt": [r["prompt_tokens"] for r in facts.daily],
            "completion": [r["completion_tokens"] for r in facts.daily],
            "embedding": [r["embedding_tokens"] for r in facts.daily],
            "variable": [r["variable_cost_usd"] for r in facts.daily],
        }).rowcount
        conn.commit()
    facts.costliest_sessions = [s | {"session_id": uuid.UUID(s["session_id"])} for s in month["costliest_sessions"]]
    facts.per_model = _per_model(usage)
    total = sum((row["variable_cost_usd"] for row in facts.daily), Decimal(0))
    facts.cost_per_query_mean = total / facts.queries if facts.queries else Decimal(0)
    return facts


def _midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _refuse_unpriced(usage: list[dict[str, Any]]) -> None:
    unpriced: dict[str, int] = {}
    for row in usage:
        if row["model_unpriced"] or row["embedding_unpriced"]:
            model = row["model"] if row["model_unpriced"] else row["embedding_model"]
            unpriced[model] = unpriced.get(model, 0) + row["queries"]
    if unpriced:
        listed = ", ".join(f"{model!r} ({count} rows)" for model, count in sorted(unpriced.items()))
        raise UnpricedModel(f"no price in app/core/pricing.py for {listed}: add a ModelPrice row, then re-run")


def _p95(conn: Any, params: dict[str, Any], queries: int) -> Decimal:
    """percentile_cont(0.95) of the cost per query, computed as Postgres does (linear between the two rows around
    position 0.95 * (n - 1), in float8), from the rows at and above that position only."""
    if not queries:
        return Decimal(0)
    position = P95 * (queries - 1)
    lower = math.floor(position)
    around = [cost for (cost,) in conn.execute(P95_SQL, params | {"top": queries - lower}).fetchall()]
    low, high = around[0], around[-1]
    return Decimal(str(low + (position - lower) * (high - low)))


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


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def fixed_monthly_usd(settings: Settings) -> Decimal:
    return sum((Decimal(str(v)) for v in (settings.cost_fixed_render_usd, settings.cost_fixed_neon_usd,
                                          settings.cost_fixed_qdrant_usd)), Decimal(0))
