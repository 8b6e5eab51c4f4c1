"""A real Prometheus for the tests, and the checks run through its HTTP API on dashboards and alert rules.

Prometheus and promtool come from Debian's ``prometheus`` package (``deploy/system-deps.sh`` installs it);
``loadtest.monitoring.Prometheus`` runs the server with the jobs and rule files of ``deploy/prometheus``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from base.settings import Settings
from loadtest.monitoring import PROMETHEUS_DIR as PROMETHEUS_DIR
from loadtest.monitoring import Prometheus, binary
from tests.integration.stack import ROOT

DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_DATASOURCE = "prometheus"
CLICKHOUSE_DATASOURCE = "grafana-clickhouse-datasource"
# A metric of this project is any name with the project's prefix; Prometheus's own (up, ALERTS) are not.
_METRIC = re.compile(r"\bwhatsup_[a-z0-9_]+")


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
