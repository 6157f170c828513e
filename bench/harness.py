"""A throwaway environment for a benchmark: its own Postgres cluster, data folder and Prefect server."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"


@dataclass
class BenchEnvironment:
    root: Path
    database_url: str
    cluster: Any = None  # the PostgresCluster (bench/load_with_restart.py restarts it)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def bench_environment(prefect: bool = True, durable: bool = True) -> Iterator[BenchEnvironment]:
    root = Path(tempfile.mkdtemp(prefix="textbook-ops-bench-"))
    root.chmod(0o755)
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["DATA_DIR"] = str(root / "data")

    from app.db import migrate
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

            with prefect_test_harness(server_startup_timeout=120):
                yield BenchEnvironment(root=root, database_url=url, cluster=cluster)
        else:
            yield BenchEnvironment(root=root, database_url=url, cluster=cluster)
    finally:
        cluster.stop(mode="fast")
        shutil.rmtree(root, ignore_errors=True)


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
