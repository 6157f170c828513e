"""`python -m flows.X` runs on a Prefect server, never on a temporary one.

Without a server, Prefect starts a temporary one for the run: the run and its artifacts land in a database nobody
looks at, its global concurrency limits ("two backups never run at once") are not the scheduled runs' limits, and
its heartbeat ends with `sqlite3.OperationalError: database is locked`. So a command-line run goes to Prefect's
configured API (PREFECT_API_URL) or else to the local stack's server (`make up`: PREFECT_HOST:PREFECT_PORT), and
refuses to start when neither answers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from app.settings import get_settings

ON_THE_SERVER = (
    "The run goes to the Prefect server at PREFECT_API_URL, else to the one `make up` started "
    "(http://PREFECT_HOST:PREFECT_PORT, default http://127.0.0.1:4200): it shows in that server's UI (Runs, with "
    "its logs and artifacts) and shares its concurrency limits with the scheduled runs. Without a server the "
    "command refuses to start."
)


class NoPrefectServer(SystemExit):
    """Neither PREFECT_API_URL nor the local stack's server answers."""


def server_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    settings = get_settings()
    return PREFECT_API_URL.value() or f"http://{settings.prefect_host}:{settings.prefect_port}/api"


def answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def on_the_server() -> Iterator[str]:
    """Run the flows called inside on the configured or local Prefect server; yields its API URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = server_api_url()
    if not answers(api_url):
        raise NoPrefectServer(
            f"error: no Prefect server answers at {api_url}. Start the local stack (`make up`) or set "
            "PREFECT_API_URL to your server; a run without one would not show in any UI and would not share the "
            "scheduled runs' concurrency limits."
        )
    print(f"running on the Prefect server at {api_url.removesuffix('/api')} (UI: Runs)", file=sys.stderr)
    with temporary_settings({PREFECT_API_URL: api_url}):
        yield api_url


def run_cli(main: Callable[[], int]) -> int:
    """`if __name__ == "__main__": sys.exit(run_cli(main))`: --help works anywhere; a run needs the server."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        return main()
    with on_the_server():
        return main()
