"""What the Postgres rate limiter costs: two services side by side, limits on and off, measured in alternation.

Both serve the site's textbook from their own copy of the index and share one Postgres; batches alternate between
them, so whatever else the machine is doing weighs on both alike. /v1/chat at concurrency 1 (p50, p95) and 8
(requests/s); the difference is the limiter's one `INSERT ... ON CONFLICT ... RETURNING` a request.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys

from bench.harness import bench_environment, machine_line, markdown_table, write_section
from bench.service import run_service
from bench.service_load import percentile, run_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=40, help="requests per batch")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    results: dict[str, dict[int, list[tuple[list[float], float]]]] = {"on": {1: [], 8: []}, "off": {1: [], 8: []}}
    with bench_environment() as env:
        from app.settings import PROJECT_ROOT, get_settings
        from flows.ingest_textbook import ingest_textbook

        ingest_textbook(source=str(PROJECT_ROOT / "website"))
        for arm in ("on", "off"):
            shutil.copytree(get_settings().resolved_index_dir, env.root / f"index-{arm}")
        common = {"RATE_LIMIT_ANONYMOUS": "1000000"}
        with run_service({**common, "INDEX_DIR": str(env.root / "index-on"), "RATE_LIMIT_ENABLED": "true"},
                         env.root / "api-on.log") as on, \
                run_service({**common, "INDEX_DIR": str(env.root / "index-off"), "RATE_LIMIT_ENABLED": "false"},
                            env.root / "api-off.log") as off:
            for service in (on, off):
                asyncio.run(run_load(service.base, "chat", 4, 40))  # warm-up
            for _ in range(args.rounds):
                for concurrency in (1, 8):
                    for arm, service in (("on", on), ("off", off)):
                        latencies, errors, wall = asyncio.run(run_load(service.base, "chat", concurrency, args.requests))
                        assert errors == 0, f"{errors} errors with limits {arm}"
                        results[arm][concurrency].append((latencies, len(latencies) / wall))
    rows = []
    for arm in ("on", "off"):
        single = [v for latencies, _ in results[arm][1] for v in latencies]
        rps = statistics.median(r for _, r in results[arm][8])
        rows.append([f"limits {arm}", len(single), statistics.median(single), percentile(single, 95), rps])
    table = markdown_table(["/v1/chat", "requests at c=1", "p50 ms (c=1)", "p95 ms (c=1)", "requests/s (c=8, median)"],
                           rows)
    cost = (f"The limiter's cost: p50 {rows[0][2] - rows[1][2]:+.1f} ms, p95 {rows[0][3] - rows[1][3]:+.1f} ms at "
            f"concurrency 1; {rows[0][4] - rows[1][4]:+.1f} requests/s at concurrency 8.")
    print(table, cost, sep="\n\n")
    if not args.no_write:
        write_section("Rate limiter overhead: /v1/chat with limits on and off, side by side",
                      f"{machine_line()}\n\nTwo uvicorn workers (limits on / off), the site's textbook, one Postgres; "
                      f"{args.rounds} alternating rounds of {args.requests} requests per arm and concurrency.\n\n"
                      f"{table}\n\n{cost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
