"""The operator (`tq-operator`, a subprocess) against a real API server and a real broker.

This control plane has no controller-manager: Deployments get no pods, so these tests look
at what the operator writes (the Deployment, its replicas, the pool's status and Events).
Pods, readiness, deletion costs and garbage collection: test_operator_nodes.py.
The harness here (OperatorProcess, wait_for, the broker helpers) is shared with that file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import create_database, drop_database
from tests.support.processes import BrokerProcess, bin_path
from tq_broker.embedded import EmbeddedPostgres

from .controlplane import ControlPlane, _die_with_parent
from .test_crd import install_crd

T = TypeVar("T")
ALLOWED_BROKER_URLS = "http://127.0.0.1:*"  # the test brokers; a pool elsewhere gets no key
NAMESPACE_PREFIX = "tq-op-"  # the operator under test watches only these namespaces
POLL = 1  # pollIntervalSeconds of the pools under test


class OperatorProcess:
    """`tq-operator` watching tq-op-* namespaces of one control plane."""

    def __init__(self, cp: ControlPlane, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.cp = cp
        self.log_path = log_path
        self.env = env or {}  # extra settings, over the defaults below
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [bin_path("tq-operator"), "--namespace", f"{NAMESPACE_PREFIX}*"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    **self.cp.env(),
                    "PYTHONUNBUFFERED": "1",
                    "TQ_OPERATOR_ALLOWED_BROKER_URLS": ALLOWED_BROKER_URLS,
                    **self.env,
                },
                preexec_fn=_die_with_parent,  # no operator outlives a killed test run
            )
        return self

    def log(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_operator(cp: ControlPlane, log_path: Path) -> Iterator[OperatorProcess]:
    install_crd(cp)
    operator = OperatorProcess(cp, log_path).start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory):
    yield from start_operator(control_plane, tmp_path_factory.mktemp("op") / "operator.log")


@dataclass
class Broker:
    """A real broker with auth on; every call below carries its admin key."""

    process: BrokerProcess
    key: str

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def submit(self, task_type: str, count: int) -> list[str]:
        ids: list[str] = []
        for start in range(0, count, 1000):
            batch = [{"task_type": task_type}] * min(1000, count - start)
            ids += [
                t["task_id"] for t in self.post("/api/v1/tasks/batch", {"tasks": batch})["tasks"]
            ]
        return ids

    def register(self, worker_id: str, task_type: str, current_tasks: int = 0) -> None:
        body = {"worker_id": worker_id, "task_types": [task_type], "concurrency": 1000}
        self.post("/api/v1/workers", body)
        self.post(f"/api/v1/workers/{worker_id}/heartbeat", {"current_tasks": current_tasks})

    def claim(self, worker_id: str, count: int) -> list[dict[str, Any]]:
        body = {"worker_id": worker_id, "max_tasks": count, "wait_seconds": 0}
        return list(self.post("/api/v1/tasks/claim", body)["tasks"])

    def complete(self, worker_id: str, tasks: list[dict[str, Any]]) -> None:
        leases = [{"task_id": t["task_id"], "lease_token": t["lease_token"]} for t in tasks]
        self.post("/api/v1/tasks/complete", {"worker_id": worker_id, "tasks": leases})

    def drain(self, task_type: str) -> int:
        """Do all ready work through the worker protocol, as a worker outside the cluster."""
        worker_id = f"worker-drainer-{uuid.uuid4().hex[:6]}-1-abcdef"
        self.register(worker_id, task_type)
        done = 0
        while tasks := self.claim(worker_id, 1000):
            self.complete(worker_id, tasks)
            done += len(tasks)
        httpx.delete(f"{self.url}/api/v1/workers/{worker_id}", headers=self.headers)
        return done


def start_broker(pg: EmbeddedPostgres, log_path: Path) -> Iterator[Broker]:
    database = create_database(pg)
    key = f"tq-test-admin-{uuid.uuid4().hex}"
    process = BrokerProcess(
        ["--database-url", pg.url(database), "--host", "127.0.0.1"],
        log_path,
        # A batch costs a rate-limit token per task; the module's tests submit hundreds.
        env={
            "TQ_AUTH": "on",
            "TQ_ADMIN_API_KEY": key,
            "TQ_RATE_LIMIT_PER_SECOND": "100000",
            "TQ_RATE_LIMIT_BURST": "100000",
        },
    ).start()
    try:
        yield Broker(process, key)
    finally:
        process.stop()
        drop_database(pg, database)


@pytest.fixture(scope="module")
def broker(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(pg, tmp_path_factory.mktemp("broker") / "broker.log")


def new_namespace(cp: ControlPlane, broker: Broker | None = None) -> str:
    """A namespace the operator watches, holding Secret tq-key with the broker's key."""
    name = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    if broker is not None:
        cp.kubectl(
            "create",
            "secret",
            "generic",
            "tq-key",
            "-n",
            name,
            f"--from-literal=api-key={broker.key}",
        )
        opt_in(cp, name)
    return name


