"""What the Postgres rate limiter costs: two services side by side, limits on and off, measured in alternation.

Both serve the site's textbook from their own copy of the index and share one Postgres; batches alternate between
them, so whatever else the machine is doing weighs on both alike. /v1/chat at concurrency 1 (p50, p95) and 8
(requests/s); the difference is the limiter's one `INSERT ... ON CONFLICT ... RETURNING` a request.
"""

from __future__ import annotations

import statistics
import sys

from bench.harness import bench_environment, latencies_at, markdown_table, report_section, side_by_side, side_by_side_arguments
from bench.service_load import percentile


def main(argv: list[str] | None = None) -> int:
    args = side_by_side_arguments(__doc__.split("\n")[0], argv)
    with bench_environment() as env:
        batches = side_by_side(env, {"on": {"RATE_LIMIT_ENABLED": "true"}, "off": {"RATE_LIMIT_ENABLED": "false"}},
                               common={"RATE_LIMIT_ANONYMOUS": "1000000"}, rounds=args.rounds, requests=args.requests,
                               concurrencies=(1, 8))
    rows = []
    for arm in ("on", "off"):
        single = latencies_at(batches, arm)
        rps = statistics.median(r for _, r in batches[arm][8])
        rows.append([f"limits {arm}", len(single), statistics.median(single), percentile(single, 95), rps])
    table = markdown_table(["/v1/chat", "requests at c=1", "p50 ms (c=1)", "p95 ms (c=1)", "requests/s (c=8, median)"],
                           rows)
    cost = (f"The limiter's cost: p50 {rows[0][2] - rows[1][2]:+.1f} ms, p95 {rows[0][3] - rows[1][3]:+.1f} ms at "
            f"concurrency 1; {rows[0][4] - rows[1][4]:+.1f} requests/s at concurrency 8.")
    report_section("Rate limiter overhead: /v1/chat with limits on and off, side by side",
                   f"Two uvicorn workers (limits on / off), the site's textbook, one Postgres; {args.rounds} alternating "
                   f"rounds of {args.requests} requests per arm and concurrency.", table, cost, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
