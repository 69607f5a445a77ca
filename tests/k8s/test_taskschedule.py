"""TaskSchedule on a real API server: the CRD's CEL rules and printer columns, and the operator
(`tq-operator`, a subprocess) keeping broker schedule k8s-<namespace>-<name> equal to the
resource against a real broker: create, edit, fire, refuse, delete."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tq_broker.embedded import EmbeddedPostgres

from .controlplane import ControlPlane
from .test_crd import REPO, install_crd
from .test_operator import (
    Broker,
    OperatorProcess,
    apply,
    get,
    new_namespace,
    start_broker,
    wait_for,
)

CRD = REPO / "crds" / "taskschedule.yaml"


def install_schedule_crd(cp: ControlPlane) -> None:
    cp.kubectl("apply", "-f", str(CRD))
    cp.kubectl(
        "wait", "--for=condition=Established", "crd/taskschedules.taskqueue.io", "--timeout=60s"
    )


# The operator refreshing schedule status every second (instead of every 30).
FAST_STATUS_ENV = {"TQ_OPERATOR_SCHEDULE_STATUS_SECONDS": "1"}


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    install_crd(control_plane)
    install_schedule_crd(control_plane)
    log_path = tmp_path_factory.mktemp("op") / "op.log"
    operator = OperatorProcess(control_plane, log_path, env=FAST_STATUS_ENV).start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture(scope="module")
def broker(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(pg, tmp_path_factory.mktemp("broker") / "broker.log")


def schedule_manifest(name: str, broker_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskqueue.io/v1alpha1",
        "kind": "TaskSchedule",
        "metadata": {"name": name},
        "spec": {
            "broker": {"url": broker_url, "apiKeySecretRef": {"name": "tq-key"}},
            "taskType": "report",
            **spec,
        },
    }


def broker_schedule(broker: Broker, name: str) -> dict[str, Any] | None:
    response = httpx.get(f"{broker.url}/api/v1/schedules/{name}", headers=broker.headers)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json())


def synced(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    resource = get(cp, ns, "taskschedule", name) or {}
    for cond in (resource.get("status") or {}).get("conditions", []):
        if cond["type"] == "Synced":
            return dict(cond)
    return {}


# --------------------------------------------------------------------- the CRD alone


def create(cp: ControlPlane, ns: str, manifest: dict[str, Any]) -> subprocess.CompletedProcess:
    return cp.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest), check=False)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"cron": "0 3 * *"}, "cron must be 5 fields"),
        ({"cron": "0 3 * * * *"}, "cron must be 5 fields"),
        ({"cron": "0 3 * * $"}, "cron must be 5 fields"),
        ({"cron": "* * * * *", "intervalSeconds": 60}, "exactly one of cron and intervalSeconds"),
        ({}, "exactly one of cron and intervalSeconds"),
        ({"intervalSeconds": 0}, "should be greater than or equal to 1"),
        ({"cron": "* * * * *", "payload": "aGk=", "payloadText": "hi"}, "at most one of"),
        ({"cron": "* * * * *", "missedFires": "fire_all"}, "Unsupported value"),
    ],
)
def test_the_api_server_refuses_what_cannot_be_a_schedule(
    control_plane: ControlPlane, spec: dict[str, Any], says: str
) -> None:
    install_schedule_crd(control_plane)
    ns = f"tq-crd-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    refused = create(control_plane, ns, schedule_manifest("bad", "http://broker:8080", **spec))
    assert refused.returncode != 0
    assert says in refused.stderr, refused.stderr
    assert control_plane.kubectl_json("get", "ts", "-n", ns)["items"] == []


def test_short_name_defaults_and_printer_columns(control_plane: ControlPlane) -> None:
    install_schedule_crd(control_plane)
    ns = f"tq-crd-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    made = create(control_plane, ns, schedule_manifest("nightly", "http://b:1", cron="0 3 * * *"))
    assert made.returncode == 0, made.stderr
    stored = control_plane.kubectl_json("get", "ts", "nightly", "-n", ns)["spec"]
    assert (stored["timezone"], stored["priority"], stored["missedFires"]) == (
        "UTC",
        100,
        "fire_once",
    )
    header, row = control_plane.kubectl("get", "ts", "-n", ns).stdout.splitlines()
    assert header.split() == [
        "NAME", "CRON", "EVERY", "TASK", "TYPE", "PAUSED", "SYNCED", "NEXT", "FIRE", "LAST",
        "FIRE", "AGE",
    ]  # fmt: skip
    assert row.split()[:7] == ["nightly", "0", "3", "*", "*", "*", "report"]


# --------------------------------------------------------------------- with the operator


def test_create_edit_fire_and_delete_follow_the_resource(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp = control_plane
    ns = new_namespace(cp, broker)
    name = f"k8s-{ns}-nightly"
    apply(cp, ns, schedule_manifest("nightly", broker.url, cron="0 3 * * *", timezone="Asia/Tokyo",
                                    payloadText="hi", priority=150))  # fmt: skip
    # The first operator test of the module: the timeout includes the operator's start.
    created = wait_for("the schedule", lambda: broker_schedule(broker, name), operator, timeout=90)
    assert (created["cron"], created["timezone"], created["task_type"]) == (
        "0 3 * * *",
        "Asia/Tokyo",
        "report",
    )
    assert (created["payload"], created["priority"], created["paused"]) == ("aGk=", 150, False)
    status = wait_for("Synced", lambda: synced(cp, ns, "nightly").get("status") == "True" and
                      get(cp, ns, "ts", "nightly")["status"], operator)  # fmt: skip
    assert status["scheduleName"] == name
    assert status["nextFireTime"].endswith("T18:00:00Z")  # 03:00 in Tokyo

    # edit: the schedule follows, cron to interval and paused
    cp.kubectl("patch", "ts", "nightly", "-n", ns, "--type=merge", "-p",
               json.dumps({"spec": {"cron": None, "intervalSeconds": 1}}))  # fmt: skip
    wait_for("the interval", lambda: (broker_schedule(broker, name) or {}).get(
        "interval_seconds") == 1, operator)  # fmt: skip
    # it fires, and the status shows the last fire and its task
    fired = wait_for("a fire in the status", lambda: (get(cp, ns, "ts", "nightly") or {}).get(
        "status", {}).get("lastTaskId"), operator)  # fmt: skip
    task = httpx.get(f"{broker.url}/api/v1/tasks/{fired}", headers=broker.headers).json()
    assert task["task_type"] == "report"
    cp.kubectl("patch", "ts", "nightly", "-n", ns, "--type=merge", "-p",
               json.dumps({"spec": {"paused": True}}))  # fmt: skip
    wait_for("paused", lambda: (broker_schedule(broker, name) or {}).get("paused"), operator)

    # delete: the schedule goes with the resource
    cp.kubectl("delete", "ts", "nightly", "-n", ns, "--timeout=60s")
    assert broker_schedule(broker, name) is None
    assert get(cp, ns, "ts", "nightly") is None


def test_a_cron_the_broker_refuses_is_reported_in_the_status(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp = control_plane
    ns = new_namespace(cp, broker)
    # The right shape for the API server's CEL rule, but minute 61 does not exist.
    apply(cp, ns, schedule_manifest("typo", broker.url, cron="61 * * * *"))
    condition = wait_for("Synced=False", lambda: (c := synced(cp, ns, "typo")).get(
        "status") == "False" and c, operator, timeout=60)  # fmt: skip
    assert condition["reason"] == "Refused"
    assert "cron" in condition["message"]
    assert broker_schedule(broker, f"k8s-{ns}-typo") is None
    # fixing the spec syncs it
    cp.kubectl("patch", "ts", "typo", "-n", ns, "--type=merge", "-p",
               json.dumps({"spec": {"cron": "1 * * * *"}}))  # fmt: skip
    wait_for("the fixed schedule", lambda: broker_schedule(broker, f"k8s-{ns}-typo"), operator)
    assert wait_for("Synced=True", lambda: synced(cp, ns, "typo").get("status") == "True",
                    operator)  # fmt: skip
    cp.kubectl("delete", "ts", "typo", "-n", ns, "--timeout=60s")
    assert broker_schedule(broker, f"k8s-{ns}-typo") is None


def test_a_schedule_deleted_behind_the_operators_back_is_written_again(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker, tmp_path: Path
) -> None:
    cp = control_plane
    ns = new_namespace(cp, broker)
    name = f"k8s-{ns}-ping"
    apply(cp, ns, schedule_manifest("ping", broker.url, intervalSeconds=3600))
    wait_for("the schedule", lambda: broker_schedule(broker, name), operator)
    wait_for("Synced=True", lambda: synced(cp, ns, "ping").get("status") == "True", operator)
    deleted = httpx.delete(f"{broker.url}/api/v1/schedules/{name}", headers=broker.headers)
    assert deleted.status_code == 204
    again = wait_for("the schedule again", lambda: broker_schedule(broker, name), operator)
    assert again["interval_seconds"] == 3600
    cp.kubectl("delete", "ts", "ping", "-n", ns, "--timeout=60s")
    assert broker_schedule(broker, name) is None