def opt_in(cp: ControlPlane, ns: str, secret: str = "tq-key") -> None:
    """The label without which the operator reads no Secret."""
    cp.kubectl("label", "secret", secret, "-n", ns, "taskqueue.io/api-key=true")


def wait_for(
    what: str,
    predicate: Callable[[], T],
    operator: OperatorProcess,
    timeout: float = 30.0,
    interval: float = 0.25,
) -> T:
    """Poll until `predicate()` is truthy; fail with the operator's log tail otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert operator.process is not None
        if operator.process.poll() is not None:
            pytest.fail(f"tq-operator exited ({operator.process.returncode}):\n{operator.log()}")
        try:
            last = predicate()
        except subprocess.CalledProcessError as exc:
            last = exc.stderr
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{operator.log()}")


def pool_manifest(name: str, broker_url: str, task_type: str, **spec: Any) -> dict[str, Any]:
    """A pool for one task type, its key in Secret tq-key (see new_namespace)."""
    return {
        "apiVersion": "taskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/worker:1",
            "app": "tq_worker.demo:worker",
            "taskTypes": [task_type],
            "pollIntervalSeconds": POLL,
            "broker": {"url": broker_url, "apiKeySecretRef": {"name": "tq-key"}},
            **spec,
        },
    }


def apply(cp: ControlPlane, ns: str, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cp.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def replicas(cp: ControlPlane, ns: str, name: str) -> int | None:
    deployment = get(cp, ns, "deployment", name)
    return None if deployment is None else deployment["spec"]["replicas"]


def pool_status(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    pool = get(cp, ns, "workerpool", name)
    return (pool or {}).get("status") or {}


def broker_condition(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    for cond in pool_status(cp, ns, name).get("conditions", []):
        if cond["type"] == "BrokerReachable":
            return cond
    return {}


def events(cp: ControlPlane, ns: str, reason: str) -> list[str]:
    items = cp.kubectl_json("get", "events", "-n", ns)["items"]
    return [e["message"] for e in items if e["reason"] == reason]


# --------------------------------------------------------------------------- tests


def test_a_pool_gets_an_owned_labelled_deployment_with_broker_url_and_key_reference(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    # (`broker` unused: started here so that it boots while the operator does.)
    cp, ns = control_plane, new_namespace(control_plane)
    url = "http://tq-broker.taskqueue:8080"
    apply(cp, ns, pool_manifest("emails", url, "send_email", concurrency=6, minReplicas=2))
    # The first test of the module: the timeout includes the operator's start.
    deployment = wait_for(
        "the Deployment", lambda: get(cp, ns, "deployment", "emails"), operator, timeout=90
    )
    pool = get(cp, ns, "workerpool", "emails")
    assert pool is not None
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["kind"] == "WorkerPool"
    assert owner["uid"] == pool["metadata"]["uid"]
    assert owner["controller"] is True
    assert deployment["metadata"]["labels"]["taskqueue.io/pool"] == "emails"
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["taskqueue.io/pool"] == "emails"
    (container,) = template["spec"]["containers"]
    assert container["command"][:3] == ["tq-worker", "--app", "tq_worker.demo:worker"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TQ_BROKER_URL"]["value"] == url
    assert env["TQ_CONCURRENCY"]["value"] == "6"
    assert env["TQ_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "tq-key", "key": "api-key"}
    assert template["spec"]["terminationGracePeriodSeconds"] == 60
    status = wait_for(
        "observedGeneration",
        lambda: (s := pool_status(cp, ns, "emails")).get("observedGeneration") and s,
        operator,
    )
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    assert status["selector"] == "taskqueue.io/pool=emails"


def test_pending_tasks_scale_up_within_one_poll_and_drained_pools_scale_down_then_to_zero(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp, ns = control_plane, new_namespace(control_plane, broker)
    window, cooldown = 3, 8
    manifest = pool_manifest(
        "burst",
        broker.url,
        ns,
        targetPendingPerReplica=50,
        maxReplicas=20,
        scaleDownStabilizationSeconds=window,
        cooldownSeconds=cooldown,
    )
    apply(cp, ns, manifest)
    wait_for("a first poll", lambda: broker_condition(cp, ns, "burst").get("status"), operator)
    assert broker_condition(cp, ns, "burst")["status"] == "True"
    assert replicas(cp, ns, "burst") == 0

    broker.submit(ns, 500)
    submitted = time.monotonic()
    wait_for("10 replicas", lambda: replicas(cp, ns, "burst") == 10, operator, timeout=POLL + 5)
    assert time.monotonic() - submitted <= POLL + 5  # one poll, plus slack for a busy machine
    wait_for("status", lambda: pool_status(cp, ns, "burst").get("pending") == 500, operator)
    status = pool_status(cp, ns, "burst")
    assert status["desiredReplicas"] == 10
    assert status["lastScaleTime"]
    ups = events(cp, ns, "ScaledUp")
    assert len(ups) == 1 and "from 0 to 10" in ups[0], ups  # one decision, straight to 10

    assert broker.drain(ns) == 500
    drained = time.monotonic()
    wait_for("scale down to 1", lambda: replicas(cp, ns, "burst") == 1, operator, timeout=20)
    down = time.monotonic() - drained
    wait_for("scale to zero", lambda: replicas(cp, ns, "burst") == 0, operator, timeout=20)
    zero = time.monotonic() - drained
    # The last busy poll came at most one interval before the drain finished.
    assert down >= window - POLL, down
    assert zero >= cooldown - POLL, zero
    downs = events(cp, ns, "ScaledDown")
    assert any("from 10 to 1" in m for m in downs), downs
    assert any("from 1 to 0" in m for m in downs), downs
    assert pool_status(cp, ns, "burst")["pending"] == 0


def test_an_unreachable_broker_holds_replicas_and_sets_the_condition(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp, ns = control_plane, new_namespace(control_plane, broker)
    window, cooldown = 1, 2
    manifest = pool_manifest(
        "held",
        broker.url,
        ns,
        targetPendingPerReplica=50,
        scaleDownStabilizationSeconds=window,
        cooldownSeconds=cooldown,
    )
    apply(cp, ns, manifest)
    broker.submit(ns, 100)
    wait_for("2 replicas", lambda: replicas(cp, ns, "held") == 2, operator)
    assert broker_condition(cp, ns, "held")["status"] == "True"

    broker.process.kill()  # a crash: no goodbye to open connections
    try:
        cond = wait_for(
            "BrokerReachable=False",
            lambda: (c := broker_condition(cp, ns, "held")).get("status") == "False" and c,
            operator,
            timeout=10,
        )
        assert cond["reason"] == "Unreachable"
        assert "replicas held" in cond["message"]
        # Longer than window + cooldown + a few polls: an operator that read "no answer"
        # as "no work" would have scaled to zero by now.
        deadline = time.monotonic() + window + cooldown + 3 * POLL
        while time.monotonic() < deadline:
            assert replicas(cp, ns, "held") == 2
            time.sleep(0.25)
        assert events(cp, ns, "BrokerUnreachable")
    finally:
        broker.process.start()
    wait_for(
        "BrokerReachable=True again",
        lambda: broker_condition(cp, ns, "held").get("status") == "True",
        operator,
        timeout=15,
    )
    assert replicas(cp, ns, "held") == 2


def test_the_api_key_comes_from_the_pools_secret(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp, ns = control_plane, new_namespace(control_plane)  # no Secret yet

    def reason() -> str:
        return str(broker_condition(cp, ns, "keyed").get("reason"))

    apply(cp, ns, pool_manifest("keyed", broker.url, ns))
    wait_for("ApiKeyUnavailable", lambda: reason() == "ApiKeyUnavailable", operator)
    cp.kubectl("create", "secret", "generic", "tq-key", "-n", ns, "--from-literal=api-key=wrong")

    def message() -> str:
        return str(broker_condition(cp, ns, "keyed").get("message"))

    # Not labelled: the operator does not read it (a pool cannot point it at any Secret).
    wait_for("the label named", lambda: "taskqueue.io/api-key=true" in message(), operator)
    assert reason() == "ApiKeyUnavailable"
    opt_in(cp, ns)
    wait_for("Rejected", lambda: reason() == "Rejected", operator)
    cp.kubectl(
        "patch",
        "secret",
        "tq-key",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"api-key": broker.key}}),
    )
    broker.submit(ns, 7)
    wait_for("pending 7", lambda: pool_status(cp, ns, "keyed").get("pending") == 7, operator)
    assert reason() == "QueueDepthRead"
    wait_for("1 replica", lambda: replicas(cp, ns, "keyed") == 1, operator)


def test_a_pool_naming_a_broker_outside_the_allow_list_gets_no_key_sent(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp, ns = control_plane, new_namespace(control_plane, broker)
    apply(cp, ns, pool_manifest("foreign", "http://attacker.example:8080", ns))

    def condition() -> dict[str, Any]:
        return broker_condition(cp, ns, "foreign")

    wait_for(
        "BrokerUrlNotAllowed", lambda: condition().get("reason") == "BrokerUrlNotAllowed", operator
    )
    assert "allow-list" in str(condition().get("message"))
    assert "pending" not in pool_status(cp, ns, "foreign"), "the operator asked that broker"


def test_a_spec_edit_updates_the_deployment_template(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    cp, ns = control_plane, new_namespace(control_plane)
    apply(cp, ns, pool_manifest("edit", "http://127.0.0.1:9", ns, concurrency=2, minReplicas=1))
    first = wait_for("the Deployment", lambda: get(cp, ns, "deployment", "edit"), operator)
    edit = {"spec": {"concurrency": 3, "image": "registry.example/worker:2", "minReplicas": 2}}
    cp.kubectl("patch", "wp", "edit", "-n", ns, "--type=merge", "-p", json.dumps(edit))

    def edited() -> dict[str, Any] | None:
        deployment = get(cp, ns, "deployment", "edit")
        c = deployment["spec"]["template"]["spec"]["containers"][0] if deployment else {}
        return deployment if c.get("image") == "registry.example/worker:2" else None

    second = wait_for("the edited template", edited, operator)
    assert second["metadata"]["generation"] > first["metadata"]["generation"]
    (container,) = second["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["TQ_CONCURRENCY"] == "3"
    assert second["spec"]["replicas"] == 2  # the new minReplicas applies at once
    wait_for(
        "observedGeneration 2",
        lambda: pool_status(cp, ns, "edit").get("observedGeneration") == 2,
        operator,
    )


def test_kubectl_scale_resizes_a_manual_pool(
    control_plane: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    cp, ns = control_plane, new_namespace(control_plane, broker)
    apply(cp, ns, pool_manifest("manual", broker.url, ns, autoscaling=False, replicas=1))
    wait_for("1 replica", lambda: replicas(cp, ns, "manual") == 1, operator)
    broker.submit(ns, 300)  # a manual pool ignores the queue
    cp.kubectl("scale", "wp", "manual", "-n", ns, "--replicas=3")
    wait_for("3 replicas", lambda: replicas(cp, ns, "manual") == 3, operator)
    wait_for("pending", lambda: pool_status(cp, ns, "manual").get("pending") == 300, operator)
    assert pool_status(cp, ns, "manual")["desiredReplicas"] == 3
    assert replicas(cp, ns, "manual") == 3
    ups = wait_for("a ScaledUp event", lambda: events(cp, ns, "ScaledUp"), operator)
    assert any("from 1 to 3" in m and "spec.replicas" in m for m in ups), ups
