"""The Helm chart on a real control plane with simulated nodes: lint, install, every object
accepted, Deployments available, least-privilege RBAC (checked with `auth can-i` and by doing
the broker's real work with its ServiceAccount's token), upgrade keeps the generated key,
uninstall keeps the CRD."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tq_kube.lease import KubernetesLeaseConfig as LeaseConfig
from tq_kube.lease import KubernetesLeaseElector

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "taskqueue"


@pytest.mark.parametrize("crd", ["workerpool.yaml", "taskschedule.yaml"])
def test_the_charts_crd_is_the_single_source_in_crds(crd: str) -> None:
    assert (CHART / "files" / crd).read_bytes() == (
        REPO / "crds" / crd
    ).read_bytes(), f"run: cp crds/{crd} charts/taskqueue/files/{crd}"


def test_lint_is_strict_and_the_schema_refuses_unknown_values(control_plane: Any) -> None:
    control_plane.helm("lint", "--strict", str(CHART))
    bad = control_plane.helm(
        "template",
        "t",
        str(CHART),
        "--kube-version",
        "1.37.2",
        "--set",
        "broker.replcas=3",
        check=False,
    )
    assert bad.returncode != 0
    assert "replcas" in bad.stderr
    external = control_plane.helm(
        "template",
        "t",
        str(CHART),
        "--kube-version",
        "1.37.2",
        "--set",
        "postgresql.bundled.enabled=false",
        check=False,
    )
    assert external.returncode != 0
    assert "external.url" in external.stderr


def rendered(plane: Any, *args: str) -> list[dict[str, Any]]:
    out = plane.helm("template", "t", str(CHART), "--kube-version", "1.37.2", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_every_container_runs_hardened(control_plane: Any) -> None:
    for doc in rendered(control_plane):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, doc["metadata"]["name"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_tls_from_a_secret_serves_https_and_the_operator_expects_it(control_plane: Any) -> None:
    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for d in rendered(control_plane, "--set", "tls.existingSecret=tq-tls")
    }
    broker = docs[("Deployment", "t-taskqueue-broker")]["spec"]["template"]["spec"]
    container = broker["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TQ_TLS_CERT_FILE"] == "/etc/taskqueue/tls/tls.crt"
    assert env["TQ_TLS_KEY_FILE"] == "/etc/taskqueue/tls/tls.key"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "tls", "secret": {"secretName": "tq-tls"}} in broker["volumes"]
    operator = docs[("Deployment", "t-taskqueue-operator")]["spec"]["template"]["spec"]
    allowed = next(
        e["value"]
        for e in operator["containers"][0]["env"]
        if e["name"] == "TQ_OPERATOR_ALLOWED_BROKER_URLS"
    )
    assert all(url.startswith("https://") for url in allowed.split(","))
    plain = rendered(control_plane)
    assert not any("TQ_TLS_CERT_FILE" in json.dumps(d) for d in plain), "TLS is opt-in"


def test_the_bundled_postgresql_gives_the_broker_an_unprivileged_role(
    control_plane: Any,
) -> None:
    """The init script itself is run against a real server in test_bundled_postgres_role.py."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered(control_plane)}
    pod = docs[("StatefulSet", "t-taskqueue-postgresql")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["POSTGRES_USER"]["value"] == "postgres"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
        "postgres-superuser-password"
    )
    init = docs[("ConfigMap", "t-taskqueue-postgresql-init")]["data"]["init.sh"]
    assert init == (CHART / "files" / "postgres-init.sh").read_text()
    secret = docs[("Secret", "t-taskqueue-database")]["stringData"]
    assert secret["database-url"].startswith("postgresql://taskqueue:")
    assert secret["postgres-superuser-password"] != secret["postgres-password"]


def bind_a_volume(plane: Any, name: str) -> None:
    """The simulated cluster has no storage provisioner: offer one PersistentVolume."""
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "hostPath": {"path": f"/tmp/{name}"},
                },
            }
        ),
    )


