"""Run every benchmark and update bench/RESULTS.md (`make bench`)."""

from __future__ import annotations

import sys

from bench import (
    backup_restore,
    cost_report,
    covered_quality,
    ingest_rust_book,
    load_with_restart,
    rate_limit_overhead,
    retrieval_quality,
    runtime_size,
    service_load,
    site_paint,
)


def main() -> int:
    failures = 0
    runs = (("ingest", ingest_rust_book, []), ("retrieval", retrieval_quality, ["--grid"]),
            ("covered", covered_quality, []), ("load", service_load, []),
            ("rate limits", rate_limit_overhead, []), ("load with a Postgres crash", load_with_restart, []),
            ("backups", backup_restore, []), ("costs", cost_report, []), ("runtime size", runtime_size, []),
            ("site paint", site_paint, []))
    for name, bench, args in runs:
        print(f"\n=== {name} ===", flush=True)
        failures += bench.main(args) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
