"""Real broker and worker processes for the integration, acceptance and chaos tiers and for
bench/: start, wait until healthy, signal, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BROKER_START_TIMEOUT_SECONDS = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]

# Short leases so that faults resolve in seconds, not minutes (acceptance and chaos tiers).
FAST_BROKER_ENV = {
    "TQ_LEASE_TTL_SECONDS": "2",
    "TQ_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "TQ_RESCUE_INTERVAL_SECONDS": "0.2",
    "TQ_BACKOFF_BASE_SECONDS": "0.1",
    "TQ_BACKOFF_CAP_SECONDS": "1",
    "TQ_WORKER_SILENT_SECONDS": "3",
    "TQ_LEADER_LEASE_SECONDS": "2",
    "TQ_DEADLINE_GRACE_SECONDS": "1",
    "TQ_CLAIM_POLL_INTERVAL_SECONDS": "0.2",
    "TQ_POOL_TIMEOUT_SECONDS": "2",
}


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (after SIGCONT: a paused process would never see it), then SIGKILL after 20 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def leader_of(brokers: list[BrokerProcess]) -> BrokerProcess | None:
    """The running broker whose /health says it leads, if any answers so."""
    for broker in brokers:
        if not broker.alive():
            continue
        try:
            if httpx.get(f"{broker.url}/health", timeout=1).json().get("is_leader"):
                return broker
        except (httpx.HTTPError, ValueError):
            continue
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class BrokerProcess:
    """`tq-broker` as a child process; `args` are extra command-line flags. `command` replaces
    `[tq-broker]` (bench/ runs it under a profiler)."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> BrokerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*(self.command or [bin_path("tq-broker")]), "--port", str(self.port), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Auth is tested on purpose (tests/integration/test_auth.py); elsewhere it is off.
                # The metrics port is off: several brokers run side by side in the tests.
                env={
                    **os.environ,
                    "TQ_AUTH": "off",
                    "TQ_METRICS_PORT": "0",
                    "TQ_GRPC_PORT": "0",
                    **self.env,
                },
            )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = BROKER_START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"broker not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def revive(self) -> None:
        """After a fault: a paused broker continues, a dead one starts again."""
        if self.alive():
            self.signal(signal.SIGCONT)
        else:
            self.start(wait=True)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)

    @contextlib.contextmanager
    def running(self) -> Iterator[BrokerProcess]:
        """Started and healthy for the block; stopped after it, whatever happened."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


def _unwrapped(argv: list[str]) -> list[str]:
    return argv


@dataclass
class WorkerProcess:
    """`python -m tq_worker` running `app`, each handler run logged to `execution_log`.

    `wrap` turns the command into the one to run (the chaos tier runs a worker inside a
    network namespace with `ip netns exec`, which execs: the pid stays the worker's)."""

    broker_url: str
    app: str
    execution_log: Path
    log_path: Path
    name: str = "worker"
    concurrency: int = 4
    drain_seconds: float = 5
    env: dict[str, str] = field(default_factory=dict)
    wrap: Callable[[list[str]], list[str]] = _unwrapped
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        argv = [
            sys.executable, "-m", "tq_worker",
            "--app", self.app,
            "--broker-url", self.broker_url,
            "--concurrency", str(self.concurrency),
            "--drain-seconds", f"{self.drain_seconds:g}",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.wrap(argv),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "TQ_TEST_EXECUTION_LOG": str(self.execution_log), **self.env},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> None:
        """After SIGTERM: the drain must end by itself within `timeout`."""
        if self.alive():
            assert self.process is not None
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise RuntimeError(f"{self.name} did not exit {timeout:g}s after SIGTERM") from None

    def revive(self) -> None:
        """After a fault: a paused worker continues, a dead one starts again (as Kubernetes
        restarts a crashed pod)."""
        self.signal(signal.SIGCONT)
        if not self.alive():
            self.start()

    def stop(self) -> None:
        stop_process(self.process)
