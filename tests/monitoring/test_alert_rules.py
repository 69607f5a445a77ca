"""The chart's alert rules, checked by Prometheus's own tool: `promtool check rules` on
charts/taskqueue/files/prometheus-rules.yaml, and `promtool test rules` on the cases in
prometheus-rules.test.yaml (each alert fires on its series and stays quiet on near misses)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..support.processes import REPO_ROOT
from ..support.system_tools import require_programs

RULES = REPO_ROOT / "charts" / "taskqueue" / "files" / "prometheus-rules.yaml"
DASHBOARD = REPO_ROOT / "charts" / "taskqueue" / "files" / "grafana-dashboard.json"
CASES = Path(__file__).parent / "prometheus-rules.test.yaml"
GRAFANA_RANGE = "$__rate_interval"  # Grafana's variable; Prometheus needs a duration


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = require_programs("promtool", debian_packages="prometheus")["promtool"]
    return subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def alerts(rules: dict[str, Any]) -> list[str]:
    return [r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard's panels, as Prometheus would get it."""
    board = json.loads(DASHBOARD.read_text())
    return [
        target["expr"].replace(GRAFANA_RANGE, "1m")
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = len(alerts(yaml.safe_load(RULES.read_text())))
    assert f"SUCCESS: {count} rules found" in checked.stdout


def test_every_alert_fires_in_the_promtool_cases_and_they_pass() -> None:
    cases = yaml.safe_load(CASES.read_text())
    fired = {
        check["alertname"]
        for case in cases["tests"]
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert fired == set(alerts(yaml.safe_load(RULES.read_text())))
    tested = promtool("test", "rules", CASES.name, cwd=CASES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    """Parsed by promtool as recording rules (evaluated for real in test_dashboard_queries)."""
    queries = dashboard_queries()
    assert len(queries) >= 15
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": q} for n, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(as_rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
