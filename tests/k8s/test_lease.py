"""Leader election on a Kubernetes Lease against the real API server: in-process electors and
real broker processes killed with SIGKILL and paused with SIGSTOP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from tq_kube.lease import KubernetesLeaseConfig as LeaseConfig
from tq_kube.lease import KubernetesLeaseElector

from ..support.processes import BrokerProcess

LEASE_SECONDS = 3.0


def lease_config(plane: Any, name: str, **overrides: Any) -> LeaseConfig:
    values = {
        "name": name,
        "namespace": "default",
        "identity": f"candidate-{uuid.uuid4().hex[:6]}",
        "lease_seconds": LEASE_SECONDS,
        "retry_seconds": 0.5,
        "kubeconfig": str(plane.kubeconfig),
    }
    return LeaseConfig(**(values | overrides))


@contextlib.asynccontextmanager
async def running(elector: KubernetesLeaseElector) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_one_of_three_electors_leads_and_a_graceful_stop_hands_over_at_once(
    control_plane: Any,
) -> None:
    name = f"lease-{uuid.uuid4().hex[:6]}"
    electors = [KubernetesLeaseElector(lease_config(control_plane, name)) for _ in range(3)]
    async with running(electors[0]) as stop0, running(electors[1]), running(electors[2]):
        await eventually(lambda: any(e.is_leader for e in electors), 15, "a leader")
        await asyncio.sleep(1.5)  # several renewal rounds
        assert sum(e.is_leader for e in electors) == 1
        holder = control_plane.kubectl_json("get", "lease", name, "-n", "default")
        leader = next(e for e in electors if e.is_leader)
        assert holder["spec"]["holderIdentity"] == leader.config.identity
        assert holder["spec"]["renewTime"].endswith("Z")
        if leader is electors[0]:
            stop0.set()
            waited = await eventually(
                lambda: electors[1].is_leader or electors[2].is_leader,
                LEASE_SECONDS,
                "a successor after the release",
            )
            assert waited < LEASE_SECONDS, "the release did not hand over before expiry"


async def test_a_renewal_that_loses_a_conflict_steps_down(control_plane: Any) -> None:
    name = f"lease-{uuid.uuid4().hex[:6]}"
    elector = KubernetesLeaseElector(lease_config(control_plane, name))
    async with running(elector):
        await eventually(lambda: elector.is_leader, 15, "leadership")
        control_plane.kubectl(
            "patch",
            "lease",
            name,
            "-n",
            "default",
            "--type=merge",
            "-p",
            '{"spec": {"holderIdentity": "usurper"}}',
        )
        await eventually(lambda: not elector.is_leader, 5, "stepping down")


def leaders(brokers: list[BrokerProcess]) -> list[BrokerProcess]:
    found = []
    for broker in brokers:
        if broker.process is None or broker.process.poll() is not None:
            continue
        try:
            if httpx.get(f"{broker.url}/health", timeout=0.5).json()["is_leader"]:
                found.append(broker)
        except (httpx.HTTPError, ValueError, KeyError):
            continue
    return found


def wait_for_one_leader(
    brokers: list[BrokerProcess], timeout: float
) -> tuple[BrokerProcess, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = leaders(brokers)
        if len(found) == 1:
            return found[0], time.monotonic() - started
        assert len(found) <= 1, f"{len(found)} leaders at once"
        time.sleep(0.1)
    raise AssertionError(f"no single leader within {timeout}s")


def test_broker_processes_elect_one_leader_and_survive_kill_and_pause(
    control_plane: Any, database_url: str, tmp_path: Path
) -> None:
    env = {
        "TQ_LEADER_ELECTION": "lease",
        "TQ_KUBECONFIG": str(control_plane.kubeconfig),
        "TQ_LEASE_NAMESPACE": "default",
        "TQ_LEASE_NAME": f"brokers-{uuid.uuid4().hex[:6]}",
        "TQ_LEADER_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    brokers = [
        BrokerProcess(
            ["--database-url", database_url], tmp_path / f"broker-{i}.log", env=env
        ).start()
        for i in range(3)
    ]
    try:
        first, _ = wait_for_one_leader(brokers, 20)
        time.sleep(2)
        assert leaders(brokers) == [first]

        first.kill()
        second, waited = wait_for_one_leader(brokers, 20)
        assert second is not first
        assert waited < LEASE_SECONDS + 5, f"takeover after SIGKILL took {waited:.1f}s"

        second.signal(signal.SIGSTOP)
        try:
            third, waited = wait_for_one_leader([b for b in brokers if b is not second], 20)
            assert waited < LEASE_SECONDS + 5, f"takeover after SIGSTOP took {waited:.1f}s"
        finally:
            second.signal(signal.SIGCONT)
        time.sleep(LEASE_SECONDS / 2)
        assert leaders(brokers) == [third], "the resumed leader did not step down"
    finally:
        for broker in brokers:
            broker.stop()
