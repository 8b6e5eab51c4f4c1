"""Prometheus and Alertmanager from Debian's packages on loopback, with the project's own config and rules.

Each runs in a scratch directory on a free port: Prometheus with deploy/prometheus's jobs and rules, its
targets rewritten to the processes given and its intervals 1 s; Alertmanager with
deploy/alertmanager/alertmanager.yml, its PagerDuty URL and routing-key file pointed where it is told and its
waits shortened. The tests prove the rules and the paging on them, and `make demo` shows a page.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from base.settings import PROJECT_ROOT
from loadtest.processes import free_port

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
ALERTMANAGER_FILE = PROJECT_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def binary(name: str) -> str:
    """Return the path of a monitoring binary, or fail saying which Debian package installs it."""
    path = shutil.which(name)
    if path is None:
        package = PACKAGES.get(name, name)
        raise AssertionError(f"{name} not found: run deploy/system-deps.sh (Debian package {package})")
    return path


def rules_with_for(target: Path, fors: Mapping[str, str]) -> Path:
    """Copy the project's rules into ``target`` with the ``for`` of each alert named in ``fors`` replaced."""
    target.mkdir(parents=True, exist_ok=True)
    missing = set(fors)
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in fors:
                    rule["for"] = fors[rule["alert"]]
                    missing.discard(rule["alert"])
        (target / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    if missing:
        raise ValueError(f"no rule {', '.join(sorted(missing))} in deploy/prometheus/rules")
    return target


class LocalServer:
    """A server binary in ``workdir`` on a free loopback port, ready once ``ready_path`` answers 200."""

    name = ""
    ready_path = "/-/ready"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> None:
        """Write the config, start the server and wait until it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        self._log = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready within {timeout_s}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it hangs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class Prometheus(LocalServer):
    """Prometheus scraping the given jobs every second with the project's rules (or ``rules_dir``'s)."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        targets: Mapping[str, list[str]],
        *,
        alertmanager: str | None = None,
        rules_dir: Path = PROMETHEUS_DIR / "rules",
    ) -> None:
        super().__init__(workdir)
        self.targets = targets
        self.alertmanager = alertmanager
        self.rules_dir = rules_dir

    def write_config(self) -> Path:
        """Write deploy/prometheus's config: its jobs with targets on loopback, 1 s intervals, and alerts
        sent to ``alertmanager`` (host:port) when given."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        jobs = []
        for job in config["scrape_configs"]:
            if job["job_name"] == "prometheus":
                job["static_configs"] = [{"targets": [self.address]}]
            elif job["job_name"] in self.targets:
                job.pop("dns_sd_configs", None)
                job["static_configs"] = [{"targets": self.targets[job["job_name"]]}]
            else:
                continue  # a process not running here
            jobs.append(job)
        config["scrape_configs"] = jobs
        if self.alertmanager is None:
            del config["alerting"]
        else:
            config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [self.alertmanager]}]}]
        shutil.copytree(self.rules_dir, self.workdir / "rules", dirs_exist_ok=True)
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def command(self) -> list[str]:
        return [
            binary("prometheus"),
            f"--config.file={self.write_config()}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """Call the HTTP API; return its JSON answer, errors included (status "error", errorType)."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body: dict[str, Any] = answer.json()
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """Evaluate an instant query now."""
        return self.api("query", query=expr)

    def metric_names(self) -> set[str]:
        """Return every metric name Prometheus holds a series of (over the last hour)."""
        now = time.time()
        answer = self.api("label/__name__/values", start=str(now - 3600), end=str(now + 60))
        return set(answer["data"])

    def wait_for(self, expr: str, timeout_s: float = 90.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns a non-empty result; return it."""
        deadline = time.monotonic() + timeout_s
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.query(expr)
            if answer.get("status") == "success" and answer["data"]["result"]:
                result: list[dict[str, Any]] = answer["data"]["result"]
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr} still empty after {timeout_s}s: {answer}")


class Alertmanager(LocalServer):
    """Alertmanager with the project's routes, paging the Events API at ``pagerduty_url``."""

    name = "alertmanager"

    def __init__(self, workdir: Path, pagerduty_url: str, routing_key: str) -> None:
        super().__init__(workdir)
        self.pagerduty_url = pagerduty_url
        self.routing_key = routing_key

    def write_config(self) -> Path:
        """Write the project's config with the given Events API, a key file here, and second-long waits."""
        config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text())
        key_file = self.workdir / "pagerduty_routing_key"
        key_file.write_text(self.routing_key + "\n")
        key_file.chmod(0o600)
        for receiver in config["receivers"]:
            for pagerduty in receiver.get("pagerduty_configs", []):
                pagerduty.update(url=f"{self.pagerduty_url}/v2/enqueue", routing_key_file=str(key_file))
        config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def command(self) -> list[str]:
        return [
            binary("prometheus-alertmanager"),
            f"--config.file={self.write_config()}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
            "--log.level=info",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts Alertmanager holds now."""
        answer: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v2/alerts", timeout=10).json()
        return answer
