"""Every `python -m flows.X`: an operator's mistake (configuration, parameters) is one line on stderr and exit
code 2; a bug keeps its traceback (flows/cli.py)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT, SettingsError
from flows.cli import InvalidParameter, operator_errors_without_tracebacks, run_cli

FLOW_CLIS = sorted(p.stem for p in (PROJECT_ROOT / "flows").glob("*.py")
                   if "\ndef main(" in p.read_text() and p.stem != "cli")


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DOCS_", "RENDER_", "SERVICE_BASE"))}
    return subprocess.run([sys.executable, "-m", f"flows.{module}", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={**environment, **env})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_every_flow_module_has_a_cli():
    assert len(FLOW_CLIS) >= 12 and {"backup_database", "deploy_backend", "deploy_docs"} <= set(FLOW_CLIS)
    for module in FLOW_CLIS:
        assert "sys.exit(run_cli(main))" in (PROJECT_ROOT / "flows" / f"{module}.py").read_text(), module


@pytest.mark.parametrize("module", FLOW_CLIS)
def test_a_bad_setting_is_one_line_and_exit_code_2(module):
    line = one_error_line(run_module(module, EMBEDDED_PG_PORT="1"))
    assert "EMBEDDED_PG_PORT" in line and "greater than or equal to 1024" in line


def test_deploy_docs_without_its_settings_names_them_in_one_line():
    line = one_error_line(run_module("deploy_docs"))
    assert line == ("error: deploy-docs needs DOCS_GIT_REMOTE, DOCS_PUBLIC_URL, DOCS_API_URL "
                    "(settings, or the flow's parameters)")


def test_deploy_backend_without_its_settings_or_an_image_says_so_in_one_line():
    assert "RENDER_SERVICE_ID, RENDER_API_KEY, SERVICE_BASE_URL" in one_error_line(run_module("deploy_backend"))
    configured = {"RENDER_SERVICE_ID": "srv-x", "RENDER_API_KEY": "rnd_x",  # pragma: allowlist secret
                  "SERVICE_BASE_URL": "http://127.0.0.1:9"}
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
    assert capsys.readouterr().err == "error: storage: 'S3' is not one of local, s3\n"


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
    assert Path(PROJECT_ROOT / "flows" / "cli.py").exists()
