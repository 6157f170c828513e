"""What OpenTelemetry tracing costs: /v1/chat with TRACING_ENABLED on (exporting over OTLP/HTTP to a receiver on
loopback) and off, two services side by side, measured in alternating batches so machine noise weighs on both.

The receiver is oteltap's native OTLP/HTTP receiver (the one the tests use); the spans really leave the process.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import bench_environment, free_port, machine_line, markdown_table, write_section
from bench.service import run_service
from bench.service_load import percentile, run_load


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[int]]]:
    """An OTLP/HTTP receiver on loopback in a background event loop; yields its URL and a running span count."""
    from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

    port, received, stop = free_port(), [0], threading.Event()
    started = threading.Event()

    async def serve() -> None:
        async with OtelTapHttpProtobufReceiver(OtelTapHttpProtobufReceiverSettings(http_port=port)) as receiver:
            started.set()

            async def count() -> None:
                async for _ in receiver.stream_traces():
                    received[0] += 1

            counter = asyncio.ensure_future(count())
            while not stop.is_set():
                await asyncio.sleep(0.2)
            counter.cancel()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the OTLP receiver did not start")
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        stop.set()
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=40, help="requests per batch")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    arms = ("tracing on", "tracing off")
    latencies: dict[str, list[float]] = {arm: [] for arm in arms}
    with bench_environment() as env, otlp_receiver() as (endpoint, received):
        from app.settings import PROJECT_ROOT, get_settings
        from flows.ingest_textbook import ingest_textbook

        ingest_textbook(source=str(PROJECT_ROOT / "website"))
        for n in range(len(arms)):
            shutil.copytree(get_settings().resolved_index_dir, env.root / f"index-{n}")
        common = {"RATE_LIMIT_ANONYMOUS": "1000000", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        with run_service({**common, "INDEX_DIR": str(env.root / "index-0"), "TRACING_ENABLED": "true"},
                         env.root / "api-on.log") as on, \
                run_service({**common, "INDEX_DIR": str(env.root / "index-1"), "TRACING_ENABLED": "false"},
                            env.root / "api-off.log") as off:
            services = dict(zip(arms, (on, off), strict=True))
            for service in services.values():
                asyncio.run(run_load(service.base, "chat", 4, 40))  # warm-up
            for _ in range(args.rounds):
                for arm, service in services.items():
                    batch, errors, _ = asyncio.run(run_load(service.base, "chat", 1, args.requests))
                    assert errors == 0, f"{errors} errors with {arm}"
                    latencies[arm].extend(batch)
        spans = received[0]
    rows = [[f"/v1/chat, {arm}", len(values), statistics.median(values), percentile(values, 95)]
            for arm, values in latencies.items()]
    table = markdown_table(["service", "requests (c=1)", "p50 ms", "p95 ms"], rows)
    cost = (f"Tracing's cost: p50 {rows[0][2] - rows[1][2]:+.1f} ms, p95 {rows[0][3] - rows[1][3]:+.1f} ms "
            f"({rows[0][3] / rows[1][3]:.2f}x); {spans} spans reached the receiver. Off, nothing is installed.")
    print(table, cost, sep="\n\n")
    if not args.no_write:
        write_section("Tracing overhead: /v1/chat with OpenTelemetry on and off, side by side",
                      f"{machine_line()}\n\nTwo services (tracing on, exporting to an OTLP receiver on loopback / off), "
                      f"the site's textbook, one Postgres; {args.rounds} alternating rounds of {args.requests} requests "
                      f"per arm at concurrency 1.\n\n"
                      f"{table}\n\n{cost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
