"""`python -m flows.X`: its --help says where the run goes, and it never runs on a temporary Prefect server."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from app.settings import PROJECT_ROOT
from tests.conftest import free_port

FLOW_COMMANDS = sorted(p.stem for p in (PROJECT_ROOT / "flows").glob("*.py")
                       if "def main(" in p.read_text() and p.stem != "check_backup_freshness")


def test_every_flow_command_runs_through_the_server_helper():
    """check_backup_freshness runs no flow (it reads the catalog, from CI): it needs no server."""
    assert len(FLOW_COMMANDS) == 11
    for name in FLOW_COMMANDS:
        assert 'sys.exit(run_cli(main))' in (PROJECT_ROOT / "flows" / f"{name}.py").read_text(), name


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
    assert result.returncode == 1, result.stderr
    assert f"error: no Prefect server answers at http://127.0.0.1:{port}/api. Start the local stack (`make up`)" \
        in result.stderr
    assert not (tmp_path / "prefect-home").exists() or not list((tmp_path / "prefect-home").rglob("*.db"))
