"""The chart's monitoring objects: off by default; with their values on, the Grafana dashboard
ConfigMap (labelled for Grafana's sidecar) carries files/grafana-dashboard.json, the
PrometheusRule carries files/prometheus-rules.yaml (checked again by promtool as rendered),
and the operator's PodMonitor scrapes the port the operator serves its gauges on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..support.system_tools import require_programs
from .test_chart import CHART, rendered

ON = (
    "--set", "grafanaDashboard.enabled=true",
    "--set", "grafanaDashboard.folder=Queues",
    "--set", "prometheusRule.enabled=true",
    "--set", "prometheusRule.labels.release=kps",
    "--set", "operator.podMonitor.enabled=true",
)  # fmt: skip


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, [(d["kind"], d["metadata"]["name"]) for d in docs]
    return found[0]


def test_monitoring_objects_are_off_by_default(control_plane: Any) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered(control_plane)}
    assert not [k for k in kinds if k[0] in ("PrometheusRule", "PodMonitor")]
    assert ("ConfigMap", "t-taskqueue-grafana-dashboard") not in kinds


def test_the_chart_renders_the_dashboard_and_the_rules_when_asked(
    control_plane: Any, tmp_path: Path
) -> None:
    control_plane.helm("lint", "--strict", str(CHART), *ON)
    docs = rendered(control_plane, *ON)
    board = one(docs, "ConfigMap", "t-taskqueue-grafana-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"]["grafana_folder"] == "Queues"
    expected = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(board["data"]["taskqueue.json"]) == expected

    rule = one(docs, "PrometheusRule", "t-taskqueue")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    as_rendered = tmp_path / "rules.yaml"
    as_rendered.write_text(yaml.safe_dump(rule["spec"]))
    promtool = require_programs("promtool", debian_packages="prometheus")["promtool"]
    checked = subprocess.run(
        [promtool, "check", "rules", str(as_rendered)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    monitor = one(docs, "PodMonitor", "t-taskqueue-operator")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    operator = one(docs, "Deployment", "t-taskqueue-operator")["spec"]["template"]["spec"]
    container = operator["containers"][0]
    assert "--metrics-port=9091" in container["args"]
    assert {"name": "metrics", "containerPort": 9091} in container["ports"]
