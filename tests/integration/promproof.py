"""A real Prometheus for the tests, and the checks run through its HTTP API on dashboards and alert rules.

Prometheus and promtool come from Debian's ``prometheus`` package (``deploy/system-deps.sh`` installs it).
The server runs on a free loopback port in a scratch directory, with the jobs and rule files of
``deploy/prometheus`` and its targets rewritten to the processes the test started.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import httpx
import yaml

from base.settings import Settings
from tests.integration.stack import ROOT, free_port

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_DATASOURCE = "prometheus"
CLICKHOUSE_DATASOURCE = "grafana-clickhouse-datasource"
# A metric of this project is any name with the project's prefix; Prometheus's own (up, ALERTS) are not.
_METRIC = re.compile(r"\bwhatsup_[a-z0-9_]+")


def binary(name: str) -> str:
    """Return the path of a Prometheus binary, or fail saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: run deploy/system-deps.sh (Debian package prometheus)")
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool and return its result (the caller checks the exit code)."""
    return subprocess.run(
        [binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


class Query(NamedTuple):
    """One query of a dashboard panel or an alert rule: where it lives, its datasource type, its text."""

    where: str
    datasource: str
    text: str


def dashboard_queries(paths: Iterable[Path]) -> list[Query]:
    """Return every query of every panel (rows' nested panels included) of the dashboards at ``paths``."""
    queries: list[Query] = []
    for path in paths:
        board = json.loads(path.read_text())
        stack = list(board["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                source = (target.get("datasource") or panel.get("datasource") or {}).get("type", "")
                text = target.get("expr") if source == PROMETHEUS_DATASOURCE else target.get("rawSql")
                where = f"{path.name}: {panel['title']} [{target['refId']}]"
                queries.append(Query(where, source, text or ""))
    return queries


def rule_queries(rule_files: Iterable[Path]) -> list[Query]:
    """Return the expression of every alerting and recording rule in ``rule_files``."""
    queries: list[Query] = []
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                queries.append(Query(f"{path.name}: {name}", PROMETHEUS_DATASOURCE, rule["expr"]))
    return queries


def grafana_to_promql(expr: str, rate_interval: str) -> str:
    """Replace Grafana's interval variables the way Grafana would before sending the query."""
    for variable in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(variable, rate_interval)
    return expr


def metric_names(expr: str) -> set[str]:
    """Return the project metrics an expression refers to."""
    return set(_METRIC.findall(expr))


class Prometheus:
    """A Prometheus server on loopback, scraping the given jobs every second with the project's rules."""

    def __init__(self, workdir: Path, targets: Mapping[str, list[str]]) -> None:
        self.workdir = workdir
        self.targets = targets
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def write_config(self) -> Path:
        """Write the config: deploy/prometheus's jobs and rules, targets on loopback, 1 s intervals."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        jobs = []
        for job in config["scrape_configs"]:
            if job["job_name"] == "prometheus":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
            elif job["job_name"] in self.targets:
                job["static_configs"] = [{"targets": self.targets[job["job_name"]]}]
            else:
                continue  # a process this test does not run
            jobs.append(job)
        config["scrape_configs"] = jobs
        shutil.copytree(PROMETHEUS_DIR / "rules", self.workdir / "rules", dirs_exist_ok=True)
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it is ready."""
        config = self.write_config()
        self._log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {timeout_s}s:\n{self.log_tail()}")

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
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

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


def check_promql(
    prometheus: Prometheus, queries: Iterable[Query], *, need_data: bool, rate_interval: str = "1m"
) -> list[str]:
    """Evaluate each PromQL query; return a problem for each that does not parse, names a metric no
    scraped process exports, or (``need_data``) returns nothing."""
    exported = prometheus.metric_names()
    problems = []
    for query in queries:
        expr = grafana_to_promql(query.text, rate_interval)
        unknown = sorted(name for name in metric_names(expr) if name not in exported)
        if unknown:
            problems.append(f"{query.where}: no process exports {', '.join(unknown)}")
            continue
        answer = prometheus.query(expr)
        if answer.get("status") != "success":
            problems.append(f"{query.where}: {answer.get('errorType')}: {answer.get('error')}")
        elif need_data and not answer["data"]["result"]:
            problems.append(f"{query.where}: no data")
    return problems


def iter_rules(prometheus: Prometheus) -> Iterator[dict[str, Any]]:
    """Yield every rule Prometheus has loaded, with its health and last error."""
    for group in prometheus.api("rules")["data"]["groups"]:
        yield from group["rules"]


def grafana_to_clickhouse(sql: str, days: int = 30) -> str:
    """Replace the ClickHouse datasource's time macro with the last ``days`` days, as Grafana would."""
    return re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: (
            f"{m.group(1)} >= now64(3) - INTERVAL {days} DAY AND {m.group(1)} <= now64(3) + INTERVAL 1 DAY"
        ),
        sql,
    )


def check_sql(settings: Settings, queries: Iterable[Query]) -> list[str]:
    """Run each ClickHouse panel's SQL through the sink's read-only endpoint; return the errors."""
    from sinks.query import QueryError, run_query

    problems = []
    for query in queries:
        try:
            run_query(settings, grafana_to_clickhouse(query.text))
        except QueryError as exc:
            problems.append(f"{query.where}: {exc}")
    return problems
