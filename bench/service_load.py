"""The query service under load, with the Rust book indexed, extractive answers (loopback only).

For /v1/search and /v1/chat at concurrency 1, 8 and 32: p50 / p95 / p99 latency, requests/s, errors,
and where the server's time went (query embedding, vector search, Postgres writes) from its own
metrics. Baseline in the same run: GET /health at the same concurrency (the HTTP stack's floor).
Targets: /v1/chat p95 <= 80 ms at concurrency 1, >= 40 requests/s at concurrency 8, zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import time

import httpx

from bench.harness import bench_environment, machine_line, markdown_table, write_section
from bench.service import run_service

QUESTIONS = [
    "How do I declare a mutable variable?", "What is ownership in Rust?", "How does borrowing work with references?",
    "What is the difference between String and &str?", "How do I handle errors with Result?",
    "What does the ? operator do?", "How do I create a vector and add elements?", "What is a HashMap used for?",
    "How do traits define shared behavior?", "What are lifetimes and why are they needed?",
    "How do closures capture their environment?", "What is an iterator adapter like map?",
    "How do I write tests in Rust?", "What is Box<T> used for?", "How does Rc<T> enable multiple ownership?",
    "What is RefCell and interior mutability?", "How do I spawn a thread?", "How do channels send messages between threads?",
    "What is Mutex<T> and how do I share it with Arc?", "What are the Send and Sync traits?",
    "How do match expressions work with enums?", "What is Option and why is there no null?",
    "How do I define a struct with methods?", "What is the difference between a crate and a package?",
    "How do modules control privacy?", "How do I use the use keyword to bring paths into scope?",
    "What is a slice?", "How does Cargo build and run a project?", "What is pattern matching with if let?",
    "How do generics reduce duplication?", "What are macros and how do they differ from functions?",
    "What is unsafe Rust for?", "How do I read command line arguments?", "How do I read a file into a string?",
    "What is the Drop trait?", "How do I implement Deref?", "What are trait objects and dyn?",
    "How does async and await work?", "What is a panic and when should I use panic!?",
    "How do I publish a crate to crates.io?",
]
METRICS = {
    "embed": "rag_query_embedding_latency_ms_sum",
    "search": "rag_vector_search_latency_ms_sum",
    "postgres": "rag_db_write_latency_ms_sum",
}


def scrape(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for key, name in METRICS.items():
        values[key] = sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    for endpoint in ("chat", "search"):
        pattern = rf'^rag_query_duration_seconds_sum{{endpoint="{endpoint}",status="[^"]+"}} (\S+)$'
        values[f"total_{endpoint}"] = 1000 * sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))
    return values


async def run_load(base: str, endpoint: str, concurrency: int, requests: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            question = QUESTIONS[i % len(QUESTIONS)]
            started = time.perf_counter()
            if endpoint == "health":
                response = await client.get("/health")
            elif endpoint == "search":
                response = await client.post("/v1/search", json={"query": question, "k": 5})
            else:
                response = await client.post("/v1/chat", json={"question": question})
            latencies.append((time.perf_counter() - started) * 1000)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, errors, wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per (endpoint, concurrency)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    rows: list[list[object]] = []
    shares: list[list[object]] = []
    with bench_environment() as env:
        from app.settings import get_settings
        from flows.ingest_textbook import ingest_textbook

        corpus = get_settings().shared_dir / "corpora" / "rust-book"
        if not corpus.is_dir():
            print(f"error: {corpus} not found (set SHARED_DIR)", file=sys.stderr)
            return 2
        tree = env.root / "rust-book"
        shutil.copytree(corpus, tree)
        ingest_textbook(source=str(tree))
        # Rate limits on (their Postgres round trip is part of what is measured), with a budget the load stays under.
        server_env = {"COLLECTION": "rust-book", "RATE_LIMIT_ANONYMOUS": "1000000"}
        with run_service(server_env, env.root / "api.log") as service:  # raises with the log's tail if it won't start
            base = service.base
            asyncio.run(run_load(base, "chat", 4, 40))  # warm-up
            for endpoint in ("health", "search", "chat"):
                for concurrency in (1, 8, 32):
                    before = scrape(base)
                    latencies, errors, wall = asyncio.run(run_load(base, endpoint, concurrency, args.requests))
                    after = scrape(base)
                    rows.append([
                        "GET /health (baseline)" if endpoint == "health" else f"POST /v1/{endpoint}", concurrency,
                        len(latencies), statistics.median(latencies), percentile(latencies, 95),
                        percentile(latencies, 99), len(latencies) / wall, errors,
                    ])
                    if endpoint != "health":
                        total = after[f"total_{endpoint}"] - before[f"total_{endpoint}"]
                        parts = {k: after[k] - before[k] for k in METRICS}
                        shares.append([f"/v1/{endpoint}", concurrency] + [
                            f"{100 * parts[k] / total:.0f}%" if total else "-" for k in METRICS
                        ] + [f"{100 * (total - sum(parts.values())) / total:.0f}%" if total else "-"])
    table = markdown_table(["endpoint", "concurrency", "requests", "p50 ms", "p95 ms", "p99 ms", "requests/s", "errors"], rows)
    share_table = markdown_table(["endpoint", "concurrency", "query embedding", "vector search", "Postgres writes",
                                  "rest (answer, HTTP, queueing)"], shares)
    chat1 = next(r for r in rows if r[0] == "POST /v1/chat" and r[1] == 1)
    chat8 = next(r for r in rows if r[0] == "POST /v1/chat" and r[1] == 8)
    errors = sum(int(r[7]) for r in rows)
    verdict = (f"/v1/chat p95 at concurrency 1: {chat1[4]:.1f} ms (target <= 80: {'met' if chat1[4] <= 80 else 'NOT met'}); "
               f"requests/s at concurrency 8: {chat8[6]:.1f} (target >= 40: {'met' if chat8[6] >= 40 else 'NOT met'}); "
               f"errors: {errors} (target 0: {'met' if errors == 0 else 'NOT met'}).")
    print(table, share_table, verdict, sep="\n\n")
    if not args.no_write:
        write_section("Service under load: the Rust book, extractive answers",
                      f"{machine_line()}\n\nOne uvicorn worker (embedded Qdrant Edge), {args.requests} requests per row, "
                      f"load generator on the same 2 cores.\n\n{table}\n\nWhere the server's time went (sums of its "
                      f"own histograms over each run):\n\n{share_table}\n\n{verdict}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
