"""cost-report against a fixture priced by hand, on a real Postgres."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from app.core.db import migrate
from app.core.pricing import PRICE_TABLE, ModelPrice, cost_usd
from flows.cost_report import cost_report
from tasks.costs import UnpricedModel, price_and_record_month
from tests.conftest import APP_PASSWORD, database_url
from tests.support.webhook import webhook_receiver

pytestmark = pytest.mark.usefixtures("prefect_harness")
SESSION_A, SESSION_B = uuid.uuid4(), uuid.uuid4()
# (created_at, session, model, prompt, completion, embedding_model, embedding_tokens)
FIXTURE = [
    ("2024-09-30 23:00", None, "gpt-4o", 1_000_000, 0, None, 0),  # previous month: not counted
    ("2024-10-01 10:00", SESSION_A, "gpt-4o", 1000, 500, "text-embedding-3-small", 100),  # old gpt-4o price
    ("2024-10-02 12:00", None, "extractive", 0, 0, "all-MiniLM-L6-v2", 30),
    ("2024-10-03 09:00", SESSION_A, "gpt-4o", 2000, 1000, "text-embedding-3-small", 200),  # new price (2 Oct)
    ("2024-10-03 11:00", SESSION_B, "gpt-4o-mini", 4000, 1000, "text-embedding-3-small", 50),
    ("2024-10-04 08:00", SESSION_B, "gpt-4o-mini", 9999, 9999, None, 0),  # after as_of: not counted
]
# By hand: 1 Oct (1000*5.00 + 500*15.00)/1e6 + 100*0.02/1e6 = 0.012502
#          3 Oct (2000*2.50 + 1000*10.00)/1e6 + 200*0.02/1e6 = 0.015004 and (4000*0.15 + 1000*0.60)/1e6 + 50*0.02/1e6
#                = 0.001201
# variable month to date 0.028707 over 4 queries; fixed 7 + 19 + 0 = 26 a month; October has 31 days.
EXPECTED = {"today_usd": "0.85", "month_to_date_usd": "2.54", "projected_month_usd": "26.30",
            "cost_per_query_mean_usd": "0.007177", "queries": 4}


@pytest.fixture
def cost_db(pg_cluster, settings_env):
    pg_cluster.drop_database("costs")
    pg_cluster.ensure_database(dbname="costs", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "costs")
    migrate(url)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for created, session, model, prompt, completion, embedding_model, embedding in FIXTURE:
            conn.execute(
                "INSERT INTO query_log (request_id, session_id, endpoint, prompt_tokens, completion_tokens, "
                "embedding_tokens, model, embedding_model, cost_usd, status, created_at) "
                "VALUES (%s, %s, 'chat', %s, %s, %s, %s, %s, 0, 'ok', %s)",
                (uuid.uuid4(), session, prompt, completion, embedding, model, embedding_model,
                 datetime.fromisoformat(created).replace(tzinfo=UTC)),
            )
    settings_env({"DATABASE_URL": url})
    yield url


def cost_daily(url: str) -> list[tuple]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute("SELECT day::text, queries, prompt_tokens, completion_tokens, embedding_tokens, "
                            "variable_cost_usd, fixed_cost_usd FROM cost_daily ORDER BY day").fetchall()


def test_report_matches_the_hand_computed_fixture_to_the_cent(cost_db):
    result = cost_report(as_of="2024-10-03")
    assert {k: result[k] for k in EXPECTED} == EXPECTED and result["alerts"] == []
    rows = cost_daily(cost_db)
    assert [(r[0], r[1], r[5]) for r in rows] == [
        ("2024-10-01", 1, Decimal("0.01250200")), ("2024-10-02", 1, Decimal("0E-8")),
        ("2024-10-03", 2, Decimal("0.01620500"))]
    assert all(r[6] == Decimal("0.83870968") for r in rows)  # 26 / 31


def test_running_the_same_day_twice_gives_the_same_rows(cost_db):
    cost_report(as_of="2024-10-03")
    first = cost_daily(cost_db)
    cost_report(as_of="2024-10-03")
    assert cost_daily(cost_db) == first


def test_unpriced_model_fails_the_run_with_its_name_and_writes_nothing(cost_db):
    with psycopg.connect(cost_db.replace("+psycopg", "")) as conn:
        conn.execute("INSERT INTO query_log (request_id, endpoint, model, prompt_tokens, completion_tokens, "
                     "embedding_tokens, cost_usd, status, created_at) "
                     "VALUES (%s, 'chat', 'gpt-9-preview', 10, 0, 0, 0, 'ok', '2024-10-02 10:00+00')", (uuid.uuid4(),))
    with pytest.raises(UnpricedModel, match=r"app/core/pricing.py for 'gpt-9-preview' \(1 rows\)"):
        cost_report(as_of="2024-10-03")
    assert cost_daily(cost_db) == []


def test_projected_overrun_notifies_the_webhook(cost_db, settings_env):
    with webhook_receiver() as (url, received):
        settings_env({
            "COST_ALERT_WEBHOOK_URL": url,
            "COST_MONTHLY_BUDGET_USD": "20",
            "COST_PER_QUERY_TARGET_USD": "0.005",
        })
        result = cost_report(as_of="2024-10-03")
    assert len(result["alerts"]) == 2
    assert received[0]["subject"] == "textbook-ops cost alert for 2024-10-03"
    assert "projected month end $26.30 is over the budget $20.00" in received[0]["body"]
    assert "over the target" in received[0]["body"]


@pytest.fixture
def openai_billing(settings_env):
    from tests.support.openai_server import FakeOpenAI

    server = FakeOpenAI().start()
    # OpenAI billed 1, 2 and 3 October (the month to date of as_of=2024-10-03), and 4 October (not counted).
    server.daily_costs = {"2024-10-01": 0.0125, "2024-10-02": 0.0, "2024-10-03": 0.02, "2024-10-04": 5.0}
    settings_env({"OPENAI_BASE_URL": server.base_url, "OPENAI_ADMIN_KEY": "sk-admin-test"})
    yield server
    server.stop()


def test_reconciliation_sets_openai_bill_against_our_estimate(cost_db, openai_billing):
    result = cost_report(as_of="2024-10-03")
    # our variable estimate by hand: 0.012502 + 0.015004 + 0.001201 = 0.028707; OpenAI billed 0.0325
    assert result["reconciliation"] == {"openai_billed_usd": "0.032500", "our_estimate_usd": "0.028707",
                                        "difference_usd": "0.003793"}
    assert result["month_to_date_usd"] == EXPECTED["month_to_date_usd"], "reconciliation must not change the report"


def test_reconciliation_with_a_rejected_admin_key_fails_clearly(cost_db, openai_billing, settings_env):
    from tasks.openai_api import CredentialRejected

    settings_env({"OPENAI_ADMIN_KEY": "sk-admin-wrong"})
    with pytest.raises(CredentialRejected, match="refused the admin key for the costs API \\(401\\)"):
        cost_report(as_of="2024-10-03")
    assert cost_daily(cost_db) == [], "a failed reconciliation writes nothing"


def reference_costs(rows: list[tuple], as_of: date) -> dict:
    """The month's figures the plain way: each row priced on its own day by app/core/pricing.py, summed in Python."""
    start = as_of.replace(day=1)
    daily: dict[date, list] = {}
    sessions: dict[uuid.UUID, list] = {}
    per_model: dict[tuple[str, str], Decimal] = {}
    costs = []
    for created, session, model, prompt, completion, embedding_model, embedding in rows:
        day = created.date()
        if not start <= day <= as_of:
            continue
        generation = cost_usd(model, input_tokens=prompt, output_tokens=completion, day=day) if model else Decimal(0)
        embedding_cost = cost_usd(embedding_model, input_tokens=embedding, day=day) if embedding_model else Decimal(0)
        cost = generation + embedding_cost
        costs.append(cost)
        totals = daily.setdefault(day, [0, 0, 0, 0, Decimal(0)])
        for i, value in enumerate((1, prompt, completion, embedding, cost)):
            totals[i] += value
        if session is not None:
            entry = sessions.setdefault(session, [0, Decimal(0)])
            entry[0] += 1
            entry[1] += cost
        if model:
            per_model[(model, "generation")] = per_model.get((model, "generation"), Decimal(0)) + generation
        if embedding_model:
            per_model[(embedding_model, "embedding")] = (per_model.get((embedding_model, "embedding"), Decimal(0))
                                                        + embedding_cost)
    ordered = sorted(float(c) for c in costs)
    position = 0.95 * (len(ordered) - 1)  # percentile_cont: linear between the two rows around the position
    lower = ordered[int(position)]
    upper = ordered[min(int(position) + 1, len(ordered) - 1)]
    top = sorted(sessions.items(), key=lambda item: (-item[1][1], str(item[0])))[:10]
    return {
        "daily": {day: tuple(v) for day, v in daily.items()},
        "sessions": [(session, queries, cost) for session, (queries, cost) in top],
        "per_model": per_model,
        "queries": len(costs),
        "mean": sum(costs, Decimal(0)) / len(costs),
        "p95": lower + (upper - lower) * (position - int(position)),
    }


