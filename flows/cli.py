"""How every `python -m flows.X` runs and ends.

On a Prefect server, never a temporary one. Without a server, Prefect starts a temporary one for the run: the run
and its artifacts land in a database nobody looks at, its global concurrency limits ("two backups never run at
once") are not the scheduled runs' limits, and its heartbeat ends with `sqlite3.OperationalError: database is
locked`. So a command-line run goes to Prefect's configured API (PREFECT_API_URL) or else to the local stack's
server (`make up`: PREFECT_HOST:PREFECT_PORT), and refuses to start when neither answers.

An operator's mistake is one line and exit code 2, a bug a traceback. A mistake is a setting the environment
lacks or holds wrong (SettingsError, no Prefect server among them) or a parameter that cannot work
(InvalidParameter, or Prefect's own parameter validation). Flows check what they can before they start, so such a
run prints its one line and nothing else; a mistake found inside a run is printed the same way, and Prefect's
console lines about that run leave out the traceback (the run's logs on the server keep it).

A command-line run sends no flow-run heartbeats unless CLI_FLOW_HEARTBEAT_S asks for them. Heartbeats let the server
find runs whose process died unseen (a worker's scheduled runs, which keep Prefect's default of 180 s); a
command-line run has its terminal watching it. And they are not free: Prefect 3.9.1's heartbeat thread sleeps in
1 s steps and every run waits for it to wake before it ends, so each heartbeating run ends up to 1 s late
(bench/RESULTS.md: an empty flow run takes 1.08 s with heartbeats, 0.11 s without).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from prefect.exceptions import ParameterTypeError, SignatureMismatchError
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from app.settings import SettingsError, get_settings

USAGE_EXIT_CODE = 2
ON_THE_SERVER = (
    "The run goes to the Prefect server at PREFECT_API_URL, else to the one `make up` started "
    "(http://PREFECT_HOST:PREFECT_PORT, default http://127.0.0.1:4200): it shows in that server's UI (Runs, with "
    "its logs and artifacts) and shares its concurrency limits with the scheduled runs. Without a server the "
    "command refuses to start. A missing or invalid setting or parameter is one line `error: ...` and exit code 2."
)


def flow_parser(module: str, description: str | None, *, on_the_server: bool = True) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`: the first line of `description` (a flow module's docstring), and where
    the run goes (ON_THE_SERVER) for a flow that runs on the Prefect server."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=(description or "").split("\n")[0],
                                   epilog=ON_THE_SERVER if on_the_server else None)


class InvalidParameter(ValueError):
    """A flow parameter that cannot work; the message names the parameter and what it accepts."""


class NoPrefectServer(SettingsError):
    """Neither PREFECT_API_URL nor the local stack's server answers."""


OPERATOR_ERRORS: tuple[type[BaseException], ...] = (SettingsError, InvalidParameter, ParameterTypeError,
                                                    SignatureMismatchError)


def server_api_url() -> str:
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
    api_url = server_api_url()
    if not answers(api_url):
        raise NoPrefectServer(
            f"no Prefect server answers at {api_url}. Start the local stack (`make up`) or set "
            "PREFECT_API_URL to your server; a run without one would not show in any UI and would not share the "
            "scheduled runs' concurrency limits."
        )
    print(f"running on the Prefect server at {api_url.removesuffix('/api')} (UI: Runs)", file=sys.stderr)
    with temporary_settings({PREFECT_API_URL: api_url}), command_line_heartbeats():
        yield api_url


@contextmanager
def command_line_heartbeats() -> Iterator[None]:
    """Flow runs called inside send heartbeats only if CLI_FLOW_HEARTBEAT_S asks (module docstring)."""
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: get_settings().cli_flow_heartbeat_s or None}):
        yield


class _DropOperatorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], OPERATOR_ERRORS):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def operator_errors_without_tracebacks() -> Iterator[None]:
    """While a CLI run lasts, the console handlers print an operator's mistake without its traceback."""
    handlers = {h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)}
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("prefect")]:
        handlers.update(h for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler))
    quiet = _DropOperatorTracebacks()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None, *,
            needs_server: bool = True) -> int:
    """`if __name__ == "__main__": sys.exit(run_cli(main))`: --help works anywhere; a run needs the server
    (`needs_server=False` for a command that runs no flow); operators' mistakes become `error: ...` on stderr and
    exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        get_settings()  # a bad environment is reported before anything starts
        if {"-h", "--help"} & set(args) or not needs_server:
            return main(args)
        with on_the_server(), operator_errors_without_tracebacks():
            return main(args)
    except OPERATOR_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE
