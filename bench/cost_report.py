"""cost-report on a month of 1,000,000 query_log rows (set-based SQL). Target: at most 5 s.

Baseline in the same run: one plain scan of the same rows (count and token sums), the floor for any report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness import bench_environment, machine_line, markdown_table, write_section

GENERATE_SQL = """
INSERT INTO query_log (request_id, session_id, endpoint, locale, retrieval_ms, generation_ms, total_ms, prompt_tokens,
                       completion_tokens, embedding_tokens, model, embedding_model, cost_usd, status, created_at)
SELECT gen_random_uuid(), NULL, 'chat', 'en', 10, 20, 30, (random() * 3000)::int, (random() * 500)::int,
       (random() * 40)::int, (ARRAY['gpt-4o-mini', 'gpt-4o', 'extractive', 'gpt-4.1-mini'])[1 + i %% 4],
       CASE WHEN i %% 3 = 0 THEN 'all-MiniLM-L6-v2' ELSE 'text-embedding-3-small' END, 0, 'ok',
       timestamptz '2026-10-01 00:00+00' + (i * interval '2.6784 seconds')
FROM generate_series(0, %(rows)s - 1) AS i
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with bench_environment():
        import psycopg

        from app.settings import get_settings
        from flows.cost_report import cost_report
        from tasks.postgres import libpq

        conninfo, env = libpq(get_settings().resolved_database_url)
        with psycopg.connect(conninfo, password=env["PGPASSWORD"], autocommit=True) as conn:
            conn.execute(GENERATE_SQL % {"rows": args.rows})
            conn.execute("VACUUM ANALYZE query_log")
            scans = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                conn.execute("SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(embedding_tokens) "
                             "FROM query_log WHERE created_at >= '2026-10-01' AND created_at < '2026-11-01'").fetchone()
                scans.append(time.perf_counter() - started)
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = cost_report(as_of="2026-10-31")
            runs.append(time.perf_counter() - started)
    scan_s, report_s = statistics.median(scans), statistics.median(runs)
    rows = [["one plain scan of the month (baseline)", scan_s, 1.0, "-"],
            ["cost-report flow (price, upsert 31 days, artifacts)", report_s, report_s / scan_s, "<= 5 s"]]
    table = markdown_table(["run", "seconds", "ratio to baseline", "target"], rows)
    notes = (f"{result['queries']} query_log rows in October 2026, four models and two embedding models; medians of "
             f"{args.repeat} runs. Month to date ${result['month_to_date_usd']}. Target "
             f"{'met' if report_s <= 5 else 'NOT met'}.")
    print(table, notes, sep="\n\n")
    if not args.no_write:
        write_section("Cost report: a month of query_log", f"{machine_line()}\n\n{table}\n\n{notes}")
    return 0 if report_s <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