def random_month(seed: int, count: int) -> list[tuple]:
    """Rows around October 2024 (gpt-4o's price changed on the 2nd): many sessions, some rows without a session,
    a model or an embedding model, some in September and November."""
    rng = random.Random(seed)
    sessions = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(30)]
    rows = []
    for _ in range(count):
        created = datetime(2024, 9, 29, tzinfo=UTC) + timedelta(seconds=rng.randrange(35 * 86400))
        model = rng.choice(["gpt-4o", "gpt-4o", "gpt-4o-mini", "extractive", None])
        embedding_model = rng.choice(["text-embedding-3-small", "text-embedding-3-large", "all-MiniLM-L6-v2", None])
        rows.append((created, rng.choice(sessions + [None]), model, rng.randrange(5000), rng.randrange(800),
                     embedding_model, rng.randrange(60)))
    return rows


@pytest.mark.parametrize("finer_price", [False, True], ids=["list prices", "a price with 5 decimals"])
def test_set_based_figures_equal_each_row_priced_on_its_own_in_python(pg_cluster, settings_env, monkeypatch,
                                                                      finer_price):
    if finer_price:  # the sums are priced in integer units of the finest price's decimals
        monkeypatch.setitem(PRICE_TABLE, "gpt-4o-mini", [ModelPrice(date(2024, 7, 18), Decimal("0.07519"),
                                                                    Decimal("0.3"))])
    pg_cluster.drop_database("costs_random")
    pg_cluster.ensure_database(dbname="costs_random", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "costs_random")
    migrate(url)
    rows = random_month(seed=17, count=600)
    with psycopg.connect(url.replace("+psycopg", "")) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO query_log (request_id, session_id, endpoint, prompt_tokens, completion_tokens, "
            "embedding_tokens, model, embedding_model, cost_usd, status, created_at) "
            "VALUES (gen_random_uuid(), %s, 'chat', %s, %s, %s, %s, %s, 0, 'ok', %s)",
            [(session, prompt, completion, embedding, model, embedding_model, created)
             for created, session, model, prompt, completion, embedding_model, embedding in rows])
    settings = settings_env({"DATABASE_URL": url})
    as_of = date(2024, 10, 20)
    expected = reference_costs(rows, as_of)

    facts = price_and_record_month.fn(settings, as_of)

    assert facts.queries == expected["queries"] and facts.cost_per_query_mean == expected["mean"]
    assert float(facts.cost_per_query_p95) == pytest.approx(expected["p95"], rel=1e-12)
    assert {row["day"]: (row["queries"], row["prompt_tokens"], row["completion_tokens"], row["embedding_tokens"],
                         row["variable_cost_usd"]) for row in facts.daily} == expected["daily"]
    assert [(s["session_id"], s["queries"], s["cost_usd"]) for s in facts.costliest_sessions] == expected["sessions"]
    assert {(m["model"], m["kind"]): m["cost_usd"] for m in facts.per_model} == expected["per_model"]
    stored = {date.fromisoformat(day): (queries, prompt, completion, embedding, variable)
              for day, queries, prompt, completion, embedding, variable, _ in cost_daily(url)}
    every_day = {as_of.replace(day=d): (0, 0, 0, 0, Decimal(0)) for d in range(1, as_of.day + 1)}
    stored_precision = {day: (*totals[:4], totals[4].quantize(Decimal("1E-8"), rounding=ROUND_HALF_UP))
                        for day, totals in expected["daily"].items()}  # numeric(14, 8) in cost_daily
    assert stored == every_day | stored_precision, "one cost_daily row per day of the month, days without queries 0"
