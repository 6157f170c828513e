"""Runbooks name only real things: every alert's runbook_url resolves to a file and heading, every
`prefect deployment run` names a deployment of prefect.yaml, every `make` target and `python -m` command exists."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.settings import PROJECT_ROOT
from tests.monitoring.test_alert_rules import alerting_rules

RUNBOOKS = PROJECT_ROOT / "runbooks"
PLAYBOOKS = ["high-error-rate", "high-latency", "database-issues", "service-down", "security-incident", "data-loss",
             "performance-degradation", "backup-failure", "restore-drill-failure", "secret-rotation-failure",
             "cost-overrun", "flow-run-crashed"]
PLAYBOOK_SECTIONS = ["Symptoms", "Alerts that lead here", "Diagnosis", "Mitigation", "Verify recovery",
                     "When to escalate"]


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # a '#' comment in a code block is no heading
    return [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)]


def code_in(path: Path) -> str:
    """Fenced blocks and inline code spans: where commands are written."""
    text = path.read_text()
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(fenced + inline)


def all_runbooks() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


def test_every_alert_links_an_existing_runbook_heading():
    for rule in alerting_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert anchor, f"{rule['alert']}: {url} names no heading"
        file = PROJECT_ROOT / path
        assert file.is_file(), f"{rule['alert']}: {path} does not exist"
        assert anchor in {slug(h) for h in headings(file)}, f"{rule['alert']}: no heading #{anchor} in {path}"


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_each_playbook_has_the_sections_an_on_call_engineer_needs(name: str):
    path = RUNBOOKS / f"{name}.md"
    assert path.is_file()
    found = headings(path)
    missing = [s for s in PLAYBOOK_SECTIONS if s not in found]
    assert not missing, f"{name}.md lacks {missing}"
    assert "```" in path.read_text(), f"{name}.md shows no command"


def test_the_on_call_runbook_covers_severity_escalation_command_and_templates():
    found = {slug(h) for h in headings(RUNBOOKS / "on-call.md")}
    assert {"severity-levels", "escalation", "incident-commander", "status-page-and-user-communication-templates",
            "post-incident-review-template"} <= found


def test_every_deployment_run_names_a_deployment_of_prefect_yaml():
    deployments = {d["name"] for d in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]}
    named = 0
    for path in all_runbooks():
        for flow_name, deployment in re.findall(r"prefect deployment run '([^'/]+)/([^']+)'", path.read_text()):
            named += 1
            assert deployment in deployments, f"{path.name}: no deployment {deployment!r} in prefect.yaml"
            assert flow_name == deployment, f"{path.name}: flows and deployments share names ({flow_name}/{deployment})"
    assert named > 10


def test_every_make_target_named_exists():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    for path in all_runbooks():
        for target in re.findall(r"(?:^|[\s;&(])make ([a-z][a-z0-9-]*)", code_in(path), re.M):
            assert target in targets, f"{path.name}: `make {target}` is not a Makefile target"


def cli_commands(module: str) -> set[str]:
    """The subcommands a `python -m` CLI offers, read from its --help."""
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    match = re.search(r"\{([a-z,-]+)\}", result.stdout)
    return set(match.group(1).split(",")) if match else set()


def test_every_python_module_named_exists_with_its_subcommand():
    uses: dict[str, set[str]] = {}
    for path in all_runbooks():
        for module, argument in re.findall(r"python -m ([\w.]+)(?:[ \t]+([a-z][\w-]*))?", code_in(path)):
            assert importlib.util.find_spec(module) is not None, f"{path.name}: no module {module}"
            uses.setdefault(module, set()).add(argument)
    for module in ("app", "devenv.monitoring"):
        offered = cli_commands(module)
        named = {a for a in uses.get(module, set()) if a}
        assert named <= offered, f"`python -m {module}` has no {named - offered}"