def can_i(plane: Any, namespace: str, sa: str, *what: str) -> bool:
    result = plane.kubectl(
        "auth",
        "can-i",
        *what,
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{sa}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def admin_key(plane: Any, namespace: str, release: str) -> str:
    secret = plane.kubectl_json(
        "get", "secret", f"{release}-taskqueue-admin-api-key", "-n", namespace
    )
    return base64.b64decode(secret["data"]["admin-api-key"]).decode()


def token_kubeconfig(plane: Any, namespace: str, sa: str, path: Path) -> Path:
    token = plane.kubectl("create", "token", sa, "-n", namespace).stdout.strip()
    config = yaml.safe_load(Path(plane.kubeconfig).read_text())
    config["users"] = [{"name": sa, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = sa
    path.write_text(yaml.safe_dump(config))
    return path


def test_install_upgrade_uninstall_with_defaults(
    control_plane_with_nodes: Any, tmp_path: Path
) -> None:
    plane = control_plane_with_nodes
    namespace, release = f"tq-{uuid.uuid4().hex[:6]}", "tq"
    bind_a_volume(plane, f"pv-{namespace}")
    plane.helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    )
    try:
        deployments = plane.kubectl_json("get", "deployments", "-n", namespace)["items"]
        assert {d["metadata"]["name"] for d in deployments} == {
            "tq-taskqueue-broker",
            "tq-taskqueue-operator",
        }
        for deployment in deployments:
            status = deployment["status"]
            assert status.get("availableReplicas") == deployment["spec"]["replicas"]
        assert (
            plane.kubectl_json("get", "statefulset", "tq-taskqueue-postgresql", "-n", namespace)[
                "status"
            ].get("readyReplicas")
            == 1
        )
        plane.kubectl("get", "crd", "workerpools.taskqueue.io")
        plane.kubectl("get", "crd", "taskschedules.taskqueue.io")

        broker, operator = "tq-taskqueue-broker", "tq-taskqueue-operator"
        assert can_i(plane, namespace, broker, "create", "leases.coordination.k8s.io")
        assert can_i(
            plane,
            namespace,
            broker,
            "update",
            "leases.coordination.k8s.io/tq-taskqueue-broker-leader",
        )
        assert not can_i(
            plane, namespace, broker, "update", "leases.coordination.k8s.io/someone-elses"
        )
        for verb_resource in (
            ("list", "secrets"),
            ("get", "secrets"),
            ("create", "pods"),
            ("create", "deployments.apps"),
        ):
            assert not can_i(plane, namespace, broker, *verb_resource), verb_resource
        assert can_i(plane, namespace, operator, "patch", "workerpools.taskqueue.io")
        assert can_i(plane, namespace, operator, "watch", "taskschedules.taskqueue.io")
        assert can_i(plane, namespace, operator, "patch", "taskschedules.taskqueue.io/status")
        assert can_i(plane, namespace, operator, "create", "deployments.apps")
        assert can_i(plane, namespace, operator, "patch", "pods")
        # It has its own read_tasks key: no Secret of the namespace is readable by it.
        assert not can_i(plane, namespace, operator, "get", "secrets")
        assert not can_i(plane, namespace, operator, "list", "secrets")
        policies = plane.kubectl_json("get", "networkpolicies", "-n", namespace)["items"]
        assert {p["metadata"]["name"] for p in policies} == {
            "tq-taskqueue-broker",
            "tq-taskqueue-postgresql",
        }
        worker_secret = plane.kubectl_json(
            "get", "secret", "tq-taskqueue-worker-api-key", "-n", namespace
        )
        assert worker_secret["metadata"]["labels"]["taskqueue.io/api-key"] == "true"
        operator_secret = plane.kubectl_json(
            "get", "secret", "tq-taskqueue-operator-api-key", "-n", namespace
        )
        assert "taskqueue.io/api-key" not in operator_secret["metadata"]["labels"]
        admin_secret = plane.kubectl_json(
            "get", "secret", "tq-taskqueue-admin-api-key", "-n", namespace
        )
        assert "taskqueue.io/api-key" not in admin_secret["metadata"]["labels"], (
            "the admin key must not be readable by the operator for a pool"
        )
        assert not can_i(plane, namespace, operator, "delete", "namespaces")
        assert not can_i(plane, "default", operator, "create", "deployments.apps")
        assert not can_i(plane, namespace, operator, "create", "clusterroles")
        assert can_i(
            plane,
            namespace,
            operator,
            "update",
            "leases.coordination.k8s.io/tq-taskqueue-operator-leader",
        )
        assert not can_i(
            plane,
            namespace,
            operator,
            "update",
            "leases.coordination.k8s.io/tq-taskqueue-broker-leader",
        )

        # The broker's real Kubernetes work, with its own ServiceAccount's token.
        kubeconfig = token_kubeconfig(plane, namespace, broker, tmp_path / "broker.kubeconfig")
        elector = KubernetesLeaseElector(
            LeaseConfig(
                name="tq-taskqueue-broker-leader",
                namespace=namespace,
                identity="broker-under-test",
                lease_seconds=3,
                retry_seconds=0.5,
                kubeconfig=str(kubeconfig),
            )
        )

        async def lead_once() -> bool:
            stop = asyncio.Event()
            task = asyncio.create_task(elector.run(stop))
            for _ in range(100):
                if elector.is_leader:
                    break
                await asyncio.sleep(0.1)
            leading = elector.is_leader
            stop.set()
            await task
            return leading

        assert asyncio.run(lead_once()), "the broker's ServiceAccount cannot hold its Lease"

        key = admin_key(plane, namespace, release)
        assert len(key) == 48
        plane.helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            namespace,
            "--set",
            "broker.replicas=3",
            "--wait",
            "--timeout",
            "180s",
        )
        assert admin_key(plane, namespace, release) == key, "upgrade replaced the admin key"
        assert (
            plane.kubectl_json("get", "deployment", broker, "-n", namespace)["spec"]["replicas"]
            == 3
        )
    finally:
        plane.helm("uninstall", release, "-n", namespace, "--wait", check=False)
    plane.kubectl("get", "crd", "workerpools.taskqueue.io")  # kept
    assert admin_key(plane, namespace, release)  # kept: clients hold it


def test_install_with_external_postgres_and_a_service_monitor(
    control_plane_with_nodes: Any,
) -> None:
    plane = control_plane_with_nodes
    crd = servicemonitor_crd()
    plane.kubectl("apply", "--server-side", "-f", str(crd))
    plane.kubectl(
        "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
    )
    namespace, release = f"tq-{uuid.uuid4().hex[:6]}", "ext"
    plane.helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--set",
        "postgresql.bundled.enabled=false",
        "--set",
        "postgresql.external.url=postgresql://u:p@db.example:5432/tq",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "crds.install=false",
        "--wait",
        "--timeout",
        "180s",
    )
    try:
        monitor = plane.kubectl_json(
            "get", "servicemonitor", "ext-taskqueue-broker", "-n", namespace
        )
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        secret = plane.kubectl_json("get", "secret", "ext-taskqueue-database", "-n", namespace)
        url = base64.b64decode(secret["data"]["database-url"]).decode()
        assert url == "postgresql://u:p@db.example:5432/tq"
        statefulsets = plane.kubectl_json("get", "statefulsets", "-n", namespace)["items"]
        assert statefulsets == []
    finally:
        plane.helm("uninstall", release, "-n", namespace, "--wait", check=False)


def servicemonitor_crd() -> Path:
    """The ServiceMonitor CRD, generated from prometheus-operator's Go API module."""
    script = Path(__file__).parent / "build_servicemonitor_crd.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1500)
    if out.returncode != 0:
        pytest.fail(f"could not build the ServiceMonitor CRD:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])
