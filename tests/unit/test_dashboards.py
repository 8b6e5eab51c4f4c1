"""Dashboards and alert rules are well-formed, use provisioned datasources, and are documented.

Whether their queries work is proven on a real Prometheus (tests/integration/test_prometheus_proof.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def test_dashboards_have_unique_uids_and_panel_ids(boards: dict[str, dict[str, Any]]) -> None:
    assert boards
    uids = [board["uid"] for board in boards.values()]
    assert len(uids) == len(set(uids))
    for name, board in boards.items():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in _panels(board):
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, panel["title"])


def test_every_query_uses_a_provisioned_datasource(boards: dict[str, dict[str, Any]]) -> None:
    provisioned = {s["uid"]: s["type"] for s in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    for name, board in boards.items():
        for panel in _panels(board):
            if panel["type"] == "row":
                continue
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                source = target["datasource"]
                assert provisioned.get(source["uid"]) == source["type"], (name, panel["title"])
                query = target.get("expr") if source["type"] == "prometheus" else target.get("rawSql")
                assert query and query.strip(), (name, panel["title"])


def test_readme_lists_every_dashboard_and_panel(boards: dict[str, dict[str, Any]]) -> None:
    readme = (ROOT / "README.md").read_text()
    for board in boards.values():
        assert board["title"] in readme
        for panel in _panels(board):
            if panel["type"] != "row":
                assert panel["title"] in readme, (board["title"], panel["title"])


def test_every_alert_has_a_runbook_section_a_severity_and_a_unit_test() -> None:
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, re.M))
    tested = "\n".join(path.read_text() for path in RULE_TESTS)
    alerts = _alerts()
    assert len(alerts) >= 6
    for rule in alerts:
        name = rule["alert"]
        assert name in sections, f"docs/RUNBOOK.md has no '## {name}'"
        assert rule["labels"]["severity"] in ("page", "warn"), name
        assert rule["annotations"]["runbook"] == f"docs/RUNBOOK.md#{name.lower()}", name
        assert f"alertname: {name}\n" in tested, f"{name} has no promtool unit test"
