"""The import rules of ARCHITECTURE.md, checked on the source: tq_client and tq_kube import
nothing of ours; the worker imports only tq_client, the operator tq_client and tq_kube;
nothing imports the broker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "tq_client": REPO / "client" / "tq_client",
    "tq_kube": REPO / "client" / "tq_kube",
    "tq_broker": REPO / "broker" / "tq_broker",
    "tq_worker": REPO / "worker-image" / "tq_worker",
    "tq_operator": REPO / "operator" / "tq_operator",
}
MAY_IMPORT = {
    "tq_client": {"tq_client"},
    "tq_kube": {"tq_kube"},
    "tq_worker": {"tq_worker", "tq_client"},
    "tq_operator": {"tq_operator", "tq_client", "tq_kube"},
    "tq_broker": {"tq_broker", "tq_client", "tq_kube"},
}


def ours_imported_by(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES}
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_imports_only_what_the_rules_allow(package: str) -> None:
    offences = [
        f"{path.relative_to(REPO)} imports {sorted(wrong)}"
        for path in sorted(PACKAGES[package].rglob("*.py"))
        if (wrong := ours_imported_by(path) - MAY_IMPORT[package])
    ]
    assert offences == []


def test_the_check_sees_an_import_that_breaks_a_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom tq_broker.store import TaskStore\nimport tq_client.models\n")
    assert ours_imported_by(bad) == {"tq_broker", "tq_client"}
