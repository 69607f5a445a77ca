"""Two operator replicas with --leader-election-lease: one runs, the other waits, and it takes
over when the leader is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

LEASE_SECONDS = 3


def holder(plane: Any, name: str) -> str | None:
    result = plane.kubectl(
        "get", "lease", name, "-n", "default", "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def pid_of(identity: str | None) -> int | None:
    if not identity:
        return None
    try:
        return int(identity.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return None


def wait_for_holder(plane: Any, name: str, pids: set[int], timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pid = pid_of(holder(plane, name))
        if pid in pids:
            return pid, time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"none of {pids} held lease {name} within {timeout}s")


def test_two_operator_replicas_one_leads_and_the_other_takes_over(
    control_plane: Any, tmp_path: Path
) -> None:
    name = f"tq-operator-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
    command = [
        str(Path(sys.executable).parent / "tq-operator"),
        "--namespace",
        f"tq-none-{uuid.uuid4().hex[:6]}",
        "--leader-election-lease",
        f"default/{name}",
        "--leader-election-lease-seconds",
        str(LEASE_SECONDS),
    ]
    operators = []
    for i in range(2):
        with open(tmp_path / f"operator-{i}.log", "wb") as log:
            operators.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        by_pid = {p.pid: p for p in operators}
        leader, _ = wait_for_holder(control_plane, name, set(by_pid), 120)
        time.sleep(LEASE_SECONDS)
        assert pid_of(holder(control_plane, name)) == leader, "leadership flapped"
        by_pid[leader].send_signal(signal.SIGKILL)
        by_pid[leader].wait(10)
        standby = next(pid for pid in by_pid if pid != leader)
        _, waited = wait_for_holder(control_plane, name, {standby}, 60)
        assert waited < LEASE_SECONDS + 10, f"takeover took {waited:.1f}s"
        # The Lease names the new holder a moment before its callback logs that it leads.
        log_path = tmp_path / f"operator-{operators.index(by_pid[standby])}.log"
        control_plane.wait_for(
            "the standby to start the operator",
            lambda: "leading: starting the operator" in log_path.read_text(),
            timeout=10,
            interval=0.1,
        )
        assert by_pid[standby].poll() is None
    finally:
        for process in operators:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
