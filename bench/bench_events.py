"""What live event subscribers cost the submit path: single submits/s with and without a
WebSocket subscriber, alternated in the same run (the ratio is the number to read).

    .venv/bin/python bench/bench_events.py [--rounds 3] [--seconds 8]

Needs `wrk`. Starts its own broker on the embedded PostgreSQL (fsync on, auth off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

LUA = """wrk.method = "POST"
wrk.body = '{"task_type": "send_email", "payload": "dXNlckBleGFtcGxlLmNvbQ=="}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk_rps(url: str, seconds: int, lua: Path) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def subscriber(
    url: str, received: list[int], ready: asyncio.Event, stop: asyncio.Event
) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "filters": {}}))
        await ws.recv()  # subscribed
        ready.set()
        while not stop.is_set():
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
                received[0] += 1
            except TimeoutError:
                continue


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench_events: needs wrk (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="tq-bench-events-"))
    os.chmod(work, 0o755)
    lua = work / "post.lua"
    lua.write_text(LUA)
    port = 18777
    env = {**os.environ, "TQ_AUTH": "off", "TQ_METRICS_PORT": "0", "TQ_GRPC_PORT": "0"}
    broker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tq-broker"),
            "--port",
            str(port),
            "--data-dir",
            str(work / "data"),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        wrk_rps(f"{base}/api/v1/tasks", 2, lua)  # warm-up
        without, with_sub, delivered = [], [], []
        for _ in range(args.rounds):
            without.append(
                await asyncio.to_thread(wrk_rps, f"{base}/api/v1/tasks", args.seconds, lua)
            )
            received, ready, stop = [0], asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(
                subscriber(f"ws://127.0.0.1:{port}/ws", received, ready, stop)
            )
            await ready.wait()
            await asyncio.sleep(1.5)  # publishers notice a subscriber within about a second
            with_sub.append(
                await asyncio.to_thread(wrk_rps, f"{base}/api/v1/tasks", args.seconds, lua)
            )
            stop.set()
            await task
            delivered.append(received[0])
            await asyncio.sleep(4)  # the subscriber's registration lapses
        summary = {
            "without_subscriber_rps": without,
            "with_subscriber_rps": with_sub,
            "events_delivered": delivered,
            "median_without": statistics.median(without),
            "median_with": statistics.median(with_sub),
            "ratio_with_over_without": statistics.median(with_sub) / statistics.median(without),
            "load": os.getloadavg(),
        }
        Path("bench/results").mkdir(parents=True, exist_ok=True)
        Path("bench/results/bench_events.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
