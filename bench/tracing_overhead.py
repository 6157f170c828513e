"""What OpenTelemetry tracing costs: /v1/chat with TRACING_ENABLED on (exporting over OTLP/HTTP to a receiver on
loopback) and off, two services side by side, measured in alternating batches so machine noise weighs on both.

The receiver is oteltap's native OTLP/HTTP receiver (the one the tests use); the spans really leave the process.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import bench_environment, latencies_at, markdown_table, report_section, side_by_side, side_by_side_arguments
from bench.service_load import percentile
from tests.support.ports import free_port


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
    args = side_by_side_arguments(__doc__.split("\n")[0], argv)
    with bench_environment() as env, otlp_receiver() as (endpoint, received):
        batches = side_by_side(env, {"tracing on": {"TRACING_ENABLED": "true"}, "tracing off": {"TRACING_ENABLED": "false"}},
                               common={"RATE_LIMIT_ANONYMOUS": "1000000", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
                               rounds=args.rounds, requests=args.requests)
        spans = received[0]
    rows = [[f"/v1/chat, {arm}", len(values), statistics.median(values), percentile(values, 95)]
            for arm, values in ((arm, latencies_at(batches, arm)) for arm in batches)]
    table = markdown_table(["service", "requests (c=1)", "p50 ms", "p95 ms"], rows)
    cost = (f"Tracing's cost: p50 {rows[0][2] - rows[1][2]:+.1f} ms, p95 {rows[0][3] - rows[1][3]:+.1f} ms "
            f"({rows[0][3] / rows[1][3]:.2f}x); {spans} spans reached the receiver. Off, nothing is installed.")
    report_section("Tracing overhead: /v1/chat with OpenTelemetry on and off, side by side",
                   f"Two services (tracing on, exporting to an OTLP receiver on loopback / off), the site's textbook, "
                   f"one Postgres; {args.rounds} alternating rounds of {args.requests} requests per arm at concurrency 1.",
                   table, cost, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
