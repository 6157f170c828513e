"""A throwaway environment for a benchmark: its own Postgres cluster, data folder and Prefect server."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.rag.vector_index.sparse_copy import copy_index_tree
from tests.support.ports import free_port
from tests.support.service_process import run_service

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"


@dataclass
class BenchEnvironment:
    root: Path
    database_url: str
    cluster: Any = None  # the PostgresCluster (bench/load_with_restart.py restarts it)


@contextmanager
def bench_environment(prefect: bool = True, durable: bool = True) -> Iterator[BenchEnvironment]:
    root = Path(tempfile.mkdtemp(prefix="textbook-ops-bench-"))
    root.chmod(0o755)
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["DATA_DIR"] = str(root / "data")

    from app.core.db import migrate
    from app.settings import get_settings
    from devenv.postgres import PostgresCluster

    cluster = PostgresCluster(root=root / "postgres", port=free_port(), fast_unsafe=not durable)
    cluster.initialize()
    cluster.start()
    cluster.ensure_database(dbname="textbook", app_user="textbook_app", app_password="bench-password")
    cluster.ensure_ops_role(ops_user="textbook_ops", ops_password="bench-ops-password", member_of="textbook_app")
    url = f"postgresql+psycopg://textbook_app:bench-password@127.0.0.1:{cluster.port}/textbook"
    migrate(url)
    os.environ["DATABASE_URL"] = url
    os.environ["MAINTENANCE_DATABASE_URL"] = (
        f"postgresql+psycopg://textbook_ops:bench-ops-password@127.0.0.1:{cluster.port}/postgres")
    os.environ["BACKUP_DIR"] = str(root / "backups")
    get_settings.cache_clear()
    try:
        if prefect:
            from prefect.testing.utilities import prefect_test_harness

            from flows.cli import command_line_heartbeats

            # Flows called here run as `python -m flows.X` runs them: without heartbeats (flows/cli.py).
            with prefect_test_harness(server_startup_timeout=120), command_line_heartbeats():
                yield BenchEnvironment(root=root, database_url=url, cluster=cluster)
        else:
            yield BenchEnvironment(root=root, database_url=url, cluster=cluster)
    finally:
        cluster.stop(mode="fast")
        shutil.rmtree(root, ignore_errors=True)


# The heartbeat interval of a flow run a worker starts (Prefect's default); command-line runs send none.
WORKER_HEARTBEAT_S = 180
FIXED_COST_ROWS = ("an empty Prefect flow run, as `python -m flows.X` runs it (no heartbeats)",
                   f"an empty Prefect flow run with heartbeats, as a worker runs it (every {WORKER_HEARTBEAT_S} s)")


def empty_flow(heartbeat_s: int | None = None) -> None:
    """A flow that does nothing: what any Prefect flow run costs here (run creation, states, teardown), with or
    without flow-run heartbeats (Prefect 3.9.1's heartbeat thread sleeps in 1 s steps and a run waits for it to wake
    at its end)."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: heartbeat_s}):
        flow(name="empty-benchmark-flow")(lambda: None)()


def empty_flow_seconds(repeat: int = 3) -> tuple[float, float]:
    """Medians of an empty flow run's wall time: without heartbeats, and with a worker's."""
    import statistics
    import time

    def once(heartbeat_s: int | None) -> float:
        started = time.perf_counter()
        empty_flow(heartbeat_s)
        return time.perf_counter() - started

    return (statistics.median(once(None) for _ in range(repeat)),
            statistics.median(once(WORKER_HEARTBEAT_S) for _ in range(repeat)))


def machine_line() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), {memory} GiB RAM, "
            f"Python {platform.python_version()}")


def load_note(load_before: float) -> str:
    """How busy the machine was: the 1-minute load average before and after a run (the cores are shared)."""
    return (f"The machine's 1-minute load average was {load_before:.1f} before the run and {os.getloadavg()[0]:.1f} "
            f"after it, on {os.cpu_count()} cores: absolute numbers vary with it, same-run ratios are what count.")


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(title: str, body: str) -> None:
    """Replace (or append) one `## title` section of bench/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by `make bench`.\n"
    marker = f"\n## {title}\n"
    section = f"{marker}\n{body.strip()}\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    RESULTS.write_text(text)


def report_section(title: str, *parts: str, write: bool = True) -> None:
    """Print a benchmark's tables and notes; unless told not to, put them in RESULTS.md under `title`."""
    print(*parts, sep="\n\n")
    if write:
        write_section(title, "\n\n".join([machine_line(), *parts]))


Batches = dict[str, dict[int, list[tuple[list[float], float]]]]  # arm -> concurrency -> (latencies ms, requests/s)


def side_by_side_arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=40, help="requests per batch")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    return parser.parse_args(argv)


def side_by_side(env: BenchEnvironment, arms: dict[str, dict[str, str]], *, common: dict[str, str], rounds: int,
                 requests: int, concurrencies: tuple[int, ...] = (1,)) -> Batches:
    """Two (or more) services on the site's textbook at once, one per arm (its own copy of the index, `common` and
    the arm's environment), measured in alternating batches of /v1/chat so that whatever else the machine does
    weighs on every arm alike. Errors fail the run."""
    from app.settings import PROJECT_ROOT, get_settings
    from bench.service_load import run_load  # bench/service_load.py imports this module
    from flows.ingest_textbook import ingest_textbook

    ingest_textbook(source=str(PROJECT_ROOT / "website"))
    results: Batches = {arm: {concurrency: [] for concurrency in concurrencies} for arm in arms}
    with ExitStack() as stack:
        services = {}
        for n, (arm, variables) in enumerate(arms.items()):
            copy_index_tree(get_settings().resolved_index_dir, env.root / f"index-{n}")
            services[arm] = stack.enter_context(run_service(
                {**common, **variables, "INDEX_DIR": str(env.root / f"index-{n}")}, env.root / f"api-{n}.log"))
        for service in services.values():
            asyncio.run(run_load(service.base, "chat", 4, 40))  # warm-up
        for _ in range(rounds):
            for concurrency in concurrencies:
                for arm, service in services.items():
                    latencies, errors, wall = asyncio.run(run_load(service.base, "chat", concurrency, requests))
                    assert errors == 0, f"{errors} errors with {arm}"
                    results[arm][concurrency].append((latencies, len(latencies) / wall))
    return results


def latencies_at(batches: Batches, arm: str, concurrency: int = 1) -> list[float]:
    return [value for latencies, _ in batches[arm][concurrency] for value in latencies]
