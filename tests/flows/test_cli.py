"""`python -m flows.X`: its --help says where the run goes, it never runs on a temporary Prefect server, and an
operator's mistake (configuration, parameters) is one line on stderr and exit code 2 while a bug keeps its
traceback (flows/cli.py)."""

from __future__ import annotations

import importlib
import io
import logging
import os
import subprocess
import sys

import pytest

from app.settings import PROJECT_ROOT, SettingsError
from flows.cli import InvalidParameter, operator_errors_without_tracebacks, run_cli
from tests.conftest import free_port

FLOW_COMMANDS = sorted(p.stem for p in (PROJECT_ROOT / "flows").glob("*.py")
                       if "def main(" in p.read_text() and p.stem != "check_backup_freshness")


def test_every_flow_command_runs_through_the_server_helper():
    """check_backup_freshness runs no flow (it reads the catalog, from CI): it needs no server."""
    assert len(FLOW_COMMANDS) == 14
    for name in FLOW_COMMANDS:
        assert 'sys.exit(run_cli(main))' in (PROJECT_ROOT / "flows" / f"{name}.py").read_text(), name
    freshness = (PROJECT_ROOT / "flows" / "check_backup_freshness.py").read_text()
    assert "sys.exit(run_cli(main, needs_server=False))" in freshness


@pytest.mark.parametrize("name", FLOW_COMMANDS)
def test_help_says_how_the_run_reaches_the_ui(name, capsys):
    module = importlib.import_module(f"flows.{name}")
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert "goes to the Prefect server at PREFECT_API_URL, else to the one `make up` started" in help_text
    assert "shows in that server's UI" in help_text and "Without a server the command refuses to start" in help_text


def test_without_a_server_the_command_refuses_to_start_instead_of_running_on_a_temporary_one(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_PORT=str(port), PREFECT_HOME=str(tmp_path / "prefect-home"))
    result = subprocess.run([sys.executable, "-m", "flows.cost_report"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert f"error: no Prefect server answers at http://127.0.0.1:{port}/api. Start the local stack (`make up`)" \
        in one_error_line(result)
    assert not (tmp_path / "prefect-home").exists() or not list((tmp_path / "prefect-home").rglob("*.db"))


@pytest.fixture
def prefect_server_url(prefect_harness) -> str:
    """The test harness's server: a CLI's own checks run once a server answers."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DOCS_", "RENDER_", "SERVICE_BASE"))}
    return subprocess.run([sys.executable, "-m", f"flows.{module}", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={**environment, **env})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a mistake prints (after, at most, the line saying which server the run would go to)."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("running on the")]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.mark.parametrize("module", [*FLOW_COMMANDS, "check_backup_freshness"])
def test_a_bad_setting_is_one_line_and_exit_code_2(module):
    line = one_error_line(run_module(module, EMBEDDED_PG_PORT="1"))
    assert "EMBEDDED_PG_PORT" in line and "greater than or equal to 1024" in line


def test_deploy_docs_without_its_settings_names_them_in_one_line(prefect_server_url):
    line = one_error_line(run_module("deploy_docs", PREFECT_API_URL=prefect_server_url))
    assert line == ("error: deploy-docs needs DOCS_GIT_REMOTE, DOCS_PUBLIC_URL, DOCS_API_URL "
                    "(settings, or the flow's parameters)")


def test_deploy_backend_without_its_settings_or_an_image_says_so_in_one_line(prefect_server_url):
    assert "RENDER_SERVICE_ID, RENDER_API_KEY, SERVICE_BASE_URL" in one_error_line(
        run_module("deploy_backend", PREFECT_API_URL=prefect_server_url))
    configured = {"RENDER_SERVICE_ID": "srv-x", "RENDER_API_KEY": "rnd_x",  # pragma: allowlist secret
                  "SERVICE_BASE_URL": "http://127.0.0.1:9", "PREFECT_API_URL": prefect_server_url}
    assert "give image_digest (sha256:...) or commit_id" in one_error_line(run_module("deploy_backend", **configured))


def test_a_bug_keeps_its_traceback():
    def broken(argv: list[str] | None) -> int:
        return {}["a key nobody set"]

    with pytest.raises(KeyError):
        run_cli(broken, [])


def test_an_operator_error_inside_a_run_is_one_line(capsys):
    def mistaken(argv: list[str] | None) -> int:
        raise InvalidParameter("storage: 'S3' is not one of local, s3")

    assert run_cli(mistaken, []) == 2
    assert capsys.readouterr().err.endswith("(UI: Runs)\nerror: storage: 'S3' is not one of local, s3\n")


def heartbeat_of_a_cli_run() -> int | None:
    """The heartbeat interval a flow run started through run_cli runs with."""
    from prefect import flow
    from prefect.settings import get_current_settings

    @flow(name="cli-heartbeat-probe")
    def probe() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    seen: list[int | None] = []
    assert run_cli(lambda argv: seen.append(probe()) or 0, []) == 0
    return seen[0]


def test_a_cli_run_sends_heartbeats_only_when_asked(prefect_server_url, monkeypatch):
    """Prefect's default (180 s) makes every run wait up to 1 s for its heartbeat thread at its end."""
    from app.settings import get_settings

    assert heartbeat_of_a_cli_run() is None
    monkeypatch.setenv("CLI_FLOW_HEARTBEAT_S", "60")
    get_settings.cache_clear()
    try:
        assert heartbeat_of_a_cli_run() == 60
    finally:
        monkeypatch.delenv("CLI_FLOW_HEARTBEAT_S")
        get_settings.cache_clear()


def test_a_heartbeat_prefect_cannot_send_is_one_line():
    line = one_error_line(run_module("cost_report", CLI_FLOW_HEARTBEAT_S="10"))
    assert "CLI_FLOW_HEARTBEAT_S" in line and "0 (none) or at least 30" in line


def test_console_lines_about_an_operator_error_leave_out_the_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("prefect.flow_runs.cli-test")
    logger.addHandler(handler)
    try:
        with operator_errors_without_tracebacks():
            for error in (SettingsError("DOCS_API_URL is missing"), RuntimeError("a real bug")):
                try:
                    raise error
                except Exception:  # logged as Prefect's engine logs a failed run
                    logger.exception("Encountered exception during execution")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("Traceback") == 1 and "RuntimeError: a real bug" in text, "bugs keep their traceback"
    assert "SettingsError" not in text


def test_flows_package_imports_with_bad_settings():
    """A worker or CLI importing a flow with a broken environment gets the one-line error, not an import crash."""
    result = subprocess.run([sys.executable, "-c", "import flows.backup_database"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, env={**os.environ, "EMBEDDED_PG_PORT": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
