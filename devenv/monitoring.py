"""Prometheus, Alertmanager and the Pushgateway on loopback, with the project's configuration.

`make monitoring-up` / `make monitoring-down` (`python -m devenv.monitoring up|down|status`) run them for a
person on fixed ports (Prometheus 9090, Alertmanager 9093, Pushgateway 9091), scraping the API of `make up`
on API_HOST:API_PORT; state, rendered configuration, logs and pid files live under `.data/monitoring`.
The end-to-end tests run the same class on free ports with short intervals and their own receivers.

The configuration in deployments/ is rendered, never edited: targets and ports are replaced, and the rule
files are copied as they are (tests may shorten `for:` in their copy; promtool's unit tests check the
shipped files).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from app.settings import PROJECT_ROOT, get_settings
from devenv.processes import running, stop_process

DEPLOYMENTS = PROJECT_ROOT / "deployments"
PROMETHEUS_CONFIG = DEPLOYMENTS / "prometheus" / "prometheus.yml"
RULES_DIR = DEPLOYMENTS / "prometheus" / "rules"
ALERTMANAGER_CONFIG = DEPLOYMENTS / "alertmanager" / "alertmanager.yml"
BINARIES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager", "pushgateway": "prometheus-pushgateway"}


class MonitoringStackError(RuntimeError):
    """A monitoring binary is missing or a server did not become ready."""


@dataclass
class MonitoringStack:
    root: Path
    api_target: str = "127.0.0.1:8000"
    host: str = "127.0.0.1"
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    pushgateway_port: int = 9091
    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    # Tests only: change each rule (e.g. shorten `for:`) in the rendered copy, or replace the Alertmanager config.
    rule_transform: Callable[[dict], dict] | None = None
    alertmanager_config: dict | None = None
    extra_flags: dict[str, list[str]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        port = {"prometheus": self.prometheus_port, "alertmanager": self.alertmanager_port,
                "pushgateway": self.pushgateway_port}[name]
        return f"http://{self.host}:{port}"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    def _pid_file(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def render(self) -> Path:
        """Write prometheus.yml, the rules and alertmanager.yml for this stack; return prometheus.yml's path."""
        shutil.rmtree(self.config_dir, ignore_errors=True)
        (self.config_dir / "rules").mkdir(parents=True)
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        if self.scrape_interval:
            config["global"]["scrape_interval"] = self.scrape_interval
        if self.evaluation_interval:
            config["global"]["evaluation_interval"] = self.evaluation_interval
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"{self.host}:{self.alertmanager_port}"]}]}]
        targets = {"textbook-api": self.api_target, "pushgateway": f"{self.host}:{self.pushgateway_port}"}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        (self.config_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        for rule_file in sorted(RULES_DIR.glob("*.yml")):
            rules = yaml.safe_load(rule_file.read_text())
            if self.rule_transform:
                for group in rules["groups"]:
                    group["rules"] = [self.rule_transform(rule) for rule in group["rules"]]
            (self.config_dir / "rules" / rule_file.name).write_text(yaml.safe_dump(rules, sort_keys=False))
        alertmanager = self.alertmanager_config or yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        (self.config_dir / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager, sort_keys=False))
        return self.config_dir / "prometheus.yml"

    def _binary(self, name: str) -> str:
        path = shutil.which(BINARIES[name])
        if path is None:
            raise MonitoringStackError(f"{BINARIES[name]} is missing: run `bash devenv/install-system-packages.sh`")
        return path

    def _commands(self) -> dict[str, list[str]]:
        return {
            "pushgateway": [self._binary("pushgateway"), f"--web.listen-address={self.host}:{self.pushgateway_port}",
                            f"--persistence.file={self.root / 'pushgateway.data'}"],
            "alertmanager": [
                self._binary("alertmanager"), f"--config.file={self.config_dir / 'alertmanager.yml'}",
                f"--storage.path={self.root / 'alertmanager'}", f"--web.listen-address={self.host}:{self.alertmanager_port}",
                "--cluster.listen-address=",  # a single instance: no gossip port
            ],
            "prometheus": [
                self._binary("prometheus"), f"--config.file={self.config_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'prometheus'}", f"--web.listen-address={self.host}:{self.prometheus_port}",
                "--storage.tsdb.retention.time=30d", "--web.enable-lifecycle",
            ],
        }

    def ready(self, name: str) -> bool:
        try:
            return httpx.get(self.url(name) + "/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 30) -> None:
        self.render()
        for name, command in self._commands().items():  # receivers before senders
            if running(self._pid_file(name)) and self.ready(name):
                if name != "pushgateway":  # already up: pick up the freshly rendered configuration
                    httpx.post(f"{self.url(name)}/-/reload", timeout=10)
                continue
            self._pid_file(name).parent.mkdir(parents=True, exist_ok=True)
            self._log(name).parent.mkdir(parents=True, exist_ok=True)
            with open(self._log(name), "ab") as log:
                process = subprocess.Popen(command + self.extra_flags.get(name, []), cwd=self.root, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            self._pid_file(name).write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        for name in ("pushgateway", "alertmanager", "prometheus"):
            while not self.ready(name):
                if not running(self._pid_file(name)):
                    raise MonitoringStackError(f"{name} exited: {self._tail(name)}")
                if time.monotonic() > deadline:
                    raise MonitoringStackError(f"{name} did not become ready in {timeout_s:.0f} s: {self._tail(name)}")
                time.sleep(0.2)

    def _tail(self, name: str) -> str:
        try:
            return self._log(name).read_text()[-1500:]
        except OSError:
            return "(no log)"

    def status(self) -> dict[str, bool]:
        return {name: running(self._pid_file(name)) and self.ready(name) for name in BINARIES}

    def stop(self) -> None:
        for name in ("prometheus", "alertmanager", "pushgateway"):
            stop_process(self._pid_file(name), signals=1, timeout_s=15)


def development_stack() -> MonitoringStack:
    settings = get_settings()
    return MonitoringStack(root=settings.data_dir / "monitoring", api_target=f"{settings.api_host}:{settings.api_port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.monitoring",
                                     description="Prometheus (9090), Alertmanager (9093), Pushgateway (9091) on loopback")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    stack = development_stack()
    if args.command == "up":
        try:
            stack.start()
        except MonitoringStackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        rules = sum(len(re.findall(r"^\s*- alert:", p.read_text(), re.M)) for p in RULES_DIR.glob("*.yml"))
        print(f"""==> monitoring is up ({rules} alert rules loaded; state in {stack.root})
  Prometheus:   {stack.url('prometheus')}/alerts   (scrapes the API on {stack.api_target}; `make up` starts it)
  Alertmanager: {stack.url('alertmanager')}
  Pushgateway:  {stack.url('pushgateway')}   (the flows of `make up` push here while it answers)
  Game days read alerts from Alertmanager: set ALERTMANAGER_URL={stack.url('alertmanager')} (runbooks/on-call.md)
Stop with `make monitoring-down`.""")
    elif args.command == "down":
        stack.stop()
        print("==> monitoring stopped (data stays in .data/monitoring)")
    else:
        for name, state in stack.status().items():
            print(f"{name}: {'running' if state else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
