"""The claim probe of the scaling curves: a registered worker of one task type that times
`POST /api/v1/tasks/claim` (wait 0) through its own keep-alive HTTP client and completes what
it gets, so the claim's latency is measured at the broker's door, beside the real workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

from _common import RawHttpClient, percentile, run_async


class Probe(threading.Thread):
    """A registered worker of `task_type` that times claims (wait 0) and completes what it gets."""

    def __init__(self, url: str, task_type: str, max_tasks: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.task_type = task_type
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.max_tasks, self.rate = max_tasks, rate
        self.worker_id = f"curves-probe-{os.getpid()}-{time.monotonic_ns()}"
        self.claim_ms: list[float] = []
        self.misses = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def _raw(self, path: str, body: Any) -> bytes:
        data = json.dumps(body).encode()
        return RawHttpClient.build("POST", path, f"{self.host}:{self.port}", data)

    async def _register(self, client: RawHttpClient) -> None:
        body = {"worker_id": self.worker_id, "task_types": [self.task_type], "concurrency": 1}
        status, answer = await client.request(self._raw("/api/v1/workers", body))
        if status != 201:
            raise RuntimeError(f"probe register {status}: {answer[:200]!r}")

    async def _one(self, client: RawHttpClient) -> None:
        claim = {"worker_id": self.worker_id, "max_tasks": self.max_tasks, "wait_seconds": 0}
        t0 = time.perf_counter()
        status, answer = await client.request(self._raw("/api/v1/tasks/claim", claim))
        ms = (time.perf_counter() - t0) * 1000
        if status != 200:
            self.errors.append(f"claim {status}: {answer[:200]!r}")
            return
        self.claim_ms.append(ms)
        tasks = json.loads(answer)["tasks"]
        if not tasks:
            self.misses += 1
            return
        done = {
            "worker_id": self.worker_id,
            "tasks": [{"task_id": t["task_id"], "lease_token": t["lease_token"]} for t in tasks],
        }
        status, answer = await client.request(self._raw("/api/v1/tasks/complete", done))
        if status != 200:
            self.errors.append(f"complete {status}: {answer[:200]!r}")

    def at_rest(self, count: int) -> list[float]:
        """`count` sequential claims before anything else runs."""

        async def main() -> None:
            client = RawHttpClient(self.host, self.port)
            await self._register(client)
            for _ in range(count):
                await self._one(client)
            await client.close()

        run_async(main())
        out, self.claim_ms = self.claim_ms, []
        return out

    def run(self) -> None:
        async def main() -> None:
            client = RawHttpClient(self.host, self.port)
            await self._register(client)  # again: the same id, back online
            next_at = time.perf_counter()
            while not self._halt.is_set():
                try:
                    await self._one(client)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    self.errors.append(repr(exc))
                    await client.close()
                    client = RawHttpClient(self.host, self.port)
                next_at += 1.0 / self.rate
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await client.close()

        run_async(main())

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def latency_summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(max(values, default=float("nan")), 3),
    }
