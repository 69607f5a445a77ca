"""Prove the test control plane is a real Kubernetes: versions, optimistic
concurrency, RBAC, and (with nodes) Deployments -> ReplicaSets -> Running pods
plus garbage collection."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

from .controlplane import ControlPlane

EXPECTED_VERSION = re.compile(r"^v1\.3\d+\.\d+$")


def _wait(what, predicate, timeout=90.0, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def _namespace(cp: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    return name


def test_server_reports_real_version(control_plane: ControlPlane):
    info = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server, client = info["serverVersion"], info["clientVersion"]
    assert EXPECTED_VERSION.match(server["gitVersion"]), server
    assert not server["gitVersion"].startswith("v0.0.0")
    assert server["major"] == "1" and server["minor"] == server["gitVersion"].split(".")[1]
    assert client["gitVersion"] == server["gitVersion"]


def test_binaries_report_pinned_versions(control_plane: ControlPlane):
    out = subprocess.run(
        [str(control_plane.bin_dir / "kube-apiserver"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.match(r"^Kubernetes v1\.3\d+\.\d+$", out.strip()), out
    etcd = subprocess.run(
        [str(control_plane.bin_dir / "etcd"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"etcd Version: 3\.\d+\.\d+", etcd), etcd
    helm = control_plane.helm("version", "--short").stdout
    assert helm.startswith("v3."), helm


def test_configmap_update_with_stale_resource_version_conflicts(control_plane: ControlPlane):
    ns = _namespace(control_plane, "cm")
    control_plane.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=a=1")
    stale = control_plane.kubectl_json("get", "configmap", "settings", "-n", ns)

    fresh = json.loads(json.dumps(stale))
    fresh["data"]["a"] = "2"
    control_plane.kubectl("replace", "-f", "-", input=json.dumps(fresh))

    stale["data"]["a"] = "3"
    proc = control_plane.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert proc.returncode != 0
    assert "Conflict" in proc.stderr or "the object has been modified" in proc.stderr, proc.stderr
    current = control_plane.kubectl_json("get", "configmap", "settings", "-n", ns)
    assert current["data"]["a"] == "2"


def test_rbac_is_enforced(control_plane: ControlPlane):
    nobody = "system:serviceaccount:default:nobody"
    proc = control_plane.kubectl("auth", "can-i", "list", "secrets", f"--as={nobody}", check=False)
    assert proc.stdout.strip() == "no", (proc.stdout, proc.stderr)
    proc = control_plane.kubectl("get", "secrets", f"--as={nobody}", check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr

    ns = _namespace(control_plane, "rbac")
    control_plane.kubectl(
        "create", "role", "secret-reader", "-n", ns, "--verb=list", "--resource=secrets"
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "-n",
        ns,
        "--role=secret-reader",
        "--serviceaccount=default:nobody",
    )
    assert (
        control_plane.kubectl(
            "auth", "can-i", "list", "secrets", "-n", ns, f"--as={nobody}", check=False
        ).stdout.strip()
        == "yes"
    )
    assert (
        control_plane.kubectl(
            "auth", "can-i", "list", "secrets", "-n", "default", f"--as={nobody}", check=False
        ).stdout.strip()
        == "no"
    )


def test_admin_is_system_masters(control_plane: ControlPlane):
    assert control_plane.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_deployment_gets_running_pods_and_is_garbage_collected(
    control_plane_with_nodes: ControlPlane,
):
    cp = control_plane_with_nodes
    ns = _namespace(cp, "deploy")
    cp.kubectl(
        "create", "deployment", "web", "-n", ns, "--image=example.invalid/web:1", "--replicas=2"
    )

    def replicasets():
        return cp.kubectl_json("get", "replicasets", "-n", ns, "-l", "app=web")["items"]

    rs = _wait("a ReplicaSet for the Deployment", replicasets)
    assert len(rs) == 1
    assert rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    def running_pods():
        pods = cp.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        return running if len(running) == 2 else None

    pods = _wait("2 Running pods", running_pods)
    assert {p["spec"]["nodeName"] for p in pods} <= set(cp.node_names)
    deployment = cp.kubectl_json("get", "deployment", "web", "-n", ns)
    _wait(
        "Deployment availableReplicas == 2",
        lambda: (
            cp.kubectl_json("get", "deployment", "web", "-n", ns)
            .get("status", {})
            .get("availableReplicas")
            == 2
        ),
    )
    assert deployment["spec"]["replicas"] == 2

    cp.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=background", "--wait=false")
    _wait("ReplicaSet garbage-collected", lambda: replicasets() == [])
    _wait(
        "pods garbage-collected",
        lambda: cp.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"] == [],
    )


def test_service_account_tokens_are_minted(control_plane_with_nodes: ControlPlane):
    cp = control_plane_with_nodes
    ns = _namespace(cp, "sa")
    _wait(
        "default ServiceAccount in the new namespace",
        lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
    )
    token = cp.kubectl("create", "token", "default", "-n", ns).stdout.strip()
    assert token.count(".") == 2
    proc = subprocess.run(
        [
            str(cp.bin_dir / "kubectl"),
            f"--server={cp.server}",
            f"--certificate-authority={cp.ca_file}",
            f"--token={token}",
            "--kubeconfig=/dev/null",
            "get",
            "secrets",
            "-n",
            ns,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
    assert f"system:serviceaccount:{ns}:default" in proc.stderr
